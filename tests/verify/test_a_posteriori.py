"""verify.check.a_posteriori: the first-order bound through the interpreter's Jacobians.

On an affine program the first-order bound is exact arithmetic, so it is checked entry for
entry against a hand computation; on the named algorithms it must bound every observed error
and be far below the a-priori bound where that compounds."""
from __future__ import annotations

import math

import torch

from construct.compiler.config import unit_roundoff
from construct.compiler.error_models import ErrorModel, ScaledPart, per_dtype
from construct.language.builder import ProgramBuilder
from construct.language.program import Mul
from verify.check.a_posteriori import (a_posteriori_bounds, magnitude_excess, own_error,
                                      within_magnitudes)
from verify.tasks import make_tasks


def test_an_affine_program_gets_its_hand_computed_bound():
    b = ProgramBuilder("affine", d=2)
    b.aff("out", {"x": [[2, -3]], "y": 5})
    program = b.build(output="out")
    own = ErrorModel(0, "test", 1e-9, per_dtype(0.0))
    tasks = make_tasks(2, 8, 4.0, 0)
    bound = a_posteriori_bounds(program, tasks.tokens, [own], [0], "float64")
    x, y = tasks.tokens[:, 0, 1:], tasks.tokens[:, 0, 0]
    u = unit_roundoff("float64")
    want = 1e-9 + u * (2 * x[:, 0].abs() + 3 * x[:, 1].abs() + 5 * y.abs())
    assert torch.allclose(bound[:, 0], want, rtol=1e-12, atol=0)


def test_scaled_parts_shrink_with_the_magnitudes_read():
    model = ErrorModel(0, "GeLU product", 2.0, {"float64": 3.0, "float32": 3.0},
                       reads=(("a", 4.0), ("b", 2.0)),
                       scaled=(ScaledPart({"float64": 2.0, "float32": 2.0}, 4),
                               ScaledPart({"float64": 1.0, "float32": 1.0}, 1)))
    # what forming the total as a float sum may have rounded away (FORMING_ULPS ulps of it)
    slack = 64 * 2.0 ** -52 * 5.0
    assert model.at_magnitude("float64", 1.0) == model.total("float64") + slack
    state = {"a": torch.full((1, 1, 1), 2.0, dtype=torch.float64),
             "b": torch.full((1, 1, 1), 0.5, dtype=torch.float64)}
    # s = max(2/4, 0.5/2) = 0.5: fixed 5 - 3 = 2, plus 2 * 0.5^4 + 1 * 0.5.
    assert float(own_error(model, state, "float64")) == 2.0 + slack + 2.0 / 16 + 0.5


def test_the_fixed_part_survives_beside_a_huge_scaled_part():
    """``rawc fuzz``: ``1e30 + 5e-4 - 1e30`` is 0 in floats, so a product of two zeros read
    through a fixed-scale LayerNorm claimed no error, and its model gave 1.3e-36."""
    model = ErrorModel(0, "GeLU product", 1.6e30, {"float64": 5e-4, "float32": 5e-4},
                       reads=(("a", 4.0),),
                       scaled=(ScaledPart({"float64": 1.6e30, "float32": 1.6e30}, 2),))
    assert model.at_magnitude("float64", 0.0) >= 5e-4


def test_a_bilinear_part_takes_the_two_reads_own_ratios():
    """``|l_j r_j|`` terms shrink with each operand: ``s_l s_r s^(power - 2)``, not ``s^power``
    (a gd prediction reads ``|w|`` far below its bound and ``|x|`` near its own)."""
    model = ErrorModel(0, "exact gated product", 0.0, {"float64": 8.0, "float32": 8.0},
                       reads=(("a", 4.0), ("b", 2.0)),
                       scaled=(ScaledPart({"float64": 8.0, "float32": 8.0}, 2, bilinear=True),))
    state = {"a": torch.full((1, 1, 1), 0.4, dtype=torch.float64),
             "b": torch.full((1, 1, 1), 2.0, dtype=torch.float64)}
    slack = 64 * 2.0 ** -52 * 8.0
    # s_l = 0.1, s_r = 1: 8 * 0.1 * 1, where s^2 would claim 8.
    assert float(own_error(model, state, "float64")) == slack + 8.0 * 0.1


def test_a_read_held_past_its_magnitude_widens_the_own_bound_then_has_none():
    """An op's own model holds inside the magnitudes it was built on: a read whose running
    bound may carry it past them widens the bound by ``excess ** p``, up to twice the bound;
    beyond, no bound (a float32 loop ran off to 1e10 where the program held 0)."""
    op = Mul("p", "a", "b", 1, 1, 1)
    model = ErrorModel(0, "exact gated product", 0.0, {"float64": 8.0, "float32": 8.0},
                       reads=(("a", 4.0), ("b", 2.0)),
                       scaled=(ScaledPart({"float64": 8.0, "float32": 8.0}, 2, bilinear=True),))
    state = {"a": torch.tensor([[[3.0], [1.0]]], dtype=torch.float64),
             "b": torch.tensor([[[1.0], [1.0]]], dtype=torch.float64)}
    errors = {"a": torch.tensor([[[3.0], [9.0]]], dtype=torch.float64),
              "b": torch.zeros(1, 2, 1, dtype=torch.float64)}
    excess = magnitude_excess(op, model, state, errors, {"a": 4.0, "b": 2.0})
    assert excess.flatten().tolist() == [1.5, 2.5]  # (3 + 3) / 4 and (1 + 9) / 4
    widened = within_magnitudes(torch.ones(1, 2, 1, dtype=torch.float64), excess, model)
    assert widened.flatten().tolist() == [1.5 ** 2, math.inf]
