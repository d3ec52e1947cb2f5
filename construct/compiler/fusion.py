"""Folding affine maps: every value a layer computes, as one linear form over what it reads.

A layer's attention is linear in the values its heads read, and its MLP output is linear in
the unit activations, so an ``aff`` folded into a layer (``Schedule.fused``) needs no half of
its own. Within layer ``l`` every op ``i`` has the value

    v_i = sum_R  M_{i,R} h(R)  +  sum_j  P_{i,j} r_j  +  b_i

where ``h(R)`` is the residual before the layer read through map ``R`` (``Prev(0)``: the
column's own state), ``r_j`` the result of MLP op ``j`` (a product or a quotient computed by
this layer's MLP) and ``b_i`` a constant:

- ``mov dst src R``: ``M_R`` selects ``src``'s rows (``src`` was written before the half);
- ``mul``/``div`` ``j``: ``P_j = I``;
- ``aff dst sum_t W_t t + b``: ``sum_t W_t v_t + b``, with ``v_t`` the form of ``t`` if this
  layer wrote ``t`` and otherwise ``t``'s own rows read through ``Prev(0)``.

Lowering then writes each materialised value: the ``M`` parts and ``b`` through the heads of
the attention half (one head per read map: heads with equal queries and keys merge), the
``P`` parts through ``W_out``. Folding is exact: composition of linear maps. Its error is the
composition of the errors: ``|W_t|_inf`` times the error of each folded input plus the
attention rounding of the folded map (``verify.check.runner`` checks each fused op against that
sum).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from construct.compiler.layout import Layout
from construct.language.program import Aff, Div, Hinge, Mov, Mul, Prev, Program, ReadMap
from construct.compiler.schedule import Schedule, folded_reader

SELF = Prev(k=0)


@dataclasses.dataclass(frozen=True)
class LinearForm:
    """``sum_R reads[R] @ h(R) + sum_j products[j] @ r_j + bias`` (one entry per dst entry)."""

    reads: dict[ReadMap, np.ndarray]  # read map -> [size, d_model]
    products: dict[int, np.ndarray]  # MLP op index -> [size, size of its result]
    bias: np.ndarray  # [size]

    def combine(self, weight: np.ndarray, other: LinearForm) -> LinearForm:
        """``self + weight @ other``."""
        reads, products = dict(self.reads), dict(self.products)
        for read, matrix in other.reads.items():
            reads[read] = reads.get(read, 0) + weight @ matrix
        for j, matrix in other.products.items():
            products[j] = products.get(j, 0) + weight @ matrix
        return LinearForm(reads, products, self.bias + weight @ other.bias)


def _selection(layout: Layout, name: str) -> np.ndarray:
    rows = layout.rows(name)
    matrix = np.zeros((len(rows), layout.d_model))
    matrix[range(len(rows)), list(rows)] = 1.0
    return matrix


def layer_forms(program: Program, schedule: Schedule, layout: Layout,
                layer_index: int) -> dict[int, LinearForm]:
    """The linear form of every op of one layer, in program order."""
    layer = schedule.layers[layer_index]
    members = sorted((*layer.attn, *layer.mlp))
    written: dict[str, LinearForm] = {}
    forms: dict[int, LinearForm] = {}
    for i in members:
        op = program.ops[i]
        size = program.slot_map[op.dst].size
        empty = LinearForm({}, {}, np.zeros(size))
        match op:
            case Mov(src=src, read=read):
                form = LinearForm({read: _selection(layout, src)}, {}, np.zeros(size))
            case Mul() | Div() | Hinge():
                form = LinearForm({}, {i: np.eye(size)}, np.zeros(size))
            case Aff(terms=terms, bias=bias):
                form = empty if bias is None else LinearForm(
                    {}, {}, np.array([float(row[0]) for row in bias]))
                for name, matrix in terms:
                    weight = np.array([[float(w) for w in row] for row in matrix])
                    source = written.get(name) if i in schedule.fused else None
                    if source is None:
                        source = LinearForm({SELF: _selection(layout, name)}, {},
                                            np.zeros(weight.shape[1]))
                    form = form.combine(weight, source)
        forms[i] = form
        written[op.dst] = form
    return forms


def folded_inputs(program: Program, schedule: Schedule,
                  index: int) -> tuple[tuple[int, float], ...]:
    """For a fused aff: the same-layer ops whose values it takes, with ``|W_t|_inf`` (the
    factor by which their errors enter its value)."""
    if index not in schedule.fused:
        return ()
    op = program.ops[index]
    writer: dict[str, int] = {}
    for j in range(index):
        writer[program.ops[j].dst] = j
    out = []
    for name, matrix in op.terms:
        j = writer.get(name)
        if j is not None and folded_reader(schedule.half_of, j, index):
            out.append((j, max(sum(abs(float(w)) for w in row) for row in matrix)))
    return tuple(out)
