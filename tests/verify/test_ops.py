"""Each lowered operation, alone, against its error model (``construct.compiler.error_models``).

``verify.check.ops.measure`` feeds the op under test the compiled model's own inputs, so the
observed error is the op's alone. Besides ``observed <= predicted`` for every op, the sweeps
check that the error falls with each constant as the derivation says it should: ``eps^2`` for
the GeLU product, ``N^-2`` for the LayerNorm division, ``e^-N`` for the softmax read.
"""
from __future__ import annotations

import functools
import json
import math
import pathlib
import subprocess
import sys

import pytest
from hypothesis import given, strategies as st

from construct.model.assemble import CompiledModel
from construct.language.builder import ProgramBuilder
from construct.compiler.config import CompileConfig, GeluProduct
from construct.language.program import ProgramError
from verify.check.ops import OP_KINDS, compile_op, measure, measure_compiled

DTYPES = ("float64", "float32")
SWEEP_D, SWEEP_SEED = 3, 7
FLOAT64_FLOOR = 1e-14  # below this a mov's error is rounding, not leak
REPO = pathlib.Path(__file__).resolve().parents[2]


@functools.lru_cache(maxsize=None)
def compiled_op(kind: str, d: int, dtype: str) -> tuple[CompiledModel, int]:
    return compile_op(kind, d, CompileConfig.for_dtype(dtype, schedule="sequential"))


@given(kind=st.sampled_from(OP_KINDS), d=st.integers(1, 6), dtype=st.sampled_from(DTYPES),
       seed=st.integers(0, 2 ** 31 - 1))
def test_every_op_stays_within_its_bound(kind: str, d: int, dtype: str, seed: int) -> None:
    compiled, index = compiled_op(kind, d, dtype)
    observed, predicted = measure_compiled(compiled, index, dtype, seed)
    assert observed <= predicted, f"{kind} d={d} {dtype}: {observed:.3e} > {predicted:.3e}"
    if kind.startswith("mul"):
        # The GeLU product is approximate: an exact match would mean the comparison is vacuous.
        # Measured ratios are 0.03..0.7; 1e-3 leaves room for unlucky draws.
        assert observed > 1e-3 * predicted, f"{kind}: {observed:.3e} suspiciously small"
    if kind == "div":
        assert observed > 0.0, "the LayerNorm division cannot be exact in every column"


def sweep(kind: str, name: str, values: tuple[float, ...],
          rule: GeluProduct = GeluProduct.RICHARDSON) -> list[float]:
    """Observed error of ``kind`` (d = 3, float64) for each value of constant ``name``."""
    base = CompileConfig.for_dtype("float64", schedule="sequential", gelu_product=rule)
    observed = []
    for value in values:
        m = measure(kind, SWEEP_D, "float64", base.replace(**{name: value}), SWEEP_SEED)
        assert m.observed <= m.predicted, f"{kind} {name}={value}: {m.observed:.3e} > bound"
        observed.append(m.observed)
    return observed


@pytest.mark.parametrize("kind", ["mul-dot", "mul-outer", "mul-matvec"])
def test_mul_error_falls_as_eps_squared(kind: str) -> None:
    scales = (1e-1, 3e-2, 1e-2, 3e-3)  # steps of ~3.3, so eps^2 falls ~11x per step
    observed = sweep(kind, "mul_scale", scales, GeluProduct.LEMMA4)
    ratios = [a / b for a, b in zip(observed, observed[1:])]
    assert all(5 < r < 25 for r in ratios), f"{kind}: ratios {ratios} (expected ~10 each)"


@pytest.mark.parametrize("rule", [GeluProduct.RICHARDSON, GeluProduct.POLARIZED])
@pytest.mark.parametrize("kind", ["mul-dot", "mul-outer", "mul-matvec"])
def test_extrapolated_mul_error_falls_as_eps_to_the_fourth(kind: str, rule: GeluProduct
                                                           ) -> None:
    scales = (1e-1, 3e-2, 1e-2)  # steps of ~3.3, so eps^4 falls ~120x per step
    observed = sweep(kind, "mul_scale", scales, rule)
    ratios = [a / b for a, b in zip(observed, observed[1:])]
    assert all(r > 60 for r in ratios), f"{kind}: ratios {ratios} (expected ~120 each)"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["mul-dot", "mul-matvec"])
def test_each_rule_beats_the_one_before_at_its_tuned_scale(kind: str, dtype: str) -> None:
    """Each rule earns its place: at each rule's own tuned eps the Richardson product errs
    less than Lemma 4's, the polarized (the default) less than Richardson's, and the bounds
    fall alike."""
    results = {}
    for rule in GeluProduct:
        config = CompileConfig.for_dtype(dtype, schedule="sequential", gelu_product=rule)
        results[rule] = measure(kind, SWEEP_D, dtype, config, SWEEP_SEED)
    polarized, richardson, lemma4 = (results[GeluProduct.POLARIZED],
                                     results[GeluProduct.RICHARDSON], results[GeluProduct.LEMMA4])
    assert richardson.observed < lemma4.observed / 3, (richardson, lemma4)
    assert richardson.predicted < lemma4.predicted, (richardson, lemma4)
    assert polarized.observed < richardson.observed, (polarized, richardson)
    assert polarized.predicted < richardson.predicted, (polarized, richardson)


def test_div_error_falls_as_inverse_scale_squared() -> None:
    scales = (1e1, 3e1, 1e2, 3e2)
    observed = sweep("div", "div_scale", scales)
    ratios = [a / b for a, b in zip(observed, observed[1:])]
    assert all(r > 5 for r in ratios), f"div: ratios {ratios} (expected ~10 each)"


@pytest.mark.parametrize("kind", ["mov-prev", "mov-back", "mov-fixed", "mov-mean"])
def test_mov_error_falls_at_least_exponentially_in_hardness(kind: str) -> None:
    hardness = (2.0, 4.0, 8.0, 16.0)
    observed = sweep(kind, "attn_hardness", hardness)
    for (n0, e0), (n1, e1) in zip(zip(hardness, observed), zip(hardness[1:], observed[1:])):
        if e1 < FLOAT64_FLOOR:
            break
        # e^-N would give a factor e^(n1 - n0); allow 3/4 of the exponent.
        assert e0 / e1 > math.exp(0.75 * (n1 - n0)), f"{kind}: N {n0}->{n1}: {e0:.3e}->{e1:.3e}"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["mov-prev", "mov-fixed", "mov-mean"])
def test_mov_on_long_sequences(kind: str, dtype: str) -> None:
    config = CompileConfig.for_dtype(dtype, schedule="sequential", n_ctx=256)
    compiled, index = compile_op(kind, 3, config)
    observed, predicted = measure_compiled(compiled, index, dtype, seed=11, n_tokens=256,
                                           batch=32)
    assert observed <= predicted
    limit = 1e-12 if dtype == "float64" else 1e-5 * config.input_bound
    assert observed <= limit, f"{kind} {dtype} at 256 tokens: {observed:.3e} > {limit:.0e}"


def test_two_writes_of_one_slot_in_one_layer_are_refused() -> None:
    b = ProgramBuilder("clash", d=2)
    b.layer()
    b.aff("a", {b.x: 1})
    b.aff("a", {b.x: 2})
    with pytest.raises(ProgramError) as info:
        b.build(output=b.y)
    message = str(info.value)
    assert "ops 1 and 2" in message and "'a'" in message, message


def test_bench_ops_command() -> None:
    # Through the real command line, as a user runs it: every op within its bound, exit 0.
    result = subprocess.run([sys.executable, "-m", "construct.cli", "bench", "ops", "--json"],
                            capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = json.loads(result.stdout)
    assert {(r["kind"], r["d"], r["dtype"]) for r in rows} == {
        (kind, d, dtype) for kind in OP_KINDS for d in (2, 4) for dtype in DTYPES}
    assert all(r["observed"] <= r["predicted"] for r in rows)
