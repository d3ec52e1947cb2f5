"""Position codes: the rows every model carries and the query/key weights of each read map.

Rows (from the position table ``W_pos``): ``pos = t / n_ctx``, ``pos2 = (t / n_ctx)^2``,
``one = 1``, ``is_x``, ``is_y`` (the kind of column ``t`` in the interleaved layout; both are
0 in a prior column). A program's prior values (``Program.prior``) sit in row 0 of the table,
in their slots' rows: the prior column's content comes from the weights, never from the data.

A point read sends column ``t`` to column ``tau(t)``. Its head uses ``d_head = 2``:

    q_t = (2 N tau(t), -N),   k_j = (j, j^2),   q_t . k_j = -N (j - tau(t))^2 + N tau(t)^2

so the softmax picks ``j = tau(t)`` with every other key at least ``N`` lower (option (b) of
reference section 2.3: the gap does not shrink with the sequence length, unlike the rotary
code whose gap is ``N pi^2 / (8 T^2)``). Restricted to ``j <= t`` the maximum sits at
``clamp(tau(t), 0, t)``, which is the interpreter's clamp. ``tau`` is linear in the rows:

- ``Prev(k, on)``: ``tau = t - k * is_on`` (``is_on = one`` when ``on`` is None);
- ``Fixed(c)``: ``tau = c * one``.

A mean read over kind ``K`` scores ``N * is_K(j)``: equal scores on the wanted columns, ``N``
lower elsewhere.
"""
from __future__ import annotations

import numpy as np

from construct.compiler.layout import Layout
from construct.language.program import Fixed, MeanOf, Prev, Program, ReadMap


def position_table(program: Program, layout: Layout, n_ctx: int) -> np.ndarray:
    """``W_pos`` ``[n_ctx, d_model]``: the position rows and the prior values; zeros elsewhere."""
    table = np.zeros((n_ctx, layout.d_model))
    t = np.arange(n_ctx)
    rows = layout.fixed
    kinds = np.array(program.column_kinds(n_ctx))
    table[:, rows["pos"]] = t / n_ctx
    table[:, rows["pos2"]] = (t / n_ctx) ** 2
    table[:, rows["one"]] = 1.0
    table[:, rows["is_x"]] = kinds == "x"
    table[:, rows["is_y"]] = kinds == "y"
    for name, values in program.prior:
        table[0, list(layout.rows(name))] = [float(v) for v in values]
    return table


def query_key(read: ReadMap, layout: Layout, n_ctx: int,
              hardness: float) -> tuple[np.ndarray, np.ndarray]:
    """``W_Q``, ``W_K`` ``[d_model, 2]`` of a head that reads with ``read``."""
    rows = layout.fixed
    w_q = np.zeros((layout.d_model, 2))
    w_k = np.zeros((layout.d_model, 2))
    match read:
        case MeanOf(kind=kind):
            w_q[rows["one"], 0] = hardness
            w_k[rows[f"is_{kind}"], 0] = 1.0
            return w_q, w_k
        case Prev(k=k, on=on):
            w_q[rows["pos"], 0] = 2 * hardness * n_ctx
            w_q[rows["one" if on is None else f"is_{on}"], 0] -= 2 * hardness * k
        case Fixed(column=c):
            w_q[rows["one"], 0] = 2 * hardness * c
    w_q[rows["one"], 1] = -hardness
    w_k[rows["pos"], 0] = n_ctx
    w_k[rows["pos2"], 1] = n_ctx ** 2
    return w_q, w_k
