"""Schedule, fusion, layout and lowering on random programs: every property the compiler's
passes promise, checked on random programs (``tests.strategies.random_programs``: the fuzz
generator's), in both schedule modes, and the packed model against the one-op-per-layer model."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings, strategies as st

from construct.language import interpreter
from construct.algorithms.registry import get_algorithm
from construct.model.assemble import CompiledModel, compile_program
from construct.language.builder import ProgramBuilder, prev
from construct.language.check import is_mlp_op
from construct.compiler.config import CompileConfig
from construct.compiler.layout import allocate
from construct.model.transformer import Transformer, decode
from construct.targets.paper.positions import query_key
from construct.language.program import Aff, Div, MeanOf, Mov, Mul, Prev, Program
from construct.compiler.schedule import Schedule, ScheduleError, build_schedule, folded_reader
from tests.strategies import random_programs
from verify.check.ops import random_tokens
from construct.compiler.propagate import end_to_end_bound, propagated_bounds
from verify.tasks import make_tasks

MODES = ("packed", "sequential")


def compile_in(program: Program, mode: str) -> CompiledModel:
    return compile_program(program, CompileConfig.for_dtype("float64", schedule=mode))


def writers(program: Program) -> list[dict[str, int]]:
    """``out[i][name]``: the latest op before ``i`` (program order) that writes ``name``."""
    out, latest = [], {}
    for op in program.ops:
        out.append(dict(latest))
        latest[op.dst] = len(out) - 1
    return out


def stored_reads(program: Program, schedule: Schedule) -> list[tuple[int, str]]:
    """``(op, slot)`` pairs where the op takes the slot from the residual stream (not folded)."""
    out = []
    for i, (op, before) in enumerate(zip(program.ops, writers(program))):
        for name in op.reads:
            j = before.get(name)
            if i not in schedule.fused or j is None or not folded_reader(schedule.half_of, j, i):
                out.append((i, name))
    return out


# ---------------------------------------------------------------- schedule
def check_schedule(program: Program, schedule: Schedule, mode: str) -> None:
    ops, half = program.ops, schedule.half_of
    assert len(half) == len(ops)
    layer = [h // 2 for h in half]
    for l, members in enumerate(schedule.layers):
        assert members.attn == tuple(i for i, h in enumerate(half) if h == 2 * l)
        assert members.mlp == tuple(i for i, h in enumerate(half) if h == 2 * l + 1)
    before = writers(program)
    for i, op in enumerate(ops):
        where = f"op {i + 1} ({op}) at half {half[i]} in {half}"
        inputs = {name: before[i][name] for name in op.reads if name in before[i]}
        if i in schedule.fused:
            assert mode == "packed" and isinstance(op, Aff), where
            assert inputs and half[i] == max(half[j] for j in inputs.values()), where
            for j in inputs.values():  # folded from this layer, or stored before it
                same = half[i] == half[j] or (half[j] % 2 == 0 and half[i] == half[j] + 1)
                assert same or layer[j] < layer[i], where
        else:
            assert half[i] % 2 == (1 if is_mlp_op(op) else 0), where
            for j in inputs.values():
                assert half[j] < half[i], where
        if isinstance(op, Div) and op.den in inputs:
            assert layer[inputs[op.den]] < layer[i], where
        # A write goes after the slot's last writer and not before its last reader.
        if op.dst in before[i]:
            j = before[i][op.dst]
            assert half[j] < half[i], where
            if i in schedule.fused:  # the layer's attention writes part of a fused aff
                assert layer[j] < layer[i], where
        for r in range(i):
            if op.dst in ops[r].reads:
                assert half[r] <= half[i], where
                if i in schedule.fused and half[i] % 2 == 1 and r not in schedule.fused:
                    assert half[r] < half[i], where  # an MLP reader would see a partial value
    if schedule.uses_layernorm:  # one LayerNorm scale per MLP half: all mul, or one divisor
        for members in schedule.layers:
            kinds = {("mul",) if isinstance(ops[i], Mul)
                     else ("div", ops[i].den, before[i].get(ops[i].den))
                     for i in members.mlp if i not in schedule.fused}
            assert len(kinds) <= 1, (members, kinds)
    if mode == "sequential":
        assert not schedule.fused and not schedule.virtual
        assert schedule.n_layers == len(ops)
        assert all(len(m.attn) + len(m.mlp) == 1 for m in schedule.layers)


@given(random_programs())
def test_schedule_respects_dependencies(program: Program) -> None:
    for mode in MODES:
        check_schedule(program, build_schedule(program, mode), mode)


# ---------------------------------------------------------------- layout
def check_layout(program: Program, schedule: Schedule) -> None:
    layout = allocate(program, schedule)
    spans, slots = layout.lifetimes, layout.slots
    inputs = (program.x_slot, program.y_slot)
    fixed = set(layout.fixed.values())
    names = sorted(slots)
    for a in names:
        rows_a = set(layout.rows(a))
        assert not rows_a & fixed, a
        assert max(rows_a) < layout.d_model
        for b in names:
            if a < b and rows_a & set(layout.rows(b)):
                (sa, ea), (sb, eb) = spans[a], spans[b]
                assert ea <= sb or eb <= sa, (a, spans[a], b, spans[b], program.text())
    assert not schedule.virtual & set(slots)
    # Every value the model keeps in rows is stored, and lives from the attention half of the
    # layer that writes it (an MLP op is cleared there) through its write and up to its reads.
    half = schedule.half_of
    # The token inputs keep rows of their own (so their lifetimes need not cover writes).
    for name in inputs:
        assert all(not set(layout.rows(name)) & set(layout.rows(other))
                   for other in names if other != name), name
    for i, op in enumerate(program.ops):
        if op.dst in schedule.virtual:
            continue
        assert op.dst in slots, op.dst
        if op.dst in inputs:
            continue
        assert spans[op.dst][0] <= 2 * (half[i] // 2), (op.dst, spans[op.dst], half[i])
        # a slot whose first write starts at an attention half may take these rows: a write
        # in an attention half must end the lifetime after that half
        assert spans[op.dst][1] >= half[i] + 1 - half[i] % 2, \
            (op.dst, spans[op.dst], half[i], program.text())
    for i, name in stored_reads(program, schedule):
        assert name in slots, (i, name)
        assert spans[name][1] >= half[i], (name, spans[name], half[i])
    # Rows a slot's first write does not clear (all of a fresh slot's) were used by no slot
    # written before (or in the same half as) it, and no prior value sits there.
    priors = {name for name, _ in program.prior}
    for name in names:
        untouched = set(layout.rows(name)) - set(layout.reused.get(name, ()))
        if name in layout.fresh:
            assert untouched == set(layout.rows(name))
        if not untouched or name in inputs:
            continue
        assert name not in priors, name
        for other in names:
            if other != name and set(layout.rows(other)) & untouched:
                assert spans[other][0] > spans[name][0], (name, other, spans, program.text())


@given(random_programs())
def test_layout_shares_rows_only_between_disjoint_lifetimes(program: Program) -> None:
    for mode in MODES:
        check_layout(program, build_schedule(program, mode))


@pytest.mark.parametrize("name", ["gd", "sherman-morrison", "sgd", "ridge", "gd-batch"])
@pytest.mark.parametrize("mode", MODES)
def test_layout_of_named_programs(name: str, mode: str) -> None:
    algorithm = get_algorithm(name)
    program = algorithm.program(algorithm.resolve(d=2)).unrolled()
    schedule = build_schedule(program, mode)
    check_schedule(program, schedule, mode)
    check_layout(program, schedule)


# ---------------------------------------------------------------- the compiled model
def check_model(compiled: CompiledModel,
                tokens: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Every op's stored result right after its half, every mov's attention pattern and every
    fresh slot's rows against the interpreter; returns the model's output ``[batch, T]`` and
    the bound on its distance from the interpreter's."""
    program, schedule, layout = compiled.program, compiled.schedule, compiled.layout
    assert (compiled.shape.n_layers, compiled.shape.d_model) == (schedule.n_layers,
                                                                layout.d_model)
    model = Transformer(compiled.shape, compiled.weights, torch.float64)
    cache = model(tokens)
    trace = interpreter.run(program, tokens)
    kinds = program.column_kinds(tokens.shape[-2])
    bounds = propagated_bounds(compiled, "float64")
    # The propagated bounds are first order (construct.compiler.propagate): each op's own bound is taken
    # at the exact values' magnitudes, while the model's inputs to it are off by the errors
    # already made. Allow that second-order term, a 1e-6 fraction of the largest error made so
    # far (a leak or a rounding of an error); a missing first-order term is far larger.
    finite = [max([0.0] + [v for v in state.values() if v < float("inf")]) for state in bounds]
    second_order = [1e-6 * max(finite[:i + 1]) for i in range(len(finite))]
    config = compiled.config
    for i, op in enumerate(program.ops):
        h = schedule.half_of[i]
        if op.dst not in schedule.virtual and bounds[i][op.dst] < float("inf"):
            value = decode(cache.residuals[h + 1], layout.rows(op.dst))
            error = float((value - trace.states[i + 1][op.dst]).abs().max())
            assert error <= bounds[i][op.dst] + second_order[i], \
                (i, op, error, bounds[i][op.dst], program.text())
        self_read = isinstance(op.read, Prev) and op.read.k == 0 if isinstance(op, Mov) else False
        if isinstance(op, Mov) and op.dst not in schedule.virtual and not self_read:
            # the one head with this read map's position code reads the target column(s)
            l = h // 2
            w_q, w_k = query_key(op.read, layout, config.n_ctx, config.attn_hardness)
            heads = [k for k in range(compiled.shape.n_heads)
                     if torch.equal(model.weight(f"blocks.{l}.attn.W_Q")[k, :, :2],
                                    torch.as_tensor(w_q))
                     and torch.equal(model.weight(f"blocks.{l}.attn.W_K")[k, :, :2],
                                     torch.as_tensor(w_k))]
            assert len(heads) == 1, (i, op, heads)
            pattern = model.attention_pattern(cache.residuals[2 * l], l)[:, heads[0]]
            if isinstance(op.read, MeanOf):
                exact = torch.tensor([[float(v) for v in row]
                                      for row in interpreter.read_matrix(op.read, kinds)],
                                     dtype=torch.float64)
                assert float((pattern - exact).abs().max()) < 0.01, (i, op)
            else:
                targets = interpreter.read_targets(op.read, kinds)
                for t, target in enumerate(targets):
                    assert float(pattern[:, t, target].min()) > 0.99, (i, op, t, target)
    inputs = (program.x_slot, program.y_slot)
    first_writer: dict[str, int] = {}
    for i, op in enumerate(program.ops):
        first_writer.setdefault(op.dst, i)
    for name, i in first_writer.items():  # rows its first write does not clear hold zeros
        untouched = sorted(set(layout.rows(name)) - set(layout.reused.get(name, ()))) \
            if name in layout.slots and name not in inputs else []
        h = 2 * schedule.layer_of(i) if i in schedule.fused else schedule.half_of[i]
        assert not cache.residuals[h][..., untouched].any(), (name, untouched, program.text())
    bound = end_to_end_bound(compiled, "float64")
    output = cache.output[..., 0]
    error = float((output - trace.final[program.output][..., 0]).abs().max())
    assert error <= bound + second_order[-1], (error, bound, program.text())
    return output, bound + second_order[-1]


def check_agreement(program: Program, tokens: torch.Tensor) -> None:
    packed, sequential = (compile_in(program, mode) for mode in MODES)
    assert packed.schedule.n_layers <= sequential.schedule.n_layers
    out_packed, allowed_packed = check_model(packed, tokens)
    out_sequential, allowed_sequential = check_model(sequential, tokens)
    assert float((out_packed - out_sequential).abs().max()) <= allowed_packed + allowed_sequential


@settings(deadline=None)
@given(random_programs(), st.integers(0, 2 ** 16))
def test_packed_and_sequential_models_agree(program: Program, seed: int) -> None:
    config = CompileConfig.for_dtype("float64")
    check_agreement(program, make_tasks(program.d, 32, config.input_bound, seed, n_examples=2,
                                        prior_column=program.prior_column).tokens)


@settings(deadline=None)
@given(st.sampled_from(["gd", "sherman-morrison"]), st.integers(1, 4), st.integers(0, 2 ** 16))
def test_named_programs_packed_and_sequential_agree(name: str, d: int, seed: int) -> None:
    algorithm = get_algorithm(name)
    config = CompileConfig.for_dtype("float64")
    program = algorithm.program(algorithm.resolve(d=d), config.input_bound)
    check_agreement(program, make_tasks(d, 32, config.input_bound, seed).tokens)


# ---------------------------------------------------------------- the random tests' finds, shrunk
def _tiny(d: int, *steps, output: str) -> Program:
    b = ProgramBuilder("tiny", d)
    for step in steps:
        step(b)
    return b.build(output=output)


def _den(b: ProgramBuilder) -> None:
    """``den = 1 + x . x`` (computed in layer 0's MLP, so usable from layer 1 on)."""
    b.dot("sq", "x", "x")
    b.aff("den", {"sq": 1}, bias=[1])


MINIMAL = {
    # a slot written and never read, in the attention half where another slot's first write
    # starts: the two must not share rows
    "dead-write": _tiny(1, lambda b: b.mov("s", "y", prev()), lambda b: b.mov("t", "x", prev()),
                        output="t"),
    # an aff folded into the heads, its slot then overwritten by the same layer's MLP
    "fused-then-mlp": _tiny(1, lambda b: b.mov("m", "x", prev()), lambda b: b.aff("s", {"m": 1}),
                            lambda b: b.mul("s", "y", "y", 1, 1, 1), output="s"),
    # a div writing its own divisor (read in the attention half, for the LayerNorm scale)
    "div-into-divisor": _tiny(1, _den, lambda b: b.div("den", "y", "den"), output="den"),
    # a div whose destination the layer's attention half reads (the state before that half)
    "div-after-attention-reader": _tiny(
        1, _den, lambda b: b.mov("m", "sq", prev()), lambda b: b.div("sq", "y", "den"),
        lambda b: b.aff("out", {"m": 1, "sq": 1}), output="out"),
    # a div writing its numerator in place
}


@pytest.mark.parametrize("name", sorted(MINIMAL))
def test_minimal_programs(name: str) -> None:
    program = MINIMAL[name]
    for mode in MODES:
        schedule = build_schedule(program, mode)
        check_schedule(program, schedule, mode)
        check_layout(program, schedule)
    check_agreement(program, random_tokens(program.d, 5, 32, 4.0, seed=0))


def test_error_bounds_are_never_nan() -> None:
    """A vacuous bound (a divisor's error reaching its declared minimum) is inf; a zero weight
    on it must not turn the bounds after it into nan (0 * inf)."""
    b = ProgramBuilder("nan", 1)
    b.dot("a", "x", "x")
    for src, dst in (("a", "b"), ("b", "c"), ("c", "e")):  # large values: loose product bounds
        b.mul(dst, src, src, 1, 1, 1)
    b.aff("den", {"a": 1}, bias=[1])
    b.div("q", "y", "den")
    b.aff("z", {"q": 0}, bias=[1])
    compiled = compile_in(b.build(output="z"), "packed")
    for state in propagated_bounds(compiled, "float64"):
        assert all(v == v for v in state.values()), state


def test_div_cannot_overwrite_its_numerator() -> None:
    """Its MLP sees every row divided by |den|, so it cannot remove the old value."""
    program = _tiny(1, _den, lambda b: b.div("y", "y", "den"), output="y")
    for mode in MODES:
        with pytest.raises(ScheduleError, match="cannot overwrite its numerator"):
            build_schedule(program, mode)
