"""The verdict of ``rawc verify``: pass, fail, or no guarantee, and the exit code of each.

A pass rests on finite, informative bounds and on weights that are what the checkpoint says
they are. The order of the rules:

1. the weights differ from a fresh build of the checkpoint's description -> FAIL;
2. an observed error exceeds its bound, or the nearest reference learner is not the
   algorithm -> FAIL;
3. a bound is infinite, or the end-to-end bound is not smaller than the values it bounds (a
   relative bound >= 1 says nothing about the prediction), or nothing independent of the
   weights was compared (trained weights: no description, no closed form) -> NO GUARANTEE;
4. otherwise PASS.
"""
from __future__ import annotations

import dataclasses
import enum
import math

from verify.check.integrity import Integrity, IntegrityResult


class Verdict(enum.Enum):
    PASS = 0
    FAIL = 1
    NO_GUARANTEE = 3

    @property
    def exit_code(self) -> int:
        return self.value

    @property
    def word(self) -> str:
        return self.name.replace("_", " ")


@dataclasses.dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    reason: str

    def line(self) -> str:
        return f"result: {self.verdict.word}: {self.reason}"


def judge_program(report: dict[str, object], integrity: IntegrityResult) -> Judgement:
    """The verdict on a compiled program's report (``verify.check.runner``)."""
    rows = report["rows"]
    if integrity.failed:
        return Judgement(Verdict.FAIL, integrity.line())
    if not all(r["ok"] for r in rows):
        return Judgement(Verdict.FAIL, "an observed error exceeds its bound")
    if not report["ok"]:
        return Judgement(Verdict.FAIL, "the nearest reference learner is not the compiled "
                                       "algorithm")
    unbounded = sum(not math.isfinite(r["bound"]) for r in rows)
    if unbounded:
        return Judgement(Verdict.NO_GUARANTEE, f"{unbounded} checks have no finite bound (an "
                         "earlier error may reach a divisor's declared minimum, or first-order "
                         "intervals compound through a deep recursion)")
    end = next(r for r in rows if r["check"] == "end-to-end: compiled vs closed form")
    if end["bound"] >= end["max_ref"]:
        return Judgement(Verdict.NO_GUARANTEE, f"the end-to-end bound {end['bound']:.3g} is not "
                         f"smaller than the predictions it bounds (|prediction| <= "
                         f"{end['max_ref']:.3g}): it says nothing")
    note = "" if integrity.status is Integrity.MATCH else f" ({integrity.line()})"
    return Judgement(Verdict.PASS, "every observed error is within its finite bound "
                     f"(end-to-end relative bound {end['bound'] / end['max_ref']:.3g}){note}")


def judge_linear(report: dict[str, object], integrity: IntegrityResult) -> Judgement:
    """The verdict on a linear-attention report (``verify.check.linear_attention``)."""
    if integrity.failed:
        return Judgement(Verdict.FAIL, integrity.line())
    if not report["ok"]:
        return Judgement(Verdict.FAIL, "an error exceeds its tolerance")
    independent = [c for c in report["checks"] if not c["label"].startswith("block loop")]
    if integrity.status is not Integrity.MATCH or not independent:
        return Judgement(Verdict.NO_GUARANTEE, "only the forward against the block definition "
                         "on the model's own weights was checked; nothing independent says "
                         f"what the weights should be ({integrity.line()})")
    return Judgement(Verdict.PASS, "exact up to rounding; weights equal a fresh build")
