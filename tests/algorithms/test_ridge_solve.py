"""construct.algorithms.ridge_solve: ridge at every prefix by statistics and an in-token
Gauss-Jordan solve, in depth independent of n."""
from __future__ import annotations

from fractions import Fraction

import math

import pytest
import torch
from hypothesis import given, settings, strategies as st

from construct.algorithms.registry import get_algorithm
from construct.algorithms.ridge_newton import newton_steps, ridge_newton_program
from construct.algorithms.ridge_solve import RidgeMethod, ridge_solve_program
from construct.compiler.config import CompileConfig, MlpTarget, unit_roundoff
from construct.language import interpreter
from construct.language.program import ProgramError
from construct.model.assemble import compile_program
from verify.solvers import closed_form_prediction
from verify.tasks import make_tasks

torch.set_num_threads(1)


def _layers(d: int, n: int, target: MlpTarget) -> int:
    program = ridge_solve_program(d, n)
    return compile_program(program, CompileConfig(target=target, n_ctx=2 * n + 2)).shape.depth


@settings(max_examples=12, deadline=None)
@given(d=st.integers(1, 4), n=st.integers(1, 64), other=st.integers(1, 64),
       target=st.sampled_from(list(MlpTarget)))
def test_depth_does_not_depend_on_n(d: int, n: int, other: int, target: MlpTarget) -> None:
    # each pivot's division: one LayerNorm layer (paper); the gated seed, abs and k Newton
    # steps, 2 + k MLP halves on the critical path (construct.compiler.newton_division)
    steps = CompileConfig().division_steps
    expected = {MlpTarget.PAPER: 2 * d + 3, MlpTarget.GATED: (3 + steps) * d + 2}[target]
    assert _layers(d, n, target) == _layers(d, other, target) == expected


def test_depth_is_within_the_goal_and_far_below_the_stack() -> None:
    for d, goal in ((4, 15), (8, 27)):
        assert _layers(d, 16, MlpTarget.PAPER) <= goal
    stack = get_algorithm("ridge").program(
        get_algorithm("ridge").resolve(d=4, n=16, method="sherman-morrison"))
    assert compile_program(stack, CompileConfig()).shape.depth > 4 * _layers(4, 16,
                                                                               MlpTarget.PAPER)


@settings(max_examples=15, deadline=None)
@given(d=st.integers(1, 6), n=st.integers(1, 40),
       lam=st.fractions(Fraction(1, 10), Fraction(4), max_denominator=20),
       seed=st.integers(0, 10 ** 6))
def test_interpreter_meets_the_linear_solve_at_every_prefix(d, n, lam, seed) -> None:
    program = ridge_solve_program(d, n, lam)
    tasks = make_tasks(d, 8, 4.0, seed, n_examples=n, prior_column=True)
    exact = interpreter.run(program, tasks.tokens).prediction()
    closed = closed_form_prediction("ridge", {"d": d, "n": n, "lam": lam}, tasks)
    assert float((exact - closed).abs().max()) <= 1e-9 * max(float(closed.abs().max()), 1.0)


def _declared_bounds_hold(program, tokens: torch.Tensor) -> None:
    unrolled = program.unrolled()
    declared = dict(unrolled.assumptions)
    for step in interpreter.steps(program, tokens):
        if step.index < 0:
            continue
        op = unrolled.ops[step.index]
        if step.index in declared:
            assert float(step.state[op.dst].abs().max()) <= float(declared[step.index]), op
        if op.dst == "r":
            assert float(step.state["pivot"].abs().min()) >= float(op.min_abs)


@pytest.mark.parametrize("d, n, lam", [(3, 12, Fraction(1, 10)), (2, 30, Fraction(1, 2))])
def test_the_pivot_floor_and_declared_bounds_hold_on_hard_tasks(d, n, lam) -> None:
    """Random tasks at the box's edge, and the worst case for the floor and the multipliers:
    every exemplar the same corner of the box (``S_k / k = B^2 1 1^T``, rank one, so the later
    pivots sit at ``lam / k``), with the largest labels."""
    program = ridge_solve_program(d, n, lam)
    random = make_tasks(d, 32, 4.0, 5, n_examples=n, prior_column=True, scale=4.0)
    _declared_bounds_hold(program, random.tokens)
    corner = random.tokens.clone()
    edge = 0.999 * 4.0  # tokens: x in features 1..d of x-columns, y in feature 0 of y-columns
    for k in range(n):
        column = program.first_x_column + 2 * k
        corner[:, column, 1:] = edge
        corner[:, column + 1, 0] = edge
    corner[:, program.first_x_column + 2 * n, 1:] = edge
    _declared_bounds_hold(program, corner)


def test_lam_must_be_positive() -> None:
    with pytest.raises(ProgramError, match="lam must be > 0"):
        ridge_solve_program(2, 4, 0)


def test_the_method_is_recorded_and_parsed() -> None:
    algorithm = get_algorithm("ridge")
    assert algorithm.resolve(d=2)["method"] is RidgeMethod.SOLVE
    assert algorithm.resolve(d=2, method="sherman-morrison")["method"] is \
        RidgeMethod.SHERMAN_MORRISON
    with pytest.raises(ProgramError, match="method must be one of solve, newton, sherman-morrison"):
        algorithm.resolve(d=2, method="cholesky")


# ---------------------------------------------------------------- --method newton


@pytest.mark.parametrize("d, n, lam", [(2, 4, Fraction(1, 2)), (4, 64, Fraction(1, 10))])
def test_newton_steps_are_the_fewest_that_reach_rounding(d, n, lam) -> None:
    k = newton_steps(d, n, lam, 4.0)
    condition = n * d * (16 + float(lam)) / float(lam)
    residual = lambda steps: math.exp(-2 ** steps / condition)  # >= (1 - 1/K)^(2^k)
    assert residual(k) <= unit_roundoff("float64") < residual(k - 1)


@settings(max_examples=10, deadline=None)
@given(d=st.integers(1, 4), n=st.integers(1, 32),
       lam=st.fractions(Fraction(1, 10), Fraction(4), max_denominator=20),
       seed=st.integers(0, 10 ** 6))
def test_newton_meets_the_linear_solve_at_every_prefix(d, n, lam, seed) -> None:
    program = ridge_newton_program(d, n, lam)
    tasks = make_tasks(d, 8, 4.0, seed, n_examples=n, prior_column=True, scale=4.0)
    _declared_bounds_hold(program, tasks.tokens)
    exact = interpreter.run(program, tasks.tokens).prediction()
    closed = closed_form_prediction("ridge", {"d": d, "n": n, "lam": lam}, tasks)
    assert float((exact - closed).abs().max()) <= 1e-10 * max(float(closed.abs().max()), 1.0)


def test_newton_depth_is_two_layers_a_step() -> None:
    for steps in (3, 6):
        compiled = compile_program(ridge_newton_program(2, 8, steps=steps), CompileConfig())
        assert compiled.shape.depth == 2 * steps + 5
