"""Lowering of a layer's attention half: one head per ``mov`` and one "self" head.

The self head reads the column's own state (read map ``Prev(0)``) and writes, per row it owns,
``new - old`` so that after the residual connection the row holds ``new``:

- ``aff``: ``W_1 a + W_2 b - dst`` (the bias goes to ``b_O``); exact up to the softmax leak;
- ``mov``: ``-dst``; the ``mov``'s own head adds the value read at the target column;
- an MLP op's destination: ``-dst`` (cleared here so the MLP only adds its result), unless
  the layer itself still reads or writes that slot; then the MLP subtracts the old value;
- LayerNorm pads (layers whose MLP works): ``-pad`` plus ``+P``/``-P`` through ``b_O`` for a
  ``mul`` layer, or ``+N c``/``-N c`` for a ``div`` layer with divisor ``c``.

Because the residual stream keeps untouched rows as they are, no GeLU or LayerNorm bypass is
needed for ``aff``, ``mov`` or the rows an op does not write.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from construct import errors
from construct.analysis import Bounds
from construct.config import CompileConfig
from construct.layout import Layout
from construct.positions import query_key
from construct.program import Aff, MeanOf, Mov, Prev, Program, ReadMap
from construct.schedule import Layer

SELF = Prev(k=0)


@dataclasses.dataclass(frozen=True)
class Head:
    """One head: ``W_Q``/``W_K`` ``[D, 2]``, value map ``[D, v]``, output rows (length ``v``)."""

    read: ReadMap
    w_q: np.ndarray
    w_k: np.ndarray
    w_v: np.ndarray
    out_rows: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class AttentionHalf:
    heads: tuple[Head, ...]
    b_o: np.ndarray
    errors: tuple[errors.ErrorModel, ...]
    cleared: frozenset[int]  # MLP ops whose destination this half cleared


def mlp_clears_in_attention(program: Program, layer: Layer) -> frozenset[int]:
    """MLP ops whose destination no other op of the layer touches (and that do not read it)."""
    cleared = set()
    for i in layer.mlp:
        dst = program.ops[i].dst
        others = [program.ops[j] for j in (*layer.attn, *layer.mlp) if j != i]
        touched = any(dst == o.dst or dst in o.reads for o in others)
        if not touched and dst not in program.ops[i].reads:
            cleared.add(i)
    return frozenset(cleared)


def row_bounds(program: Program, layout: Layout, bounds: Bounds) -> np.ndarray:
    """Largest magnitude any slot sharing each row ever has (what may sit there as garbage)."""
    out = np.zeros(layout.d_model)
    for name, value in bounds.overall.items():
        if name in layout.slots:
            rows = layout.rows(name)
            out[rows.start:rows.stop] = np.maximum(out[rows.start:rows.stop], value)
    for name in ("pos", "pos2", "one", "is_x", "is_y"):
        out[layout.fixed[name]] = 1.0
    return out


def lower_attention(program: Program, layer: Layer, layout: Layout, bounds: Bounds,
                    config: CompileConfig, ln_mode: object) -> AttentionHalf:
    d_model, n_ctx, hardness = layout.d_model, config.n_ctx, config.attn_hardness
    garbage = row_bounds(program, layout, bounds)
    self_value: dict[int, np.ndarray] = {}
    b_o = np.zeros(d_model)
    heads: list[Head] = []
    models: list[errors.ErrorModel] = []

    def overwrite(row: int) -> np.ndarray:
        if row not in self_value:
            self_value[row] = np.zeros(d_model)
            self_value[row][row] = -1.0
        return self_value[row]

    point_leak = errors.point_read_leak(hardness, n_ctx, "float32")
    for i in layer.attn:
        op = program.ops[i]
        dst_rows = layout.rows(op.dst)
        old = float(garbage[dst_rows.start:dst_rows.stop].max())
        before = bounds.before[i]
        if isinstance(op, Mov):
            src_rows = layout.rows(op.src)
            w_q, w_k = query_key(op.read, layout, n_ctx, hardness)
            w_v = np.zeros((d_model, len(src_rows)))
            w_v[list(src_rows), range(len(src_rows))] = 1.0
            heads.append(Head(op.read, w_q, w_k, w_v, tuple(dst_rows)))
            for row in dst_rows:
                overwrite(row)
            leak = (errors.mean_read_leak(hardness, n_ctx, "float32")
                    if isinstance(op.read, MeanOf) else point_leak)
            value = before[op.src]
            models.append(errors.ErrorModel(
                i, "softmax read (position code)", 2 * leak * value + 2 * point_leak * old,
                errors.per_dtype(errors.attention_rounding(1, value + old))))
        elif isinstance(op, Aff):
            magnitude, nonzero = 0.0, 0
            for r, row in enumerate(dst_rows):
                vector = overwrite(row)
                row_total, row_terms = 0.0, 0
                for name, matrix in op.terms:
                    for c, src_row in enumerate(layout.rows(name)):
                        weight = float(matrix[r][c])
                        vector[src_row] += weight
                        row_total += abs(weight) * before[name]
                        row_terms += weight != 0
                if op.bias is not None:
                    b_o[row] += float(op.bias[r][0])
                    row_total += abs(float(op.bias[r][0]))
                magnitude, nonzero = max(magnitude, row_total), max(nonzero, row_terms)
            models.append(errors.ErrorModel(
                i, "self-attention affine map", 2 * point_leak * (magnitude + old),
                errors.per_dtype(errors.attention_rounding(nonzero, magnitude + old))))
        else:
            raise TypeError(f"op {i + 1} is not an attention op")
    cleared = mlp_clears_in_attention(program, layer)
    for i in cleared:
        for row in layout.rows(program.ops[i].dst):
            overwrite(row)
    if ln_mode is not None:
        pos, neg = layout.fixed["ln_pad_pos"], layout.fixed["ln_pad_neg"]
        overwrite(pos), overwrite(neg)
        if ln_mode == "mul":
            b_o[pos] += config.ln_pad
            b_o[neg] -= config.ln_pad
        else:
            den_row = layout.rows(ln_mode)[0]
            self_value[pos][den_row] += config.div_scale
            self_value[neg][den_row] -= config.div_scale
    if self_value:
        rows = sorted(self_value)
        w_q, w_k = query_key(SELF, layout, n_ctx, hardness)
        w_v = np.stack([self_value[r] for r in rows], axis=1)
        heads.insert(0, Head(SELF, w_q, w_k, w_v, tuple(rows)))
    return AttentionHalf(tuple(heads), b_o, tuple(models), cleared)
