"""Position codes in weights: the position table ``W_pos`` and each read map's ``W_Q``, ``W_K``.

The codes and their leak bounds are ``construct.compiler.position_codes``. Rows every model
carries: ``one = 1``, ``is_x``, ``is_y`` (the kind of column ``t`` in the interleaved layout;
both are 0 in a prior column), and the code's rows. A program's prior values
(``Program.prior``) sit in row 0 of the table, in their slots' rows: the prior column's
content comes from the weights, never from the data.

*Quadratic* (``pos = t / n_ctx``, ``pos2 = (t / n_ctx)^2``; ``d_head = 2``):

    q_t = (2 N tau(t), -N),   k_j = (j, j^2),   q_t . k_j = -N (j - tau(t))^2 + N tau(t)^2

so the softmax picks ``j = tau(t)`` with every other key at least ``N`` lower (option (b) of
reference section 2.3). Restricted to ``j <= t`` the maximum sits at ``clamp(tau(t), 0, t)``,
which is the interpreter's clamp. ``tau`` is linear in the rows:

- ``Prev(k, on)``: ``tau = t - k * is_on`` (``is_on = one`` when ``on`` is None);
- ``Fixed(c)``: ``tau = c * one``.

*Dyadic* (``code_c1``, ``code_c2``, ``code_s2``, ...; ``d_head = 2F - 1``): ``k_j = v(j)``, the
cosines and sines of ``2 pi j / 2^f``; the column's own read queries ``N v(t)`` from the same
rows, every other point read ``N v(target)`` from its own query rows, which the table fills
with the interpreter's clamped targets (``read_targets``).

A mean read over kind ``K`` scores ``N * is_K(j)``: equal scores on the wanted columns, ``N``
lower elsewhere.
"""
from __future__ import annotations

import numpy as np

from construct.compiler.config import PositionCode
from construct.compiler.layout import Layout
from construct.compiler.position_codes import (dyadic_components, is_self, key_rows,
                                               point_reads, query_rows)
from construct.language.interpreter import read_targets
from construct.language.program import Fixed, MeanOf, Prev, Program, ReadMap


def dyadic_code(columns: np.ndarray, n_ctx: int) -> np.ndarray:
    """``v(j)`` ``[len(columns), 2F - 1]``: ``cos`` and ``sin`` of ``2 pi j / 2^f``."""
    return np.stack([(np.cos if part == "c" else np.sin)(2 * np.pi * (columns % 2 ** f) / 2 ** f)
                     for f, part in dyadic_components(n_ctx)], axis=1)


def position_table(program: Program, layout: Layout, n_ctx: int,
                   code: PositionCode = PositionCode.QUADRATIC) -> np.ndarray:
    """``W_pos`` ``[n_ctx, d_model]``: the position rows and the prior values; zeros elsewhere."""
    table = np.zeros((n_ctx, layout.d_model))
    t = np.arange(n_ctx)
    rows = layout.fixed
    kinds = np.array(program.column_kinds(n_ctx))
    if code is PositionCode.QUADRATIC:
        table[:, rows["pos"]] = t / n_ctx
        table[:, rows["pos2"]] = (t / n_ctx) ** 2
    else:
        table[:, [rows[name] for name in key_rows(code, n_ctx)]] = dyadic_code(t, n_ctx)
        for read in point_reads(program):
            targets = np.array(read_targets(read, tuple(kinds)))
            table[:, [rows[name] for name in query_rows(code, n_ctx, program, read)]] = \
                dyadic_code(targets, n_ctx)
    table[:, rows["one"]] = 1.0
    table[:, rows["is_x"]] = kinds == "x"
    table[:, rows["is_y"]] = kinds == "y"
    for name, values in program.prior:
        table[0, list(layout.rows(name))] = [float(v) for v in values]
    return table


def query_key(read: ReadMap, layout: Layout, n_ctx: int, hardness: float,
              program: Program | None = None, code: PositionCode = PositionCode.QUADRATIC
              ) -> tuple[np.ndarray, np.ndarray]:
    """``W_Q``, ``W_K`` ``[d_model, 2]`` (dyadic: ``[d_model, 2F - 1]``) of a head that reads
    with ``read`` (``program``: whose point reads own the dyadic query rows)."""
    rows = layout.fixed
    width = len(key_rows(code, n_ctx))
    w_q = np.zeros((layout.d_model, width))
    w_k = np.zeros((layout.d_model, width))
    if isinstance(read, MeanOf):
        w_q[rows["one"], 0] = hardness
        w_k[rows[f"is_{read.kind}"], 0] = 1.0
        return w_q, w_k
    if code is PositionCode.DYADIC:
        keys = key_rows(code, n_ctx)
        queries = keys if is_self(read) else query_rows(code, n_ctx, program, read)
        for component, (key, query) in enumerate(zip(keys, queries)):
            w_q[rows[query], component] = hardness
            w_k[rows[key], component] = 1.0
        return w_q, w_k
    match read:
        case Prev(k=k, on=on):
            w_q[rows["pos"], 0] = 2 * hardness * n_ctx
            w_q[rows["one" if on is None else f"is_{on}"], 0] -= 2 * hardness * k
        case Fixed(column=c):
            w_q[rows["one"], 0] = 2 * hardness * c
    w_q[rows["one"], 1] = -hardness
    w_k[rows["pos"], 0] = n_ctx
    w_k[rows["pos2"], 1] = n_ctx ** 2
    return w_q, w_k
