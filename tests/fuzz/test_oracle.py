"""The oracle can fail: a planted miscompile, an untrue refusal and a crash are each caught."""
from __future__ import annotations

import dataclasses
import math

import verify.fuzz.oracle as oracle
from construct.compiler.config import CompileConfig
from construct.compiler.refusal import CompileRefusal, Refusal
from construct.language.parser import parse_program
from construct.model import assemble
from verify.fuzz.oracle import Outcome, check_program, refusal_problem

DOT = """program p
d 2
slot x 2
slot y 1
slot xy 2
slot o 1
input x y
output o
xy = mov x prev on y
o = mul xy x 1x2x1
"""


def test_a_correct_compiler_agrees():
    trials = check_program(parse_program(DOT))
    assert {t.outcome for t in trials} == {Outcome.AGREE}
    assert all(t.ratio <= 1 for t in trials if t.ratio is not None)


def test_a_planted_miscompile_is_a_disagreement(monkeypatch):
    real = assemble.compile_program

    def off_by_a_little(program, config=None):
        compiled = real(program, config)
        weights = dict(compiled.weights)
        weights["blocks.0.attn.W_O"] = weights["blocks.0.attn.W_O"] * (1 + 1e-6)
        return dataclasses.replace(compiled, weights=weights)

    monkeypatch.setattr(oracle, "compile_program", off_by_a_little)
    trials = check_program(parse_program(DOT))
    compiled = [t for t in trials if t.target.target in ("paper", "gated")]
    assert compiled and all(t.outcome is Outcome.DISAGREE for t in compiled), compiled


def test_a_crash_is_reported_with_its_place(monkeypatch):
    def broken(program, config=None):
        raise IndexError("planted")

    monkeypatch.setattr(oracle, "compile_program", broken)
    trial = next(t for t in check_program(parse_program(DOT)) if t.target.target in ("paper", "gated"))
    assert trial.outcome is Outcome.CRASHED and "IndexError: planted" in trial.reason
    assert trial.outcome.failed and trial.kind.startswith("IndexError at")


def test_a_refusal_whose_reason_is_untrue_is_a_disagreement(monkeypatch):
    def wrong_reason(program, config=None):
        raise CompileRefusal(Refusal.DIV_OVERWRITES_NUMERATOR, "planted")

    monkeypatch.setattr(oracle, "compile_program", wrong_reason)
    trial = next(t for t in check_program(parse_program(DOT)) if t.target.target in ("paper", "gated"))
    assert trial.outcome is Outcome.DISAGREE and "not true" in trial.reason


def test_no_refusal_reason_is_true_of_a_plain_program():
    program, config = parse_program(DOT), CompileConfig()
    for reason in Refusal:
        assert refusal_problem(program, config, CompileRefusal(reason, "")), reason


def test_a_refusal_for_a_div_into_its_numerator_is_true():
    text = DOT.replace("slot o 1", "slot o 1\nslot den 1").replace(
        "o = mul xy x 1x2x1", "o = mul xy x 1x2x1\nden = aff bias [2]\no = div o den")
    trials = check_program(parse_program(text))
    refused = [t for t in trials if t.outcome is Outcome.REFUSED]
    assert refused and {t.reason for t in refused} == {"DIV_OVERWRITES_NUMERATOR"}


# Found by rawc fuzz: errors compound past every magnitude through the loop, so the
# propagated bound is infinite; that must read as no guarantee, never as an agreement.
UNBOUNDED = """program fuzz
d 2
slot input 2
slot output 1
slot s1 2
slot div 1
slot s2 1
slot mul 2
slot s3 1
input input output
output div
s1 = aff bias [0, 0]
output = mul input s1 1x2x1
div = mul input input 1x2x1
div = mul div div 1x1x1
div = aff div * 1/2 + bias [1/4]
s2 = div div div
repeat 3
mul = aff bias [0, 0]
s3 = aff s2 * 1/2 + div * 0 + input * [[0, 1/4]]
s2 = mul s2 s3 1x1x1
end repeat
"""


def test_an_infinite_bound_is_no_guarantee_never_agreement():
    """The paper target's LayerNorm division bounds ``div``'s error past its floor 1/4: no
    guarantee anywhere. The gated target's hinge seed keeps it at 7e-4 where the rows it
    clears held little (stacked, float64): there every bound is finite, so that trial may
    agree, within its bound; where the loop's garbage or float32's range breaks a bound, it
    may not."""
    trials = check_program(parse_program(UNBOUNDED))
    paper = [t for t in trials if t.target.target == "paper"]
    assert paper and {t.outcome for t in paper} == {Outcome.NO_GUARANTEE}
    assert all(t.ratio is None and t.bound is None for t in paper)
    gated = [t for t in trials if t.target.target == "gated"]
    assert Outcome.NO_GUARANTEE in {t.outcome for t in gated}
    for trial in gated:
        assert trial.outcome in (Outcome.NO_GUARANTEE, Outcome.AGREE)
        if trial.outcome is Outcome.NO_GUARANTEE:
            assert trial.ratio is None and trial.bound is None
        else:
            assert math.isfinite(trial.bound) and trial.ratio <= 1
