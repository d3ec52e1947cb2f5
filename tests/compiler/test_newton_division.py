"""The gated target's division: the hinge seed, the Newton identity in exact arithmetic, the
expanded program's shape, and the compiled division against its bound in both dtypes."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from construct.compiler.config import CompileConfig
from construct.compiler import newton_division
from construct.compiler.newton_division import Seed, expand_divisions, truncation
from construct.compiler.refusal import CompileRefusal, Refusal
from construct.language import interpreter
from construct.language.builder import ProgramBuilder, prev
from construct.language.parser import parse_program
from construct.language.program import Div, Hinge, Mul
from construct.model.assemble import compile_program
from construct.model.transformer import Transformer
from verify.check.runner import verify_model


def _seed_value(seed: Seed, x: Fraction) -> Fraction:
    return sum((w * max(s * x + o, Fraction(0)) for w, s, o in seed.terms), Fraction(0))


@settings(max_examples=20, deadline=None)
@given(st.fractions(Fraction(1, 100), 10), st.integers(1, 10 ** 4), st.integers(2, 3),
       st.sampled_from(["float64", "float32"]))
def test_the_seed_is_centred_within_eps0_and_never_cancels(floor, spread, steps, dtype):
    top = floor * spread
    seed = Seed.reciprocal(float(floor), float(top), steps, dtype)
    assert all(w > 0 for w, _, _ in seed.terms)  # positive terms: a sum that cannot cancel
    assert seed.eps0 ** (2 ** steps) <= Fraction(2) ** -20  # the truncation is negligible
    knots = [-o / s for _, s, o in seed.terms if s]
    grid = sorted({seed.floor, seed.top, *knots,
                   *(seed.floor + (seed.top - seed.floor) * Fraction(k, 97) for k in range(98))})
    worst = max(abs(1 - x * _seed_value(seed, x)) for x in grid if seed.floor <= x <= seed.top)
    assert worst <= seed.eps0
    assert worst > seed.eps0 / 4  # centred: both signs are used, not a loose bound


def _division_program(size: int, floor: int | None):
    builder = ProgramBuilder("division", 2)
    builder.mov("xs", "x", prev(on="y"))
    builder.aff("num", {"xs": [[(i + j) % 3 - 1 for j in range(2)] for i in range(size)]},
                bias=[1] * size, rows=size)
    builder.dot("sq", "x", "x")
    builder.aff("den", {"sq": -1}, bias=[-1])  # negative: the division takes |den|
    builder.div("q", "num", "den", min_abs=floor)
    builder.aff("o", {"q": [[1] * size]}, rows=1)
    return builder.build(output="o")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("direct", [True, False])
@pytest.mark.parametrize("size", [1, 3])
def test_the_expanded_program_divides_to_the_truncation_in_exact_arithmetic(size, direct, dtype,
                                                                            monkeypatch):
    """Every form: the numerator seeded directly; the scalar ``r ~ 1 / |c|`` times the
    numerator; in float32 that chain's last step taken afresh, ``q = t + t (1 - a r)``."""
    if not direct:
        monkeypatch.setattr(newton_division, "DIRECT_UNITS", 0)
    program = _division_program(size, 1)
    config = CompileConfig.for_dtype(dtype, target="gated")
    expanded = expand_divisions(program, config)
    assert not any(isinstance(op, Div) for op in expanded.ops)
    assert sum(isinstance(op, Hinge) for op in expanded.ops) == 3
    products = sum(isinstance(op, Mul) for op in expanded.ops) - 1  # less the program's dot
    k = config.division_steps  # a coupled step: two products, the last one
    coupled = 2 * k - 1
    assert products == {(True, "float64"): coupled, (True, "float32"): coupled,
                        (False, "float64"): coupled + 1,  # n r_k
                        (False, "float32"): coupled - 2 + 3}[direct, dtype]  # t, p, t (1 - p)
    rng = np.random.default_rng(size)
    tokens = np.array([[sp_rational(v) for v in row]
                       for row in rng.integers(-4, 5, (5, 3))], dtype=object)
    exact = interpreter.run(program, tokens).final["o"]
    lowered = interpreter.run(expanded, tokens).final["o"]
    seed = next(op for op in expanded.ops if isinstance(op, Hinge) and op.truncation)
    for want, got in zip(exact.flatten(), lowered.flatten()):
        assert abs(float(got - want)) <= 2 * seed.truncation * abs(float(want)) + 1e-300


def sp_rational(value: int):
    import sympy

    return sympy.Integer(int(value))


@settings(max_examples=10, deadline=None)
@given(st.integers(1, 3), st.sampled_from([None, 1]), st.sampled_from(["float64", "float32"]),
       st.booleans())
def test_a_compiled_gated_division_stays_within_its_bounds(size, floor, dtype, direct):
    program = _division_program(size, floor)
    with pytest.MonkeyPatch.context() as patch:
        if not direct:  # the scalar chain and its fresh last step
            patch.setattr(newton_division, "DIRECT_UNITS", 0)
        compiled = compile_program(program, CompileConfig.for_dtype(dtype, target="gated"))
    assert not compiled.shape.ln2  # no LayerNorm anywhere: no pads
    assert max(float(np.abs(w).max()) for w in compiled.weights.values()) <= 1e4
    model = Transformer(compiled.shape, compiled.weights, getattr(torch, dtype))
    report = verify_model(compiled, model, "division", {"n": 3}, closed=False, dtype=dtype,
                          device=torch.device("cpu"), trials=32, seed=size, batch=32)
    assert all(row["ok"] for row in report["rows"]), [r for r in report["rows"] if not r["ok"]]
    end = next(r for r in report["rows"] if r["check"].startswith("end-to-end"))
    unit = {"float64": 2.0 ** -53, "float32": 2.0 ** -24}[dtype]
    assert end["max_abs"] <= 300 * unit * max(end["max_ref"], 1.0), end  # rounding alone
    assert report["a_posteriori"]["ok"]


def test_the_truncation_is_charged_to_the_seed():
    seed = Seed.reciprocal(1.0, 100.0, 3, "float64")
    assert 0 < truncation(seed, 3) <= 2.0 ** -53
    assert truncation(seed, 1) > truncation(seed, 2) > truncation(seed, 3)


def test_explicit_groups_holding_a_div_are_refused_by_name():
    builder = ProgramBuilder("grouped", 1)
    builder.mov("xs", "x", prev(on="y"))
    builder.layer()
    builder.aff("den", {"xs": 1}, bias=[5])
    builder.layer()
    builder.div("q", "xs", "den", min_abs=1)
    program = builder.build(output="q")
    with pytest.raises(CompileRefusal) as caught:
        compile_program(program, CompileConfig.for_dtype("float64", target="gated"))
    assert caught.value.reason is Refusal.GROUPED_GATED_DIVISION


def test_a_divisor_below_its_floor_is_caught_on_the_hinge_domain():
    from verify.check.runner import AssumptionError

    program = _division_program(1, 3)  # |den| = 1 + |x|^2 reaches 1 < 3
    compiled = compile_program(program, CompileConfig.for_dtype("float64", target="gated"))
    model = Transformer(compiled.shape, compiled.weights, torch.float64)
    with pytest.raises(AssumptionError, match="outside the declared"):
        verify_model(compiled, model, "division", {"n": 3}, closed=False, dtype="float64",
                     device=torch.device("cpu"), trials=64, seed=0, batch=64)


WIDE_RANGE = """program wide
d 1
slot x 1
slot y 1
slot s1 1
slot s2 1
slot s3 1
slot s4 1
slot s5 1
slot s6 1
slot s7 1
slot den 1
slot q 1
input x y
output q
s1 = mul x x 1x1x1
s2 = mul s1 s1 1x1x1
s3 = mul s2 s2 1x1x1
s4 = mul s3 s3 1x1x1
s5 = mul s4 s4 1x1x1
s6 = mul s5 s5 1x1x1
s7 = mul s6 s6 1x1x1
den = aff s7 * 1 + bias [1/4]
q = div s7 den min 1/4
"""


def test_the_fresh_step_declares_its_small_factor_so_a_wide_divisor_is_not_refused(
        monkeypatch):
    """``rawc fuzz`` (every division through the scalar chain): a divisor over ``[1/4, 1e77]``
    gave ``|1 - a r| <= 1 + M / m`` by intervals and products past ``1e100``, refused as out of
    range though the written program stays below it. The fresh step declares
    ``|1 - a r| <= 2 eps0^(2^(k-1)) + 2^-20`` (true in exact arithmetic; verify checks it)."""
    monkeypatch.setattr(newton_division, "DIRECT_UNITS", 0)
    program = parse_program(WIDE_RANGE)
    config = CompileConfig.for_dtype("float32", target="gated")
    compiled = compile_program(program, config)  # no refusal
    assert max(compiled.bounds.results) < 1e100
    expanded = expand_divisions(program, config)
    declared = {expanded.ops[i].dst: bound for i, bound in expanded.assumptions}
    fresh = [name for name in declared if name.endswith("_ef")]
    assert len(fresh) == 1 and declared[fresh[0]] < Fraction(1, 1000)
