"""Schedule: place every op in the attention half or the MLP half of a layer.

A layer is ``h = h + Attn(h); h = h + MLP(LN?(h))``. ``mov`` and ``aff`` are attention ops
(a head that reads another column; a head that reads its own column and applies an affine
map); ``mul`` and ``div`` are MLP ops (GeLU product, LayerNorm division). Half ``2l`` is the
attention of layer ``l``, half ``2l + 1`` its MLP. Ops in one half run in parallel on the
state before that half (Lemma 7), so:

- an op reading a slot goes strictly after the op that wrote it (an MLP op may read what the
  same layer's attention wrote: that is how ``packed`` beats one op per layer);
- an op writing a slot goes strictly after the last writer and not before the last reader;
- a ``div`` reads its divisor in the attention half (it sets the LayerNorm scale there), so
  the divisor must be ready before the layer starts;
- with LayerNorm, a layer's MLP either multiplies (LayerNorm held at a fixed scale) or divides
  by one divisor; the two cannot share a layer.

``packed`` places each op at its earliest legal half (as soon as possible); ``sequential``
gives each op a layer of its own; explicit ``Program.groups`` are checked, never moved.
``barriers`` (op indices) start a fresh layer that no later op may precede: the iterations of
a weight-shared loop each begin at one, so every iteration gets the same relative schedule.
"""
from __future__ import annotations

import dataclasses

from construct.check import is_mlp_op
from construct.program import Div, Op, Program, ProgramError


class ScheduleError(ProgramError):
    """The requested layer grouping breaks a data dependency or a LayerNorm constraint."""


@dataclasses.dataclass(frozen=True)
class Layer:
    attn: tuple[int, ...]
    mlp: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class Schedule:
    layers: tuple[Layer, ...]
    half_of: tuple[int, ...]  # op index -> half index (2l or 2l + 1)
    uses_layernorm: bool

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    def layer_of(self, op_index: int) -> int:
        return self.half_of[op_index] // 2


def _mlp_mode(op: Op, den_version: dict[int, tuple[str, int | None]], i: int) -> object:
    return ("div", den_version[i]) if isinstance(op, Div) else "mul"


def build_schedule(program: Program, mode: str = "packed",
                   barriers: frozenset[int] = frozenset()) -> Schedule:
    uses_ln = any(isinstance(op, Div) for op in program.ops)
    floor = 0
    last_write: dict[str, int] = {}
    last_read: dict[str, int] = {}
    den_version: dict[int, tuple[str, int | None]] = {}
    mlp_modes: dict[int, object] = {}
    half_of: list[int] = []
    explicit = _explicit_layer(program)
    for i, op in enumerate(program.ops):
        mlp = is_mlp_op(op)
        if isinstance(op, Div):
            den_version[i] = (op.den, last_write.get(op.den))
        if i in barriers and half_of:
            floor = 2 * (max(half_of) // 2 + 1)
        if mode == "sequential":
            earliest = 2 * i
        else:
            earliest = floor
            for name in op.reads:
                if name in last_write:
                    earliest = max(earliest, half_of[last_write[name]] + 1)
            if op.dst in last_write:
                earliest = max(earliest, half_of[last_write[op.dst]] + 1)
            if op.dst in last_read:
                earliest = max(earliest, last_read[op.dst])
            if isinstance(op, Div) and op.den in last_write:
                earliest = max(earliest, 2 * (half_of[last_write[op.den]] // 2 + 1))
        half = earliest + (1 if mlp and earliest % 2 == 0 else 0)
        half += 1 if not mlp and half % 2 == 1 else 0
        if explicit is not None:
            wanted = 2 * explicit[i] + (1 if mlp else 0)
            if wanted < half:
                raise ScheduleError(
                    f"op {i + 1} ({type(op).__name__.lower()} -> {op.dst}) cannot run in layer "
                    f"{explicit[i] + 1}: an input or an earlier write is not ready until half "
                    f"{half} (the divisor of a div must be computed in an earlier layer)")
            half = wanted
        if mlp and uses_ln:
            wanted_mode = _mlp_mode(op, den_version, i)
            while mlp_modes.setdefault(half // 2, wanted_mode) != wanted_mode:
                if explicit is not None:
                    raise ScheduleError(
                        f"op {i + 1} ({type(op).__name__.lower()} -> {op.dst}) shares layer "
                        f"{half // 2 + 1} with an op that needs LayerNorm at another scale "
                        "(mul needs the fixed scale; each div its own divisor)")
                half += 2
        half_of.append(half)
        last_write[op.dst] = i
        for name in op.reads:
            last_read[name] = max(last_read.get(name, 0), half)
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
    return Schedule(layers, tuple(half_of), uses_ln)


def _explicit_layer(program: Program) -> dict[int, int] | None:
    if program.groups is None:
        return None
    return {i: g for g, group in enumerate(program.groups) for i in group}
