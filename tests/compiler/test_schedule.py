"""construct.compiler.schedule and construct.compiler.layout: depth, packing, dependencies, row reuse."""
from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from construct.algorithms.theorems import gd_program, sherman_morrison_program
from construct.language.builder import ProgramBuilder, prev
from construct.language.check import is_mlp_op
from construct.compiler.layout import allocate
from construct.language.program import Aff, ProgramError
from construct.compiler.schedule import ScheduleError, build_schedule


def test_packed_beats_one_op_per_layer() -> None:
    for program, packed_depth in ((gd_program(3), 2), (sherman_morrison_program(3), 5)):
        assert build_schedule(program, "packed").n_layers == packed_depth
        assert build_schedule(program, "sequential").n_layers == len(program.ops)


@pytest.mark.parametrize("program", [gd_program(4), sherman_morrison_program(3)])
@pytest.mark.parametrize("mode", ["packed", "sequential"])
def test_schedule_respects_dependencies(program, mode: str) -> None:
    schedule = build_schedule(program, mode)
    last_write: dict[str, int] = {}
    for i, op in enumerate(program.ops):
        half = schedule.half_of[i]
        if i in schedule.fused:  # an aff folded into the half of its newest input
            assert mode == "packed" and isinstance(op, Aff)
            assert half == max(schedule.half_of[last_write[n]] for n in op.reads
                               if n in last_write)
        else:
            assert half % 2 == (1 if is_mlp_op(op) else 0)
        for name in op.reads:
            if name in last_write:
                assert half > schedule.half_of[last_write[name]] or i in schedule.fused
        last_write[op.dst] = i


@pytest.mark.parametrize("program", [gd_program(5), sherman_morrison_program(4)])
def test_slots_that_share_rows_never_live_at_once(program) -> None:
    schedule = build_schedule(program)
    layout = allocate(program, schedule)
    names = list(layout.slots)
    for a in names:
        for b in names[names.index(a) + 1:]:
            ra, rb = layout.rows(a), layout.rows(b)
            if ra.start < rb.stop and rb.start < ra.stop:
                (sa, ea), (sb, eb) = layout.lifetimes[a], layout.lifetimes[b]
                assert ea <= sb or eb <= sa, (a, b)
    fixed = set(layout.fixed.values())
    for name in names:
        assert not fixed & set(layout.rows(name))


def test_layout_is_narrower_than_the_paper() -> None:
    for d in (1, 2, 4, 8):
        assert allocate(gd_program(d), build_schedule(gd_program(d))).d_model <= 3 + 4 * d + 8
        sm = sherman_morrison_program(d)
        assert allocate(sm, build_schedule(sm)).d_model <= 3 + 5 * d + 3 * d * d + 8


def test_div_waits_for_its_divisor_layer() -> None:
    program = sherman_morrison_program(2)
    schedule = build_schedule(program)
    div = next(i for i, op in enumerate(program.ops) if op.dst == "right")
    den = next(i for i, op in enumerate(program.ops) if op.dst == "den")
    assert schedule.layer_of(div) > schedule.layer_of(den)


def test_explicit_group_that_breaks_a_dependency_is_refused() -> None:
    b = ProgramBuilder("groups", 2)
    b.aff("s", {"x": [[1, 1]]})
    b.layer()
    b.aff("t", {"s": 2})
    b.aff("u", {"t": 3})  # same layer as t, but reads it: attention ops run in parallel
    with pytest.raises(ProgramError, match="same layer"):
        b.build(output="u")


def test_explicit_group_div_with_divisor_from_same_layer_is_refused() -> None:
    b = ProgramBuilder("groups", 2)
    b.layer()
    b.aff("c", {"x": [[1, 0]]}, bias=[5])
    b.div("q", "x", "c", min_abs=1)
    with pytest.raises(ScheduleError, match="divisor"):
        build_schedule(b.build(output="c"))


@given(st.integers(1, 6))
def test_mov_then_mul_share_a_layer_when_packed(d: int) -> None:
    b = ProgramBuilder("pair", d)
    b.mov("xp", "x", prev())
    b.dot("p", "xp", "x")
    program = b.build(output="p")
    schedule = build_schedule(program)
    assert schedule.n_layers == 1
