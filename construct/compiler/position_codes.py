"""Position codes: the rows a point read's head scores with, and how far off target it leaks.

Two codes, one per regime of context length (``PositionCode``, ``CompileConfig
.position_code``; by default the cheaper one whose float32 scores still resolve the target):

*Quadratic* (rows ``pos = t / n_ctx``, ``pos2 = (t / n_ctx)^2``). The head's query is linear in
the rows, ``q_t = (2 N tau(t), -N)`` against ``k_j = (j, j^2)``, so
``q_t . k_j = -N (j - tau)^2 + N tau^2``: every other key at least ``N`` below the target, two
rows for every read map. The scores' own size is ``~3 N n_ctx^2``, and float32 rounds them by
``4 u 3 N n_ctx^2``: past ``n_ctx ~ 836`` that eats more than half the gap ``N``, past ``~1180``
all of it (``point_read_leak``: the leak bound reaches 1; measured, ridge's float32 error went
from ``5e-7`` at ``n = 1024`` to ``2e6`` at ``n = 4096``).

*Dyadic* (rows ``c_f(j) = cos(2 pi j / 2^f)``, ``s_f(j) = sin(2 pi j / 2^f)`` for
``f = 1 .. F``, ``2^F >= n_ctx``; ``s_1 = 0`` is left out, so ``K = 2F - 1`` rows). A query
``N v(tau)`` scores key ``j`` with ``N sum_f cos(2 pi (j - tau) / 2^f)``: ``N F`` at ``j = tau``
(distinct columns differ modulo ``2^F``) and at most ``N (F - 2)`` elsewhere, since with
``j - tau = 2^v * odd`` (``v < F``) the term ``f = v + 1`` is ``cos(pi * odd) = -1``. The gap
``2 N`` does not depend on ``n_ctx``, and the scores are at most ``N K``: their float32
rounding stays ``O(K^2 u N)``. The query ``v(clamp(tau(t), 0, t))`` is not linear in the key
rows where the read clamps or depends on the column's kind, so every read map other than the
column's own (``Prev(0)``, whose query is ``N v(t)``) gets its ``K`` query rows in the
position table: the interpreter's own targets (``read_targets``), so the clamp is exact by
construction. Width: ``K`` rows per point read map, against the quadratic code's 2 in all.

Mean reads score ``N is_K(j)`` under both codes: equal scores on the wanted columns, ``N``
lower elsewhere, whatever the context length.
"""
from __future__ import annotations

import math

from construct.compiler.config import PositionCode, unit_roundoff
from construct.language.program import MeanOf, Mov, Prev, Program, ReadMap

KIND_ROWS = ("one", "is_x", "is_y")
QUADRATIC_KEY_ROWS = ("pos", "pos2")


def is_self(read: ReadMap) -> bool:
    """``Prev(0)`` (of any kind): every column reads itself."""
    return isinstance(read, Prev) and read.k == 0


def frequencies(n_ctx: int) -> int:
    """``F``: the dyadic code's frequencies, the fewest with ``2^F >= n_ctx``."""
    return max(1, math.ceil(math.log2(n_ctx)))


def dyadic_components(n_ctx: int) -> tuple[tuple[int, str], ...]:
    """``(f, "c" | "s")`` of each dyadic row, ``(1, "c")`` first; ``s_1 = sin(pi j) = 0`` is
    left out."""
    return ((1, "c"),) + tuple((f, part) for f in range(2, frequencies(n_ctx) + 1)
                               for part in ("c", "s"))


def key_rows(code: PositionCode, n_ctx: int) -> tuple[str, ...]:
    """The rows every point read's key reads (and the column's own read's query)."""
    if code is PositionCode.QUADRATIC:
        return QUADRATIC_KEY_ROWS
    return tuple(f"code_{part}{f}" for f, part in dyadic_components(n_ctx))


def point_reads(program: Program) -> tuple[ReadMap, ...]:
    """The program's point read maps other than the column's own, in order of first use."""
    found: list[ReadMap] = []
    for op in program.unrolled().ops:
        if isinstance(op, Mov) and not isinstance(op.read, MeanOf) and not is_self(op.read) \
                and op.read not in found:
            found.append(op.read)
    return tuple(found)


def query_rows(code: PositionCode, n_ctx: int, program: Program,
               read: ReadMap) -> tuple[str, ...]:
    """The rows holding ``read``'s query code (dyadic; the quadratic code has none: its
    queries are linear in ``pos``, ``one`` and the kind rows)."""
    if code is PositionCode.QUADRATIC or is_self(read):
        return ()
    index = point_reads(program).index(read)
    return tuple(f"query{index}_{name[len('code_'):]}" for name in key_rows(code, n_ctx))


def position_rows(code: PositionCode, n_ctx: int, program: Program) -> tuple[str, ...]:
    """Every fixed row the position table fills, in layout order."""
    queries = tuple(name for read in point_reads(program)
                    for name in query_rows(code, n_ctx, program, read))
    return key_rows(code, n_ctx) + KIND_ROWS + queries


def point_read_leak(code: PositionCode, hardness: float, n_ctx: int,
                    dtype: str = "float64") -> float:
    """Softmax weight off the target column of a point read (scores rounded in ``dtype``).

    Quadratic: keys at distance ``m`` sit ``N m^2`` below, ``2 sum_m e^{-N m^2}``; scores of
    size ``S = 3 N n_ctx^2`` rounded by ``2 u S`` each cost ``e^{2 delta}``. Dyadic: every
    other key at least ``2 N`` below, ``n_ctx - 1`` of them; a score is a ``K``-term dot of
    query entries at most ``N`` and key entries at most 1, each off by ``2 u`` relative
    (the cosine rounded, then scaled), so each product by ``5 u N`` and their sum by
    ``gamma_(K-1) N K`` more: ``delta <= (K + 4) u N K``, costing ``e^{2 delta}``."""
    u = unit_roundoff(dtype)
    if code is PositionCode.QUADRATIC:
        margin = hardness - 4 * u * 3 * hardness * n_ctx ** 2
        if margin <= 0:
            return 1.0
        return min(1.0, 2 * math.exp(-margin) / (1 - math.exp(-3 * margin)))
    terms = 2 * frequencies(n_ctx) - 1
    margin = 2 * hardness - 2 * (terms + 4) * u * hardness * terms
    if margin <= 0:
        return 1.0
    return min(1.0, (n_ctx - 1) * math.exp(-margin))

