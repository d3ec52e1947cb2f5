"""Schedule: place every op in the attention half or the MLP half of a layer.

A layer is ``h = h + Attn(h); h = h + MLP(LN?(h))``. ``mov`` is an attention op (a head that
reads another column); ``mul`` and ``div`` are MLP ops (GeLU product, LayerNorm division);
``aff`` is linear, so it costs no half of its own when it can be *folded* into the weights
of the half that computes its inputs (``fused`` ops, ``construct.compiler.fusion``):

- into an attention half, when its newest input is written there: a head's value map is
  linear, so ``W (R src) = R (W src)`` is one head with read map ``R`` and value ``W``;
- into an MLP half, when its newest input is a product or quotient computed there: ``W_out``
  takes ``W``, the layer's attention adds the terms that were ready before the layer and the
  bias, so ``dst`` is whole once the layer ends;
- otherwise into the attention half after its newest input, as a "self" head.

Half ``2l`` is the attention of layer ``l``, half ``2l + 1`` its MLP. Ops in one half run in
parallel on the state before that half (Lemma 7), so:

- an op reading a slot goes strictly after the op that wrote it, except a fused ``aff``;
  an MLP op may read what the same layer's attention wrote;
- an op writing a slot goes strictly after the last writer and not before the last reader;
  an ``aff`` folded into an MLP half also waits for the readers of its old value to finish by
  the layer's attention half, and no other op of its layer may touch its destination;
- a ``div`` reads its divisor in the attention half (it sets the LayerNorm scale there), so
  the divisor must be ready before the layer starts;
- with LayerNorm, a layer's MLP either multiplies (LayerNorm held at a fixed scale) or divides
  by one divisor; the two cannot share a layer.

``packed`` places each op at its earliest legal half (as soon as possible) and folds affine
maps; ``sequential`` gives each op a layer of its own and folds nothing (the paper's
one-op-per-layer baseline); explicit ``Program.groups`` are checked, never moved or folded.
``barriers`` (op indices) start a fresh layer that no later op may precede: the iterations of
a weight-shared loop each begin at one, so every iteration gets the same relative schedule.

A slot that is read, and only by affine maps folded into the layer that writes it, is
``virtual``: it never occupies residual rows.
"""
from __future__ import annotations

import dataclasses

from construct.language.check import is_mlp_op
from construct.compiler.refusal import CompileRefusal, Refusal
from construct.language.program import Aff, Div, Op, Program


class ScheduleError(CompileRefusal):
    """The requested layer grouping breaks a data dependency or a LayerNorm constraint."""


@dataclasses.dataclass(frozen=True)
class Layer:
    attn: tuple[int, ...]
    mlp: tuple[int, ...]  # MLP ops and the affine maps folded into them


@dataclasses.dataclass(frozen=True)
class Schedule:
    layers: tuple[Layer, ...]
    half_of: tuple[int, ...]  # op index -> half index (2l or 2l + 1)
    uses_layernorm: bool
    fused: frozenset[int] = frozenset()  # affs folded into the half of a same-half input
    virtual: frozenset[str] = frozenset()  # slots that are never materialised in rows

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    def layer_of(self, op_index: int) -> int:
        return self.half_of[op_index] // 2

    def in_mlp_half(self, op_index: int) -> bool:
        return self.half_of[op_index] % 2 == 1


@dataclasses.dataclass
class _Placer:
    """The running state of ``build_schedule``: where each slot was last written and read."""

    program: Program
    half_of: list[int] = dataclasses.field(default_factory=list)
    last_write: dict[str, int] = dataclasses.field(default_factory=dict)
    last_read: dict[str, int] = dataclasses.field(default_factory=dict)
    touched: dict[int, set[str]] = dataclasses.field(default_factory=dict)  # MLP slots by layer

    def written_at(self, name: str) -> int:
        return self.half_of[self.last_write[name]] if name in self.last_write else -1

    def earliest(self, op: Op, floor: int) -> int:
        earliest = floor
        for name in op.reads:
            earliest = max(earliest, self.written_at(name) + 1)
        if op.dst in self.last_write:
            earliest = max(earliest, self.written_at(op.dst) + 1)
        earliest = max(earliest, self.last_read.get(op.dst, 0))
        if isinstance(op, Div) and op.den in self.last_write:
            earliest = max(earliest, 2 * (self.written_at(op.den) // 2 + 1))
        return earliest

    def fold_half(self, op: Aff, floor: int) -> int | None:
        """The half of the newest input of ``op``, if ``op`` may be folded into it."""
        newest = max((self.written_at(name) for name in op.reads), default=-1)
        if newest < floor or newest < 0:
            return None
        if self.written_at(op.dst) >= newest - (newest % 2):
            return None
        if newest % 2 == 0:
            return newest if self.last_read.get(op.dst, 0) <= newest else None
        layer_touches = self.touched.get(newest // 2, ())
        if self.last_read.get(op.dst, 0) > newest - 1 or op.dst in layer_touches:
            return None
        return newest

    def place(self, i: int, half: int) -> None:
        op = self.program.ops[i]
        self.half_of.append(half)
        self.last_write[op.dst] = i
        for name in op.reads:
            self.last_read[name] = max(self.last_read.get(name, 0), half)
        if half % 2 == 1:  # an attention op reads the state before the half: no conflict
            self.touched.setdefault(half // 2, set()).update((op.dst, *op.reads))


def build_schedule(program: Program, mode: str = "packed",
                   barriers: frozenset[int] = frozenset()) -> Schedule:
    if mode not in ("packed", "sequential"):
        raise ValueError(f"unknown schedule mode {mode!r}; use packed or sequential")
    uses_ln = any(isinstance(op, Div) for op in program.ops)
    explicit = _explicit_layer(program)
    may_fold = mode == "packed" and explicit is None
    placer = _Placer(program)
    floor = 0
    mlp_modes: dict[int, object] = {}
    fused: set[int] = set()
    for i, op in enumerate(program.ops):
        if isinstance(op, Div) and op.dst == op.num:
            raise ScheduleError(Refusal.DIV_OVERWRITES_NUMERATOR,
                                f"op {i + 1} (div -> {op.dst}): a div cannot overwrite its "
                                "numerator (its MLP sees every row divided by |den|, so it "
                                "cannot remove the old value); write the quotient elsewhere")
        mlp = is_mlp_op(op)
        if i in barriers and placer.half_of:
            floor = 2 * (max(placer.half_of) // 2 + 1)
        folded = placer.fold_half(op, floor) if may_fold and isinstance(op, Aff) else None
        if folded is not None:
            fused.add(i)
            placer.place(i, folded)
            continue
        earliest = 2 * i if mode == "sequential" else placer.earliest(op, floor)
        half = earliest + (1 if mlp and earliest % 2 == 0 else 0)
        half += 1 if not mlp and half % 2 == 1 else 0
        if explicit is not None:
            wanted = 2 * explicit[i] + (1 if mlp else 0)
            if wanted < half and mode == "sequential":
                raise ScheduleError(
                    Refusal.SEQUENTIAL_GROUPS,
                    f"op {i + 1} ({type(op).__name__.lower()} -> {op.dst}): the sequential "
                    "schedule places one op per layer, but the program's explicit groups put "
                    f"it in layer {explicit[i] + 1} with an earlier op; use --schedule packed, "
                    "or give every op its own group")
            if wanted < half:
                raise ScheduleError(
                    Refusal.GROUP_NOT_READY,
                    f"op {i + 1} ({type(op).__name__.lower()} -> {op.dst}) cannot run in layer "
                    f"{explicit[i] + 1}: an input or an earlier write is not ready until half "
                    f"{half} (the divisor of a div must be computed in an earlier layer)")
            half = wanted
        if mlp and uses_ln:
            wanted_mode = ("div", op.den, placer.last_write.get(op.den)) if isinstance(op, Div) \
                else "mul"
            while True:
                # a div's MLP sees every row divided by |den|, so it cannot remove an old value:
                # no other op of its layer may write its destination or read it in the MLP
                busy = (isinstance(op, Div) and explicit is None
                        and (op.dst in placer.touched.get(half // 2, ())
                             or placer.written_at(op.dst) >= 2 * (half // 2)))
                if not busy and mlp_modes.setdefault(half // 2, wanted_mode) == wanted_mode:
                    break
                if explicit is not None:
                    raise ScheduleError(
                        Refusal.GROUP_LAYERNORM_CONFLICT,
                        f"op {i + 1} ({type(op).__name__.lower()} -> {op.dst}) shares layer "
                        f"{half // 2 + 1} with an op that needs LayerNorm at another scale "
                        "(mul needs the fixed scale; each div its own divisor)")
                half += 2
        placer.place(i, half)
    half_of = placer.half_of
    n_layers = max(half_of) // 2 + 1 if half_of else 0
    layers = tuple(
        Layer(attn=tuple(i for i, h in enumerate(half_of) if h == 2 * l),
              mlp=tuple(i for i, h in enumerate(half_of) if h == 2 * l + 1))
        for l in range(n_layers))
    if mode == "sequential" or explicit is not None:
        layers = tuple(layer for layer in layers if layer.attn or layer.mlp)
        renumber = {}
        for new, layer in enumerate(layers):
            for i in (*layer.attn, *layer.mlp):
                renumber[i] = 2 * new + (1 if is_mlp_op(program.ops[i]) else 0)
        half_of = [renumber[i] for i in range(len(program.ops))]
    fused_set = frozenset(fused)
    return Schedule(layers, tuple(half_of), uses_ln, fused_set,
                    _virtual_slots(program, tuple(half_of), fused_set))


def folded_reader(half_of: tuple[int, ...], writer: int, reader: int) -> bool:
    """Whether ``reader`` (a fused aff) takes ``writer``'s value inside one layer: in the same
    half, or (an attention value) in the same layer's MLP half."""
    return half_of[reader] in (half_of[writer], half_of[writer] + 1 - half_of[writer] % 2)


def _virtual_slots(program: Program, half_of: tuple[int, ...],
                   fused: frozenset[int]) -> frozenset[str]:
    kept = {program.output, program.x_slot, program.y_slot, *(n for n, _ in program.prior)}
    last_write: dict[str, int] = {}
    materialised: set[str] = set(kept)
    for i, op in enumerate(program.ops):
        for name in op.reads:
            j = last_write.get(name)
            if j is None or i not in fused or not folded_reader(half_of, j, i):
                materialised.add(name)
        last_write[op.dst] = i
    read = {name for op in program.ops for name in op.reads}
    return frozenset(read - materialised)


def _explicit_layer(program: Program) -> dict[int, int] | None:
    if program.groups is None:
        return None
    return {i: g for g, group in enumerate(program.groups) for i in group}
