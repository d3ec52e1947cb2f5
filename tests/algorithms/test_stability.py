"""``rawc compile`` warns when a step size provably diverges on the declared input box
(``construct.algorithms.stability``): the factor, checked against the update it comes from."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from construct.algorithms.registry import get_algorithm
from construct.algorithms.stability import sgd_divergence
from construct.cli.main import main as rawc


def warnings(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]


def test_sgd_d16_n64_warns_with_its_factor(tmp_path, capsys):
    assert rawc(["compile", "sgd", "--d", "16", "--n", "64", "-o",
                 str(tmp_path / "sgd.safetensors")]) == 0
    found = warnings(capsys)
    assert len(found) == 1
    # 1 - 2 (1/100) (16 * 4^2 + 0) = -4.12; stable up to alpha = 1/256
    assert "1 - 2 alpha (d B^2 + lam) = -4.12" in found[0] and "1/256" in found[0]


def test_sgd_defaults_do_not_warn(tmp_path, capsys):
    assert rawc(["compile", "sgd", "-o", str(tmp_path / "sgd.safetensors")]) == 0
    assert warnings(capsys) == []


@pytest.mark.parametrize("name,flags", [("gd-batch", ["--alpha", "10"]), ("gd", ["--alpha", "10"]),
                                        ("sgd", ["--n", "1", "--alpha", "10"]),
                                        ("lsa-gd", ["--steps", "3", "--eta", "5"])])
def test_no_warning_without_a_repeated_step_or_a_declared_box(tmp_path, capsys, name, flags):
    assert rawc(["compile", name, *flags, "-o", str(tmp_path / "m.safetensors")]) == 0
    assert warnings(capsys) == []


def test_the_stable_range_ends_at_one_over_d_b2_plus_lam():
    sgd = get_algorithm("sgd")
    edge = Fraction(1, 16 * 16 + 2)  # d = 16, B = 4, lam = 2
    assert sgd.divergence(sgd.resolve(d=16, n=8, lam=2, alpha=edge), 4.0) is None
    found = sgd.divergence(sgd.resolve(d=16, n=8, lam=2, alpha=edge * Fraction(101, 100)), 4.0)
    assert found is not None and found.stable_alpha == edge
    assert found.factor == 1 - 2 * edge * Fraction(101, 100) * 258 and found.factor < -1


def test_the_factor_is_what_sgd_does_to_the_error_at_the_worst_input():
    """Repeating exemplar ``(B (1, ..., 1), y)``: the error against the fixed point along x is
    multiplied by exactly ``1 - 2 alpha (d B^2 + lam)`` per step (the learner's own update)."""
    d, B, alpha, lam, y = 3, 2.0, Fraction(1, 10), Fraction(1, 4), 1.5
    params = get_algorithm("sgd").resolve(d=d, n=6, alpha=alpha, lam=lam)
    found = sgd_divergence(params, B)
    assert found is not None
    x = np.full(d, B)
    fixed = np.linalg.solve(np.outer(x, x) + float(lam) * np.eye(d), x * y)
    w = np.array([float(v) for v in params["w0"]])
    along = x / np.linalg.norm(x)
    for _ in range(6):
        before = (w - fixed) @ along
        w = w - 2 * float(alpha) * (x * (x @ w - y) + float(lam) * w)
        assert (w - fixed) @ along == pytest.approx(float(found.factor) * before, rel=1e-9)
