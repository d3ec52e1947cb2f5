"""construct.compiler.hinge_bounds: the hinge's input-error bounds, against exact rational
arithmetic on the gated division's own hinges (the per-task remainder:
tests/verify/test_running_error.py)."""
from __future__ import annotations

from fractions import Fraction

from construct.compiler import hinge_bounds
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
