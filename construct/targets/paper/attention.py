"""Lowering of a layer's attention half: one head per read map, the "self" head first.

Every value the half writes is a linear form over the residual read through some read maps
(``construct.compiler.fusion``); all the parts with one read map share a head (same queries and keys,
the value columns side by side). The self head reads the column's own state (read map
``Prev(0)``) and also writes, per row it owns, ``-old`` so that after the residual connection
the row holds ``new``:

- ``aff``: ``W_1 a + W_2 b - dst`` (the bias goes to ``b_O``); exact up to the softmax leak;
  an aff folded into the layer's MLP gets its ready terms and bias here, its products there;
- ``mov``: ``-dst``; the ``mov``'s head adds the value read at the target column;
- an MLP op's destination: ``-dst`` (cleared here so the MLP only adds its result), unless
  the layer itself still reads or writes that slot; then the MLP subtracts the old value;
- rows no slot used before hold zeros: a slot's first write clears only its reused rows;
- LayerNorm pads (layers whose MLP works): ``-pad`` plus ``+P``/``-P`` through ``b_O`` for a
  ``mul`` layer, or ``+N c``/``-N c`` for a ``div`` layer with divisor ``c``.

Because the residual stream keeps untouched rows as they are, no GeLU or LayerNorm bypass is
needed for ``aff``, ``mov`` or the rows an op does not write.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from construct.compiler import error_models as errors
from construct.targets.paper.layer_norm import LayerNormUse
from construct.compiler.analysis import Bounds
from construct.compiler.config import CompileConfig
from construct.compiler.layout import Layout
from construct.language.check import is_mlp_op
from construct.compiler.fusion import SELF, LinearForm
from construct.compiler.position_codes import point_read_leak
from construct.targets.paper.positions import query_key
from construct.language.program import Aff, Div, MeanOf, Mov, Program, ReadMap
from construct.compiler.schedule import Layer, Schedule


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

    @property
    def value_terms(self) -> int:
        """The heads' outputs ``W_O`` sums into a row (every one reaches the zero-mean pads)."""
        return sum(len(head.out_rows) for head in self.heads)


def mlp_clears_in_attention(program: Program, schedule: Schedule,
                            layer: Layer) -> frozenset[int]:
    """MLP ops (mul, div) whose destination no other op of the layer reads from the residual
    or writes, and that do not read it themselves: the attention clears it (a virtual one
    has no rows), so the MLP only adds its result."""
    cleared = set()
    for i in layer.mlp:
        dst = program.ops[i].dst
        if i in schedule.fused:
            continue
        if dst in schedule.virtual:  # no rows: nothing to clear, nothing to remove
            cleared.add(i)
            continue
        op = program.ops[i]
        # Another write of dst in this layer (a folded aff's too) must not be cleared twice;
        # a non-fused MLP op reading dst needs the old value after the attention half. Readers
        # in the attention half (and a div's divisor, read there for the LayerNorm scale) see
        # the state before the half, so clearing there does not disturb them.
        touched = any(dst == program.ops[j].dst
                      or (dst in program.ops[j].reads and j not in schedule.fused
                          and schedule.in_mlp_half(j))
                      for j in (*layer.attn, *layer.mlp) if j != i)
        if not touched and dst not in ((op.num,) if isinstance(op, Div) else op.reads):
            cleared.add(i)
    return frozenset(cleared)


def row_bounds(program: Program, layout: Layout, bounds: Bounds) -> np.ndarray:
    """Largest magnitude any slot sharing each row ever has (what may sit there as garbage)."""
    out = np.zeros(layout.d_model)
    for name, value in bounds.overall.items():
        if name in layout.slots:
            rows = layout.rows(name)
            out[rows.start:rows.stop] = np.maximum(out[rows.start:rows.stop], value)
    out[list(layout.position_rows)] = 1.0
    return out


def lower_attention(program: Program, schedule: Schedule, layer_index: int,
                    forms: dict[int, LinearForm], layout: Layout, bounds: Bounds,
                    config: CompileConfig, ln_use: LayerNormUse | None,
                    first_writes: frozenset[int], garbage: np.ndarray) -> AttentionHalf:
    """The heads of one attention half: every materialised value's read and bias parts
    (``construct.compiler.fusion``), the clearing of old values (``garbage``: ``row_bounds``) and the
    LayerNorm pads."""
    layer = schedule.layers[layer_index]
    d_model, n_ctx, hardness = layout.d_model, config.n_ctx, config.attn_hardness
    values: dict[ReadMap, dict[int, np.ndarray]] = {}
    b_o = np.zeros(d_model)
    models: list[errors.ErrorModel] = []

    def column(read: ReadMap, row: int) -> np.ndarray:
        return values.setdefault(read, {}).setdefault(row, np.zeros(d_model))

    def clear(i: int) -> float:
        """Subtract the old value of op ``i``'s rows that may hold one; its bound."""
        if program.ops[i].dst in schedule.virtual:
            return 0.0
        rows = layout.rows_to_clear(program.ops[i].dst, i in first_writes)
        for row in rows:
            column(SELF, row)[row] -= 1.0
        return float(max((garbage[row] for row in rows), default=0.0))

    point_leak = point_read_leak(config.code, hardness, n_ctx, "float32")
    for i in sorted((*layer.attn, *layer.mlp)):
        op, form = program.ops[i], forms[i]
        if is_mlp_op(op):
            continue
        old = 0.0
        if op.dst not in schedule.virtual:
            dst_rows = layout.rows(op.dst)
            for read, matrix in form.reads.items():
                for r, row in enumerate(dst_rows):
                    column(read, row)[:] += matrix[r]
            b_o[list(dst_rows)] += form.bias
            old = clear(i)
        before = bounds.before[i]
        if isinstance(op, Mov):
            leak = (errors.mean_read_leak(hardness, n_ctx, "float32")
                    if isinstance(op.read, MeanOf) else point_leak)
            value = before[op.src]
            models.append(errors.ErrorModel(
                i, "softmax read (position code)", 2 * leak * value + 2 * point_leak * old,
                errors.per_dtype(errors.attention_rounding(1, value + old))))
        elif isinstance(op, Aff):
            magnitude, nonzero = affine_size(op, before)
            mechanism = ("affine map folded into " + ("the MLP" if schedule.in_mlp_half(i)
                                                      else "the heads")
                         if i in schedule.fused else "self-attention affine map")
            models.append(errors.ErrorModel(
                i, mechanism, 2 * point_leak * (magnitude + old),
                errors.per_dtype(errors.attention_rounding(nonzero, magnitude + old))))
        else:
            raise TypeError(f"op {i + 1} is not an attention op")
    cleared = mlp_clears_in_attention(program, schedule, layer)
    for i in cleared:
        clear(i)
    if ln_use is not None:
        pos, neg = layout.fixed["ln_pad_pos"], layout.fixed["ln_pad_neg"]
        column(SELF, pos)[pos] -= 1.0
        column(SELF, neg)[neg] -= 1.0
        if not ln_use.divides:
            b_o[pos] += config.ln_pad
            b_o[neg] -= config.ln_pad
        else:
            den_row = layout.rows(ln_use.divisor)[0]
            column(SELF, pos)[den_row] += config.div_scale
            column(SELF, neg)[den_row] -= config.div_scale
    heads = []
    for read in sorted(values, key=lambda r: (r != SELF, r.text())):
        rows = sorted(values[read])
        w_q, w_k = query_key(read, layout, n_ctx, hardness, program, config.code)
        w_v = np.stack([values[read][r] for r in rows], axis=1)
        heads.append(Head(read, w_q, w_k, w_v, tuple(rows)))
    return AttentionHalf(tuple(heads), b_o, tuple(models), cleared)


def affine_size(op: Aff, before: dict[str, float]) -> tuple[float, int]:
    """Largest ``sum |W| |input| + |b|`` over the rows of an aff, and most nonzero terms."""
    magnitude, nonzero = 0.0, 0
    for r in range(len(op.bias) if op.bias is not None else len(op.terms[0][1])):
        total = abs(float(op.bias[r][0])) if op.bias is not None else 0.0
        terms = 0
        for name, matrix in op.terms:
            total += sum(abs(float(w)) for w in matrix[r]) * before[name]
            terms += sum(1 for w in matrix[r] if w != 0)
        magnitude, nonzero = max(magnitude, total), max(nonzero, terms)
    return magnitude, nonzero
