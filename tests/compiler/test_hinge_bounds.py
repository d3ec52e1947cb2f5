"""construct.compiler.hinge_bounds: the hinge's first-order remainder and input-error bounds,
against exact rational arithmetic on the gated division's own hinges."""
from __future__ import annotations

from fractions import Fraction

import torch

from construct.compiler import hinge_bounds
from construct.compiler.hinge_bounds import KinkRemainder
from construct.compiler.newton_division import Seed
from construct.language.program import Hinge


def _error_hinge(floor: float, top: float) -> Hinge:
    """``e_0 = 1 - a g(a)`` of a float32 seed: a hinge of its own input."""
    seed = Seed.reciprocal(floor, top, 2, "float32")
    return Hinge("e0", "a", "a", seed.negated, bias=Fraction(1),
                 domain=(seed.floor, seed.top))


def _value(op: Hinge, x: Fraction) -> Fraction:
    return op.bias + x * sum((w * max(s * x + o, Fraction(0)) for w, s, o in op.terms),
                             Fraction(0))


def _slope(op: Hinge, x: Fraction) -> Fraction:
    """``F'(x)`` off the kinks: ``G(x) + x G'(x)``."""
    g = sum((w * max(s * x + o, Fraction(0)) for w, s, o in op.terms), Fraction(0))
    dg = sum((w * s for w, s, o in op.terms if s * x + o > 0), Fraction(0))
    return g + x * dg


def test_the_kink_remainder_of_a_hinge_of_its_own_input_covers_the_exact_remainder():
    """Near the floor ``x g(x) ~ 1``, so ``dst``'s slope is small while ``G'`` is ``~ 1/m^2``:
    the ``e^2`` term must ride on ``max |G'|`` (a review found ``dst``'s slope there, 200x
    short: 3.7e-5 claimed against 7.7e-3 at x = 0.0105, d = -1e-3)."""
    op = _error_hinge(0.01, 10.0)
    error = 1e-3
    lo, hi = hinge_bounds.input_interval(op, 10.0)
    remainder = KinkRemainder(op, error, 0.0,
                              hinge_bounds.remainder_slope(op, lo - error, hi + error))
    dst_slope = hinge_bounds.extremes(op, lo - error, hi + error).slope
    worst_short = 0.0
    for x in (Fraction(105, 10000), Fraction(2, 100), Fraction(1, 10), Fraction(3, 2), Fraction(7)):
        bound = float(remainder.at({"a": torch.tensor([[float(x)]], dtype=torch.float64)}))
        for d in (Fraction(error), -Fraction(error)):
            exact = abs(_value(op, x + d) - _value(op, x) - _slope(op, x) * d)
            assert float(exact) <= bound, (x, d, float(exact), bound)
            jump = bound - float(remainder.slope) * error ** 2  # the |x| J e part
            worst_short = max(worst_short, float(exact) / (jump + dst_slope * error ** 2))
    assert worst_short > 10  # with dst's slope in place of G's the bound would fail


def test_an_input_error_moves_the_hinge_by_at_most_its_slope_times_the_error():
    op = _error_hinge(0.25, 513.0)
    error = 1e-2
    lo, hi = hinge_bounds.input_interval(op, 513.0)
    slope = hinge_bounds.extremes(op, lo - error, hi + error).slope
    for k in range(200):
        x = Fraction(lo) + (Fraction(hi) - Fraction(lo)) * Fraction(k, 199)
        for d in (Fraction(error), -Fraction(error)):
            if x + d >= Fraction(lo) - Fraction(error):
                assert float(abs(_value(op, x + d) - _value(op, x))) <= slope * error
