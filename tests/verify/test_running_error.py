"""verify.check.running_error: each op's carried error and remainder hold for perturbations
inside the per-entry errors, against exact rationals (hinges) and against float64 sampling far
from rounding (products, quotients); and through the whole a-posteriori bound they keep a
bound finite and rigorous where the a-priori bound is infinite."""
from __future__ import annotations

import math
from fractions import Fraction

import torch

from construct.algorithms.registry import get_algorithm
from construct.compiler.config import CompileConfig
from construct.compiler.newton_division import Seed
from construct.compiler.propagate import end_to_end_bound
from construct.language.program import Div, Hinge, Mov, Mul, Prev
from construct.model.assemble import compile_program
from construct.model.transformer import Transformer
from verify.check.running_error import bound_product, propagate
from verify.check.runner import verify_model

torch.set_num_threads(1)

SEED = Seed.reciprocal(0.01, 10.0, 2, "float32")


def _g(op: Hinge, x: Fraction) -> Fraction:
    return sum((w * max(s * x + o, Fraction(0)) for w, s, o in op.terms), Fraction(0))


def _dg(op: Hinge, x: Fraction) -> Fraction:
    """``G'(x)`` as autograd takes it: ``relu'(0) = 1/2`` (``relu(z) = (z + |z|) / 2``)."""
    return sum((w * s * (Fraction(1) if s * x + o > 0 else Fraction(1, 2) if s * x + o == 0
                         else Fraction(0)) for w, s, o in op.terms), Fraction(0))


def _carried(op: Hinge, x: Fraction, e: float, v: Fraction | None = None, e_v: float = 0.0):
    state = {"a": torch.tensor([[float(x)]], dtype=torch.float64),
             "out": torch.zeros(1, 1, 1 if v is None else 1, dtype=torch.float64)}
    errors = {"a": torch.tensor([[e]], dtype=torch.float64)}
    if v is not None:
        state["n"] = torch.tensor([[float(v)]], dtype=torch.float64)
        errors["n"] = torch.tensor([[e_v]], dtype=torch.float64)
    carried = propagate(op, state, errors, ("x",))
    return float(carried.remainder.flatten()[0]), float(carried.total().flatten()[0])


def test_a_hinge_of_its_own_input_moves_within_its_running_bound():
    """``e_0 = 1 - a g(a)`` near the floor: ``x g(x) ~ 1`` flattens ``dst`` while ``G'`` is
    ``~ 1 / m^2``, so the ``e^2`` term must ride on ``G``'s own slope (a review found ``dst``'s
    slope there 200x short)."""
    op = Hinge("out", "a", "a", SEED.negated, bias=Fraction(1), domain=(SEED.floor, SEED.top))
    error = 1e-3

    def value(x: Fraction) -> Fraction:
        return op.bias + x * _g(op, x)

    for x in (Fraction(105, 10000), Fraction(2, 100), Fraction(1, 10), Fraction(3, 2),
              Fraction(7), SEED.floor * 2):
        remainder, total = _carried(op, x, error)
        for d in (Fraction(error), -Fraction(error), Fraction(error) / 3):
            first = (_g(op, x) + x * _dg(op, x)) * d
            moved = value(x + d) - value(x)
            assert float(abs(moved - first)) <= remainder * (1 + 1e-9), (x, d)
            assert float(abs(moved)) <= total * (1 + 1e-9), (x, d)


def test_a_seed_of_a_separate_value_moves_within_its_running_bound():
    op = Hinge("out", "a", "n", SEED.terms, domain=(SEED.floor, SEED.top))
    e, e_v = 2e-3, 0.05
    for x in (Fraction(12, 1000), Fraction(1, 5), Fraction(4)):
        for v in (Fraction(-3), Fraction(1, 7)):
            remainder, total = _carried(op, x, e, v, e_v)
            for d in (Fraction(e), -Fraction(e)):
                for dv in (Fraction(e_v), -Fraction(e_v)):
                    moved = _g(op, x + d) * (v + dv) - _g(op, x) * v
                    first = _dg(op, x) * d * v + _g(op, x) * dv
                    assert float(abs(moved - first)) <= remainder * (1 + 1e-9), (x, v, d, dv)
                    assert float(abs(moved)) <= total * (1 + 1e-9), (x, v, d, dv)


def test_an_error_reaching_the_seeds_floor_is_no_bound():
    op = Hinge("out", "a", "n", SEED.terms, domain=(SEED.floor, SEED.top))
    remainder, total = _carried(op, Fraction(1), float(SEED.floor), Fraction(1), 0.0)
    assert math.isinf(remainder) and math.isinf(total)


def test_a_products_perturbation_is_first_order_plus_its_remainder():
    generator = torch.Generator().manual_seed(3)
    op = Mul("out", "l", "r", 2, 3, 4)
    state = {"l": torch.randn(5, 1, 6, generator=generator, dtype=torch.float64),
             "r": torch.randn(5, 1, 12, generator=generator, dtype=torch.float64)}
    errors = {name: 0.1 * torch.rand(value.shape, generator=generator, dtype=torch.float64)
              for name, value in state.items()}
    carried = propagate(op, state, errors, ("x",))
    for _ in range(50):
        dl, dr = ((2 * torch.rand(v.shape, generator=generator, dtype=torch.float64) - 1)
                  * errors[k] for k, v in state.items())
        left, right = state["l"].reshape(5, 1, 2, 3), state["r"].reshape(5, 1, 3, 4)
        d_left, d_right = dl.reshape(5, 1, 2, 3), dr.reshape(5, 1, 3, 4)
        moved = ((left + d_left) @ (right + d_right) - left @ right).reshape(5, 1, 8)
        first = (left @ d_right + d_left @ right).reshape(5, 1, 8)
        assert torch.all((moved - first).abs() <= carried.remainder * (1 + 1e-12) + 1e-15)
        assert torch.all(moved.abs() <= carried.total() * (1 + 1e-12) + 1e-15)


def test_a_quotients_perturbation_is_first_order_plus_its_remainder():
    generator = torch.Generator().manual_seed(4)
    op = Div("out", "n", "m")
    state = {"n": torch.randn(7, 1, 3, generator=generator, dtype=torch.float64),
             "m": 0.5 + torch.rand(7, 1, 1, generator=generator, dtype=torch.float64)}
    errors = {"n": torch.full((7, 1, 3), 0.05, dtype=torch.float64),
              "m": 0.4 * state["m"]}
    carried = propagate(op, state, errors, ("x",))
    n, m = state["n"], state["m"]
    for _ in range(50):
        dn, dm = ((2 * torch.rand(v.shape, generator=generator, dtype=torch.float64) - 1)
                  * errors[k] for k, v in state.items())
        moved = (n + dn) / (m + dm).abs() - n / m
        first = (dn - n / m * dm) / m
        assert torch.all((moved - first).abs() <= carried.remainder * (1 + 1e-12))
        assert torch.all(moved.abs() <= carried.total() * (1 + 1e-12))
    errors["m"] = state["m"].clone()  # the divisor's error reaches the divisor: no bound
    assert torch.all(propagate(op, state, errors, ("x",)).remainder.isinf())


def test_the_a_posteriori_bound_is_finite_and_holds_where_the_a_priori_bound_is_infinite():
    """A stacked ridge solve at d = 4 compounds a-priori past its pivots' floors (infinite);
    each task's own running bounds keep its remainders small, so its bound is finite, holds,
    and sits far below what the a-priori remainders made of it (12.7 at this size)."""
    algorithm = get_algorithm("ridge")
    params = algorithm.resolve(d=4, n=4)
    compiled = compile_program(algorithm.program(params), CompileConfig.for_dtype("float64"))
    assert math.isinf(end_to_end_bound(compiled, "float64"))
    model = Transformer(compiled.shape, compiled.weights, torch.float64)
    report = verify_model(compiled, model, "ridge", params, dtype="float64",
                          device=torch.device("cpu"), trials=16, seed=5, metric_tasks=2)
    posterior = report["a_posteriori"]
    assert posterior["ok"] and 0 < posterior["max_observed"] <= posterior["max_bound"] < 1e-5


def test_an_unbounded_entry_reaches_only_what_reads_it():
    """A review found an infinite bound in one column spreading to every column through the
    zeros of the read matrix and of the weights (``0 * inf = NaN``)."""
    bounds = torch.tensor([[1.0, torch.inf], [0.0, 2.0]], dtype=torch.float64)
    weights = torch.tensor([[0.0, 3.0], [1.0, 0.0]], dtype=torch.float64)
    assert bound_product(bounds, weights).tolist() == [[torch.inf, 3.0], [2.0, 0.0]]
    op = Mov("out", "s", Prev(k=1))
    errors = {"s": torch.tensor([[[0.5], [torch.inf], [0.25], [0.125]]], dtype=torch.float64)}
    state = {"s": torch.zeros(1, 4, 1, dtype=torch.float64), "out": torch.zeros(1, 4, 1)}
    carried = propagate(op, state, errors, ("x", "y", "x", "y")).total().flatten().tolist()
    assert carried == [0.5, 0.5, torch.inf, 0.25]  # column t reads t - 1 (column 0 itself)
