"""The verdict of ``rawc verify``: pass, fail, or no guarantee, and the exit code of each.

A pass rests on finite, informative bounds and on weights that are what the checkpoint says
they are. The order of the rules:

1. the weights differ from a fresh build of the checkpoint's description -> FAIL;
2. an observed error exceeds its bound (an a-priori one, an op's own, or a task's
   a-posteriori bound, rigorous on every task: ``verify.check.a_posteriori``) -> FAIL;
3. a bound is infinite, or an end-to-end bound is not *informative*: the a-priori bound must
   be below ``INFORMATIVE`` (1 %) of the output's declared magnitude bound, and every task's
   a-posteriori bound below 1 % of the largest exact output; or nothing independent of the
   weights was compared (trained weights: no description, no closed form) -> NO GUARANTEE
   (saying so if the nearest reference learner is not the algorithm: the bounds allow errors
   that large);
4. the nearest reference learner (SPD) is not the algorithm, though every bound is
   informative -> FAIL;
5. otherwise PASS.
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


INFORMATIVE = 0.01


def judge_program(report: dict[str, object], integrity: IntegrityResult) -> Judgement:
    """The verdict on a compiled program's report (``verify.check.runner``)."""
    rows, posterior, prior = report["rows"], report["a_posteriori"], report["a_priori"]
    if integrity.failed:
        return Judgement(Verdict.FAIL, integrity.line())
    if not all(r["ok"] for r in rows):
        return Judgement(Verdict.FAIL, "an observed error exceeds its bound")
    if not posterior["ok"]:
        return Judgement(Verdict.FAIL, f"a task's error exceeds its a-posteriori bound "
                         f"({posterior['worst_ratio']:.3g} times the bound)")
    metrics = report.get("metrics")
    stray = (f"; the nearest reference learner by SPD is {metrics['nearest']}, not "
             f"{metrics['own']}, which errors this large allow"
             if metrics and not metrics["nearest_is_own"] else "")
    on_tasks = (f"on the {report['trials']} tasks every error is within its a-posteriori bound "
                f"(largest {posterior['max_bound']:.3g}, {posterior['tightness']:.3g} times the "
                "largest error)")
    unbounded = sum(not math.isfinite(r["bound"]) for r in rows)
    if unbounded:
        return Judgement(Verdict.NO_GUARANTEE, f"{unbounded} checks have no finite a-priori "
                         "bound over the declared input box (an earlier error may reach a "
                         "divisor's declared minimum, or first-order intervals compound through "
                         f"a deep recursion); {on_tasks}{stray}")
    relative_prior = prior["bound"] / prior["output_bound"] if prior["output_bound"] else math.inf
    if relative_prior >= INFORMATIVE:
        return Judgement(Verdict.NO_GUARANTEE, f"the a-priori end-to-end bound "
                         f"{prior['bound']:.3g} is {relative_prior:.3g} of the output's magnitude "
                         f"bound {prior['output_bound']:.3g} (informative: below "
                         f"{INFORMATIVE:g}); {on_tasks}{stray}")
    if posterior["max_relative_bound"] >= INFORMATIVE:
        return Judgement(Verdict.NO_GUARANTEE, f"an a-posteriori bound reaches "
                         f"{posterior['max_relative_bound']:.3g} of the largest exact output "
                         f"(informative: below {INFORMATIVE:g}){stray}")
    if stray:
        return Judgement(Verdict.FAIL, f"every bound is informative, yet the nearest reference "
                         f"learner by SPD is {metrics['nearest']}, not {metrics['own']}")
    note = "" if integrity.status is Integrity.MATCH else f" ({integrity.line()})"
    tightness = (f"{posterior['tightness']:.3g} times the largest error"
                 if posterior["max_observed"] else "no error observed")
    return Judgement(Verdict.PASS, "every observed error is within its finite bound: a priori "
                     f"{relative_prior:.3g} of the output bound, a posteriori at most "
                     f"{posterior['max_bound']:.3g} ({tightness}){note}")


def judge_linear(report: dict[str, object], integrity: IntegrityResult) -> Judgement:
    """The verdict on a linear-attention report (``verify.check.linear_attention``)."""
    if integrity.failed:
        return Judgement(Verdict.FAIL, integrity.line())
    if not report["ok"]:
        return Judgement(Verdict.FAIL, "an error exceeds its tolerance")
    independent = [c for c in report["checks"] if not c["label"].startswith("block loop")]
    claimed = [c for c in independent if c["label"].startswith("claimed ")]
    if integrity.status is Integrity.NOT_APPLICABLE and claimed:
        check = claimed[0]
        return Judgement(Verdict.PASS, f"trained weights: the prediction is within "
                         f"{check['max_rel']:.3g} (relative; --tol {check['tolerance']:g}) of "
                         f"the claimed algorithm's closed form")
    if integrity.status is not Integrity.MATCH or not independent:
        return Judgement(Verdict.NO_GUARANTEE, "only the forward against the block definition "
                         "on the model's own weights was checked; nothing independent says "
                         f"what the weights should be ({integrity.line()})")
    return Judgement(Verdict.PASS, "exact up to rounding; weights equal a fresh build")
