"""Allocation: which residual rows hold which slot, and the fixed rows every model has.

Row order: the token's label row (the ``y`` slot) is row 0 and its features (the ``x`` slot)
rows 1..d, as in the paper; then the position rows; then, for models with LayerNorm, the zero
row and the two pad rows; then the program's other slots.

Slots whose lifetimes do not overlap share rows (interval colouring, first fit). A slot lives
from the attention half of the layer that first writes it (from the start for slots with a
prior value, which the position table fills) (an MLP op clears its destination
there) to the half of its last read; two slots may share rows when the first one's last read
is no later than the second one's first write, because a half reads the state before it.
Virtual slots (``Schedule.virtual``: values folded into the layer that reads them) get no rows.
Rows no earlier slot used hold zeros until the slot's first write, which therefore clears only
its ``reused`` rows (a slot with none is ``fresh``); a prior slot's rows count as used.
"""
from __future__ import annotations

import dataclasses

from construct.compiler.position_codes import KIND_ROWS, QUADRATIC_KEY_ROWS
from construct.language.program import Program
from construct.compiler.schedule import Schedule

POSITION_ROWS = QUADRATIC_KEY_ROWS + KIND_ROWS  # the quadratic code's; ``position_rows`` in general
LN_ROWS = ("ln_zero", "ln_pad_pos", "ln_pad_neg")
FOREVER = 10 ** 9
REUSE_RATIO = 4.0


@dataclasses.dataclass(frozen=True)
class Layout:
    d_model: int
    slots: dict[str, tuple[int, int]]  # name -> (start, stop), half-open
    fixed: dict[str, int]  # position and LayerNorm rows
    lifetimes: dict[str, tuple[int, int]]  # name -> (first write half, last read half)
    reused: dict[str, tuple[int, ...]] = dataclasses.field(default_factory=dict)

    @property
    def ln_pad_rows(self) -> tuple[int, ...]:
        """The LayerNorm pad rows (``+P``, ``-P``), where the layout has them."""
        return tuple(self.fixed[name] for name in LN_ROWS[1:] if name in self.fixed)

    @property
    def position_rows(self) -> tuple[int, ...]:
        """The rows the position table fills (codes, ``one``, kinds, dyadic queries)."""
        return tuple(row for name, row in self.fixed.items() if name not in LN_ROWS)

    @property
    def fresh(self) -> frozenset[str]:
        """Slots whose rows no earlier slot used: zeros until their first write."""
        return frozenset(n for n in self.slots if not self.reused.get(n, ()))

    def rows_to_clear(self, name: str, first_write: bool) -> tuple[int, ...]:
        """Rows a write must clear: on the slot's first write only those used before."""
        return self.reused.get(name, ()) if first_write else tuple(self.rows(name))

    def rows(self, name: str) -> range:
        start, stop = self.slots[name]
        return range(start, stop)

    def live_after_layer(self, name: str, layer: int) -> bool:
        start, end = self.lifetimes[name]
        return start <= 2 * layer + 1 and end > 2 * layer + 1

    def live_in_layer(self, name: str, layer: int) -> bool:
        """Written by the end of ``layer`` and still read in it or later."""
        start, end = self.lifetimes[name]
        return start <= 2 * layer + 1 and end >= 2 * layer

    def to_json(self) -> dict[str, object]:
        return {"slots": {k: list(v) for k, v in self.slots.items()},
                "fixed": dict(self.fixed), "d_model": self.d_model}


def lifetimes(program: Program, schedule: Schedule) -> dict[str, tuple[int, int]]:
    inputs = (program.x_slot, program.y_slot, *(name for name, _ in program.prior))
    # An input is in the residual from the embedding on, read or not: a prior value that no
    # op reads still sits in W_pos[0] in its rows, so its life reaches at least half 0 and no
    # other prior may share those rows (they did: the later value won, a silent miscompile).
    spans: dict[str, list[int]] = {name: [-1, 0] for name in inputs}
    for i, op in enumerate(program.ops):
        half = schedule.half_of[i]
        for name in op.reads:
            if name not in schedule.virtual:
                spans[name][1] = max(spans[name][1], half)
        if op.dst in schedule.virtual:
            continue
        start = 2 * (half // 2)
        # A write in an attention half is there after that half: a slot first written in the
        # same half (its clear, or its value) must not take these rows.
        end = half + 1 - half % 2
        if op.dst in spans:
            spans[op.dst][1] = max(spans[op.dst][1], end)
        else:
            spans[op.dst] = [start, end]
    spans[program.output][1] = FOREVER
    return {name: (a, b) for name, (a, b) in spans.items()}


def allocate(program: Program, schedule: Schedule,
             position_rows: tuple[str, ...] = POSITION_ROWS,
             magnitudes: dict[str, float] | None = None) -> Layout:
    """``position_rows``: the fixed rows of the position code
    (``construct.compiler.position_codes.position_rows``). ``magnitudes`` (slot bounds), when
    given, keep a slot off rows an earlier slot held at more than ``REUSE_RATIO`` times its own
    bound: a write clears the old value to ``u |old|``, which is then the new value's error
    (float32 gated Sherman-Morrison: a reciprocal of size 1 in rows that held ``x x^T`` of
    size 100 erred 8 u instead of 2 u)."""
    slots = program.slot_map
    placed: dict[str, tuple[int, int]] = {program.y_slot: (0, 1),
                                          program.x_slot: (1, 1 + program.d)}
    fixed_names = position_rows + (LN_ROWS if schedule.uses_layernorm else ())
    base = 1 + program.d
    fixed = {name: base + i for i, name in enumerate(fixed_names)}
    base += len(fixed_names)
    spans = lifetimes(program, schedule)
    order = sorted((n for n in spans if n not in placed), key=lambda n: (spans[n][0], n))
    priors = {name for name, _ in program.prior}
    reused = {name: tuple(range(*placed[name])) for name in placed}
    used = {row for start, stop in placed.values() for row in range(start, stop)}
    held: dict[int, float] = {}  # row -> the largest bound of a slot placed there
    for name in order:
        size = slots[name].size
        start = base
        while True:
            clash = [stop for other, (s, stop) in placed.items()
                     if s < start + size and start < stop and other not in
                     (program.x_slot, program.y_slot) and _overlap(spans[other], spans[name])]
            if magnitudes is not None and not clash:
                limit = REUSE_RATIO * max(magnitudes.get(name, 0.0), 1e-300)
                clash = [row + 1 for row in range(start, start + size)
                         if held.get(row, 0.0) > limit]
            if not clash:
                break
            start = max(clash)
        for row in range(start, start + size):
            held[row] = max(held.get(row, 0.0), (magnitudes or {}).get(name, 0.0))
        reused[name] = tuple(row for row in range(start, start + size)
                             if row in used or name in priors)
        used.update(range(start, start + size))
        placed[name] = (start, start + size)
    d_model = max([stop for _, stop in placed.values()] + [base])
    return Layout(d_model, placed, fixed, spans, reused)


def _overlap(a: tuple[int, int], b: tuple[int, int]) -> bool:
    """Two lifetimes clash unless one's last read is at or before the other's first write."""
    return not (a[1] <= b[0] or b[1] <= a[0])
