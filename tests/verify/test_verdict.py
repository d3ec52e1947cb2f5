"""The verdict's rules (``verify.check.verdict``) on hand-made reports."""
from __future__ import annotations

import math

from verify.check.integrity import Integrity, IntegrityResult
from verify.check.verdict import Verdict, judge_program

MATCH = IntegrityResult(Integrity.MATCH)


def report(prior_bound: float = 1e-9, nearest: str = "sgd(0.01)", own: str = "sgd(0.01)",
           row_ok: bool = True) -> dict[str, object]:
    return {"trials": 10,
            "rows": [{"label": "end-to-end", "ok": row_ok, "bound": prior_bound}],
            "a_posteriori": {"ok": True, "worst_ratio": 0.1,
                             "max_bound": 1e-9, "tightness": 10.0, "max_observed": 1e-10,
                             "max_relative_bound": 1e-9},
            "a_priori": {"bound": prior_bound, "output_bound": 10.0},
            "metrics": {"nearest": nearest, "own": own, "nearest_is_own": nearest == own}}


def test_informative_bounds_and_the_own_learner_nearest_pass():
    assert judge_program(report(), MATCH).verdict is Verdict.PASS


def test_informative_bounds_with_another_learner_nearest_fail():
    judgement = judge_program(report(nearest="ols"), MATCH)
    assert judgement.verdict is Verdict.FAIL and "ols" in judgement.reason


def test_vacuous_bounds_with_another_learner_nearest_are_no_guarantee():
    """rawc verify of sgd d=16 n=64 (alpha past its stable step) said FAIL: diverging tasks
    made every reference's SPD the same 2e54, and the a-priori bound (2e76) allows that."""
    judgement = judge_program(report(prior_bound=2e76, nearest="ols"), MATCH)
    assert judgement.verdict is Verdict.NO_GUARANTEE
    assert "nearest reference learner by SPD is ols" in judgement.reason


def test_an_error_over_its_bound_fails_whatever_the_learner():
    assert judge_program(report(row_ok=False), MATCH).verdict is Verdict.FAIL
    assert judge_program(report(prior_bound=math.inf, row_ok=False),
                         MATCH).verdict is Verdict.FAIL
