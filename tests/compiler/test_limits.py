"""construct.compiler.limits: the depth and width lower bounds hold for every compilation, the named
programs reach them, and the critical path is exact on small hand-written programs."""
from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from construct.algorithms.theorems import gd_program, sherman_morrison_program
from construct.language.builder import ProgramBuilder, prev
from construct.compiler.layout import allocate
from construct.compiler.limits import critical_path, depth_lower_bound, limits
from construct.language.program import Program
from construct.compiler.schedule import build_schedule
from tests.strategies import random_programs

MODES = ("packed", "sequential")


@given(random_programs())
def test_schedules_and_layouts_respect_the_lower_bounds(program: Program) -> None:
    """Schedule and allocation decide the shape (``compile_program`` takes ``n_layers`` and
    ``d_model`` from them; ``tests/compiler/test_fusion.py`` checks that on every compiled model)."""
    unrolled = program.unrolled()
    for mode in MODES:
        schedule = build_schedule(unrolled, mode)
        layout = allocate(unrolled, schedule)
        bounds = limits(unrolled, layout)
        assert schedule.n_layers >= depth_lower_bound(unrolled) == bounds.depth
        assert layout.d_model >= bounds.width
        assert bounds.width == len(layout.fixed) + bounds.live_set
        assert bounds.depth == max(1, (bounds.critical_halves + 2) // 2)


@given(st.integers(1, 8))
def test_gd_reaches_its_depth_bound(d: int) -> None:
    program = gd_program(d)
    assert build_schedule(program, "packed").n_layers == 2 == depth_lower_bound(program)


@given(st.integers(1, 8))
def test_sherman_morrison_reaches_its_depth_bound(d: int) -> None:
    program = sherman_morrison_program(d)
    assert build_schedule(program, "packed").n_layers == 5 == depth_lower_bound(program)


@pytest.mark.parametrize("build", [gd_program, sherman_morrison_program])
@pytest.mark.parametrize("d", [1, 2, 4, 8])
def test_named_programs_are_near_their_width_bound(build, d: int) -> None:
    program = build(d)
    layout = allocate(program, build_schedule(program, "packed"))
    width = limits(program, layout).width
    assert width <= layout.d_model <= 1.5 * width


def _program(*steps) -> Program:
    b = ProgramBuilder("tiny", 2)
    last = None
    for step in steps:
        last = step(b)
    return b.build(output=last)


@pytest.mark.parametrize("steps, halves, layers, packed", [
    # mov (attention, half 0) then mul (MLP of the same layer, half 1)
    ((lambda b: b.mov("m", "x", prev()), lambda b: b.dot("p", "m", "x")), 1, 1, 1),
    # two chained products: the second waits for the next layer's MLP
    ((lambda b: b.dot("p", "x", "x"), lambda b: b.mul("q", "p", "p", 1, 1, 1)), 3, 2, 2),
    # mov, aff (free), mov: the second mov needs the next attention half
    ((lambda b: b.mov("m", "x", prev()), lambda b: b.aff("a", {"m": [[1, -1]]}),
      lambda b: b.mov("n", "a", prev(k=2))), 2, 2, 2),
    # an aff of the inputs alone: no half at all, yet a model has one layer
    ((lambda b: b.aff("a", {"x": [[1, 2]], "y": 3}, bias=[1]),), -1, 1, 1),
    # independent mov and mul share one layer; the aff of both costs nothing
    ((lambda b: b.mov("m", "y", prev()), lambda b: b.dot("p", "x", "x"),
      lambda b: b.aff("s", {"m": 1, "p": 1})), 1, 1, 1),
    # a product of a moved value, moved again: mov (0), mul (1), mov (2)
    ((lambda b: b.mov("m", "x", prev()), lambda b: b.dot("p", "m", "m"),
      lambda b: b.mov("n", "p", prev())), 2, 2, 2),
    # reusing a name is no data dependency (the bound ignores it; the schedule orders the
    # two writes, so it takes a layer more)
    ((lambda b: b.dot("p", "x", "x"), lambda b: b.mul("p", "y", "y", 1, 1, 1)), 1, 1, 2),
])
def test_critical_path_on_tiny_programs(steps, halves: int, layers: int, packed: int) -> None:
    program = _program(*steps)
    assert critical_path(program) == halves
    assert depth_lower_bound(program) == layers
    assert build_schedule(program, "packed").n_layers == packed >= layers
