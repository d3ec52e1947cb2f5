"""construct.compiler.position_codes: the dyadic code's gap, the heads' picks against the
interpreter's targets, the leak bound in float32 at long context, the automatic choice."""
from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from construct.algorithms.registry import get_algorithm
from construct.compiler.config import CompileConfig, MlpTarget, PositionCode, torch_dtype
from construct.compiler.position_codes import (frequencies, key_rows, point_read_leak,
                                               point_reads, position_rows)
from construct.language.interpreter import read_targets
from construct.language.program import Prev
from construct.model.assemble import compile_program
from construct.model.transformer import Transformer
from verify.check.runner import verify_model

torch.set_num_threads(1)


@pytest.mark.parametrize("n_frequencies", range(1, 13))
def test_every_other_column_scores_at_least_two_below(n_frequencies: int) -> None:
    """``sum_f cos(2 pi m / 2^f) <= F - 2`` for every ``0 < m < 2^F``: the gap the leak bound
    assumes (the term ``f = v + 1``, ``2^v`` the largest power dividing ``m``, is -1)."""
    m = np.arange(1, 2 ** n_frequencies)
    f = np.arange(1, n_frequencies + 1)[:, None]
    scores = np.cos(2 * np.pi * m / 2.0 ** f).sum(0)
    assert scores.max() <= n_frequencies - 2 + 1e-9
    assert np.isclose(scores.max(), n_frequencies - 2) or n_frequencies == 1


def _program(name: str, n: int):
    algorithm = get_algorithm(name)
    return algorithm.program(algorithm.resolve(d=2, n=n))


def _point_patterns(compiled, dtype: str) -> Iterator[torch.Tensor]:
    """The pattern ``[T, T]`` of every point-read head (its keys read the code's key rows;
    mean-read and unused heads do not), scored on the position table alone."""
    model = Transformer(compiled.shape, compiled.weights, torch_dtype(dtype))
    table = model.weight("pos_embed.W_pos")
    keys = [compiled.layout.fixed[name] for name in
            key_rows(compiled.config.code, compiled.config.n_ctx)]
    for layer in range(compiled.shape.n_layers):
        w_k = compiled.weights[f"blocks.{layer}.attn.W_K"]
        for head, pattern in enumerate(model.attention_pattern(table, layer)):
            if np.abs(w_k[head, keys]).sum() > 0:
                yield pattern


def _worst_miss(pattern: torch.Tensor, program, kinds) -> tuple[float, object]:
    """The weight off target under the read map the head follows best."""
    best = (2.0, None)
    for read in (*point_reads(program), Prev(0)):
        targets = torch.tensor(read_targets(read, kinds))
        miss = float((1 - pattern[torch.arange(len(kinds)), targets].double()).max())
        best = min(best, (miss, read), key=lambda pair: pair[0])
    return best


@pytest.mark.parametrize("name", ["ridge", "sgd"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_dyadic_heads_pick_the_interpreters_columns(name: str, dtype: str) -> None:
    """Every point-read head's softmax, on the position table, sits on the column the
    interpreter reads (clamps included), with off-target weight within the leak bound."""
    program = _program(name, 6)
    config = CompileConfig.for_dtype(dtype, n_ctx=20, position_code="dyadic")
    compiled = compile_program(program, config)
    kinds = tuple(program.column_kinds(config.n_ctx))
    leak = point_read_leak(PositionCode.DYADIC, config.attn_hardness, config.n_ctx, dtype)
    followed = set()
    for pattern in _point_patterns(compiled, dtype):
        miss, read = _worst_miss(pattern, program, kinds)
        assert miss <= leak + 4 * np.finfo(dtype).eps, (miss, read)
        followed.add(read)
    assert set(point_reads(program)) <= followed


def test_float32_long_context_needs_the_dyadic_code() -> None:
    """At ``n_ctx = 8194`` (``n = 4096``) float32 rounds the quadratic scores past their gap
    ``N`` (its bound is no bound, and heads pick wrong columns); the dyadic code keeps every
    pick within its bound."""
    program = _program("gd-batch", 4096)
    for code in PositionCode:
        config = CompileConfig.for_dtype("float32", n_ctx=8194, position_code=code)
        compiled = compile_program(program, config)
        kinds = tuple(program.column_kinds(config.n_ctx))
        patterns = _point_patterns(compiled, "float32")
        worst = max(_worst_miss(pattern, program, kinds)[0] for pattern in patterns)
        leak = point_read_leak(code, config.attn_hardness, config.n_ctx, "float32")
        if code is PositionCode.QUADRATIC:
            assert leak == 1.0 and worst > 0.4
        else:
            assert leak < 1e-40 and worst <= leak + 1e-6


def test_the_code_follows_the_context_length_unless_given() -> None:
    assert CompileConfig(n_ctx=836).code is PositionCode.QUADRATIC
    assert CompileConfig(n_ctx=837).code is PositionCode.DYADIC
    assert CompileConfig(n_ctx=100).replace(n_ctx=5000).code is PositionCode.DYADIC
    assert CompileConfig(n_ctx=5000, position_code="quadratic").code is PositionCode.QUADRATIC
    with pytest.raises(ValueError, match="position_code must be one of quadratic, dyadic"):
        CompileConfig(position_code="rotary")
    compiled = compile_program(_program("ridge", 2), CompileConfig(n_ctx=2000))
    assert compiled.config.position_code is PositionCode.DYADIC  # recorded, not re-derived
    assert compiled.config.to_dict()["position_code"] == "dyadic"


def test_dyadic_rows_cost_k_per_point_read_map() -> None:
    program = _program("ridge", 4)
    k = 2 * frequencies(256) - 1
    assert len(key_rows(PositionCode.DYADIC, 256)) == k == 15
    rows = position_rows(PositionCode.DYADIC, 256, program)
    assert len(rows) == k * (1 + len(point_reads(program))) + 3
    assert position_rows(PositionCode.QUADRATIC, 256, program) == (
        "pos", "pos2", "one", "is_x", "is_y")


@pytest.mark.parametrize("target", list(MlpTarget))
def test_a_dyadic_learner_verifies_as_the_quadratic_one_does(target) -> None:
    """Interpreter, layer by layer, and the closed form: no check fails under either code,
    and the dyadic code keeps every finite bound the quadratic one has."""
    algorithm = get_algorithm("ridge")
    params = algorithm.resolve(d=2, n=3)  # small enough for a finite a-priori bound
    for dtype in ("float64", "float32"):
        finite = {}
        for code in PositionCode:
            config = CompileConfig.for_dtype(dtype, target=target, n_ctx=8, position_code=code)
            compiled = compile_program(algorithm.program(params), config)
            model = Transformer(compiled.shape, compiled.weights, torch_dtype(dtype))
            report = verify_model(compiled, model, "ridge", params, dtype=dtype,
                                  device=torch.device("cpu"), trials=64, seed=3)
            failed = [r for r in report["rows"] if not r["ok"]]
            assert not failed, failed
            end = next(r for r in report["rows"]
                       if r["check"].startswith("end-to-end: compiled vs closed"))
            assert end["max_rel"] <= (1e-9 if dtype == "float64" else 1e-3)
            finite[code] = [math.isfinite(r.get("bound", 0.0)) for r in report["rows"]]
        assert finite[PositionCode.DYADIC] == finite[PositionCode.QUADRATIC]
