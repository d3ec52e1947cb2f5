"""Lower bounds a compilation is measured against: depth from the critical path, width from
the largest live set.

*Depth.* A layer offers one attention half, then one MLP half. Along any chain of dependent
ops, each ``mov`` needs an attention half after the half that produced its input, each
``mul``/``div`` an MLP half after it, and an ``aff`` needs none (it can always be folded into
the weights around it, ``construct.compiler.fusion``). Placing every op as early as that allows, with
unlimited width, gives the critical path ``P`` in halves (``half 2l`` attention, ``2l + 1``
MLP); no schedule of the same ops has fewer than ``ceil((P + 1) / 2)`` layers. Only true data
dependencies count (not the reuse of a slot's name), and nothing here knows that a ``div``
needs its divisor a layer early or that a layer's MLP has one LayerNorm scale, so the bound
holds for every schedule this compiler (or any other) can build.

*Width.* Given a schedule, a slot occupies rows from the half its first write starts
(``Layout.lifetimes``) to its last read. At half ``t`` every slot with
``start <= t < end`` holds a value someone still needs, and two such slots cannot share a
row; so ``d_model >= fixed rows + max_t sum size``. First fit reaches this up to
fragmentation.
"""
from __future__ import annotations

import dataclasses

from construct.compiler.layout import Layout
from construct.language.program import Aff, Mov, Program


@dataclasses.dataclass(frozen=True)
class Limits:
    depth: int  # layers no schedule can beat (critical path)
    critical_halves: int  # the critical path in halves
    width: int  # d_model no allocation of this schedule can beat (fixed rows + live set)
    live_set: int  # the largest live set, in rows, at half ``peak_half``
    peak_half: int


def critical_path(program: Program) -> int:
    """The last half any op needs (``-1`` when every op is an aff of inputs)."""
    ready: dict[str, int] = {}
    last = -1
    for op in program.unrolled().ops:
        newest = max((ready.get(name, -1) for name in op.reads), default=-1)
        if isinstance(op, Aff):
            half = newest
        elif isinstance(op, Mov):
            half = newest + 1 if newest % 2 == 1 else newest + 2
        else:
            half = newest + 1 if newest % 2 == 0 else newest + 2
        ready[op.dst] = half
        last = max(last, half)
    return last


def depth_lower_bound(program: Program) -> int:
    return max(1, (critical_path(program) + 2) // 2)


def live_set(layout: Layout, program: Program) -> tuple[int, int]:
    """``(rows, half)``: the largest total size of slots live at once, and where."""
    sizes = program.slot_map
    spans = {name: layout.lifetimes[name] for name in layout.slots}
    halves = sorted({start for start, _ in spans.values()} | {-1})
    best, where = 0, -1
    for t in halves:
        total = sum(sizes[name].size for name, (start, end) in spans.items()
                    if start <= t < end)
        if total > best:
            best, where = total, t
    return best, where


def limits(program: Program, layout: Layout) -> Limits:
    """``program`` as compiled (its loop unrolled) and the layout of its schedule."""
    rows, half = live_set(layout, program)
    return Limits(depth_lower_bound(program), critical_path(program),
                  len(layout.fixed) + rows, rows, half)
