"""Ridge at every prefix in depth independent of ``n``: sufficient statistics, then an
in-token Gauss–Jordan solve (``rawc compile ridge --method solve``).

The ridge solution after exemplars ``1..k`` is ``w_k = (S_k + lam I)^-1 b_k`` with the
statistics ``S_k = sum_{i<=k} x_i x_i^T`` and ``b_k = sum_{i<=k} y_i x_i``. Dividing by ``k``
changes nothing: ``w_k = A_k^-1 c_k`` with ``A_k = S_k / k + (lam / k) I`` and ``c_k = b_k / k``.
Every term is a mean over the y-columns so far, which one causal mean read gives at every
column at once (``mov ... mean y``):

- each y-column forms its exemplar's ``x x^T`` and ``y x`` (``xe = mov x prev``: at x-columns
  and the prior that read finds a zero x, so their products are zero);
- ``1 / k`` is the mean over the y-columns of an indicator of the first one: ``first = mov
  one back 2`` reads the prior column's constant ``one = 1`` two columns back, which only the
  first y-column (column 2) reaches;
- at the x-column of exemplar ``k + 1`` the means are ``S_k / k``, ``c_k``, ``1 / k``; at the
  first x-column no y-column exists, the mean runs over the prior and that column (products
  zero, indicator one), so ``A_0 = lam I``, ``c_0 = 0`` and the prediction is 0 (ridge on no
  data).

*Why Gauss–Jordan, without pivoting.* ``A_k`` is symmetric positive definite with
``lambda_min(A_k) >= lam / k >= lam / n``, so elimination in the natural order never meets a
pivot below ``lam / n`` (each pivot is a diagonal entry of a Schur complement of ``A_k``, whose
eigenvalues interlace above ``lambda_min``): no search, no row swaps, which a fixed set of
weights could not do. Gauss–Jordan rather than Cholesky or LU because it needs one division
and one rank-one product per pivot on the augmented ``[A | c]`` and ends with ``w`` in the last
column: no back substitution, no square roots (a square root is not an op). Pivot ``j``:

    p = M[j, j];  r = M[j, :] / p;  q = M[:, j] - e_j;  M <- M - q r^T

which leaves ``e_j`` in column ``j`` and the solution of the leading block in the last column.
Each stage then turns rows and columns by one, so its pivot is always at ``(0, 0)`` and the
``d`` stages are one ``repeat d`` body. The division sits in one MLP half, the product in the
next; the affine maps fold into them. The critical path is ``2 d + 2`` layers (the statistics'
products, two per pivot, the prediction's product); the compiled model has ``2 d + 3``.
Nothing depends on ``n``, and the width is ``O(d^2)``.

*Declared bounds* (checked by ``rawc verify`` on every task; ``|x|, |y| <= B``, ``lam <= k lam``):
``A_k``'s entries are ``<= B^2 + lam`` (``|x_i x_i^T| <= B^2``, a mean of them, plus
``lam / k``); ``|c_k| <= B^2``. After ``j`` pivots ``M = [[I, A11^-1 A12 | A11^-1 c1],
[0, A22 - A21 A11^-1 A12 | c2 - A21 A11^-1 c1]]``:

- the Schur complement is SPD with diagonal below ``A22``'s, so entries ``<= B^2 + lam``;
- ``|A11^-1 A12| <= ||A11^-1/2|| ||A11^-1/2 A12|| <= sqrt(k / lam) sqrt(||A22||)``, and
  ``||A22|| <= d B^2 + lam``: entries ``<= R = sqrt(n (d B^2 + lam) / lam)``;
- ``A11^-1 c1`` is ridge on the first ``j`` coordinates; the map ``y -> w`` has singular
  values ``s / (s^2 + lam) <= 1 / (2 sqrt(lam))``: ``|w| <= W = sqrt(n) B / (2 sqrt(lam))``;
- ``c2 - A21 A11^-1 c1 = X2^T (y - X1 w) / k`` and the ridge residual is no longer than ``y``
  (its map has eigenvalues ``lam / (s^2 + lam) <= 1``): entries ``<= B^2``.

The row ``r`` after a pivot is the next block's ``A11^-1 A12`` row and ``A11^-1 c1`` entry,
so within ``max(R, W)``; the column ``q`` within ``max(R, B^2 + lam)``; their product within
the product of those. The prediction ``w^T x_q`` is within ``sqrt(n d) B^2 / (2 sqrt(lam))``.
"""
from __future__ import annotations

import enum
import math
from fractions import Fraction

from construct.algorithms.parameters import upper_fraction
from construct.language.builder import ProgramBuilder, mean_of, prev
from construct.language.program import Program, ProgramError, to_fraction


class RidgeMethod(enum.Enum):
    """How ``ridge`` reaches every prefix: this module's statistics and solve (depth ``2 d + 3``
    for any ``n``), the statistics and Newton–Schulz steps (``ridge_newton``, depth
    ``2 k + 5``, ``k ~ log2`` of the condition number) or ``n`` stacked Sherman–Morrison updates
    (``learners.ridge_program``, depth ``O(n)``)."""

    SOLVE = "solve"
    NEWTON = "newton"
    SHERMAN_MORRISON = "sherman-morrison"

    def __str__(self) -> str:  # as the command line spells it
        return self.value


def _upper(value: float) -> Fraction:
    return max(upper_fraction(value), Fraction(1, 10 ** 6))


def _unit(rows: int, cols: int, pairs: list[tuple[int, int]]) -> list[list[Fraction]]:
    """A ``rows x cols`` 0/1 matrix with ones at ``pairs``."""
    matrix = [[Fraction(0)] * cols for _ in range(rows)]
    for i, j in pairs:
        matrix[i][j] = Fraction(1)
    return matrix


def ridge_statistics(b: ProgramBuilder, d: int, lam: Fraction) -> None:
    """The mean reads every ridge method by statistics starts from: ``s_mean = S_k / k``
    (``d x d``), ``c_mean = b_k / k`` and ``inv_k = 1 / k`` (module docstring)."""
    b.prior("one", [1])
    b.mov("xe", "x", prev())                                    # the exemplar's x at its y-column
    b.mov("first", "one", prev(2))                              # 1 at the first y-column only
    b.mul("xx", "xe", "xe", d, 1, d)                            # x x^T
    b.mul("xy", "xe", "y", d, 1, 1)                             # y x
    b.mov("s_mean", "xx", mean_of("y"))                         # S_k / k
    b.mov("c_mean", "xy", mean_of("y"))                         # b_k / k
    b.mov("inv_k", "first", mean_of("y"))                       # 1 / k


def ridge_solve_program(d: int, n: int = 4, lam: object = Fraction(1, 2),
                        input_bound: float = 4.0) -> Program:
    """Ridge at every prefix: statistics by mean reads, then ``d`` Gauss–Jordan pivots."""
    lam = to_fraction(lam)
    if lam <= 0:
        raise ProgramError(f"lam must be > 0 for ridge, got {lam}")
    if n < 1:
        raise ProgramError(f"n (the number of exemplars) must be >= 1, got {n}")
    B, width = float(input_bound), d + 1
    entry = B ** 2 + float(lam)                                 # A_k and Schur complements
    multiplier = math.sqrt(n * (d * B ** 2 + float(lam)) / float(lam))  # A11^-1 A12
    weight = math.sqrt(n) * B / (2 * math.sqrt(float(lam)))     # partial ridge solutions
    row_bound = max(multiplier, weight, 1.0)
    column_bound = max(multiplier, entry, 1.0)
    b = ProgramBuilder("ridge", d)
    ridge_statistics(b, d, lam)
    # M = [S/k + (lam/k) I | b/k], row-major d x (d + 1)
    place_s = _unit(d * width, d * d, [(i * width + j, i * d + j)
                                       for i in range(d) for j in range(d)])
    place_c = _unit(d * width, d, [(i * width + d, i) for i in range(d)])
    place_lam = [[lam if row in {i * width + i for i in range(d)} else Fraction(0)]
                 for row in range(d * width)]
    b.aff("m", {"s_mean": place_s, "c_mean": place_c, "inv_k": place_lam}, rows=d, cols=width)
    b.assume("m", _upper(max(entry, B ** 2)))
    floor = lam / n
    # One stage per pivot, always at (0, 0): after the update the rows and the first d columns
    # turn by one (the next pivot moves to the corner, the solution column stays last), so
    # every stage is the same and ``d`` turns bring the order back (a ``repeat d`` loop, one
    # stored stage with ``--form shared``).
    turn = _unit(d * width, d * width,
                 [(i * width + j, ((i + 1) % d) * width
                   + (d if j == d else (j + 1) % d)) for i in range(d) for j in range(width)])
    b.repeat(d)
    b.aff("pivot", {"m": _unit(1, d * width, [(0, 0)])}, rows=1)
    b.aff("row", {"m": _unit(width, d * width, [(k, k) for k in range(width)])},
          rows=1, cols=width)
    b.aff("col", {"m": _unit(d, d * width, [(i, i * width) for i in range(d)])},
          bias=[-1] + [0] * (d - 1), rows=d)
    b.assume("col", _upper(column_bound))
    b.div("r", "row", "pivot", min_abs=floor)                  # pivot >= lambda_min >= lam / n
    b.assume("r", _upper(row_bound))
    b.mul("update", "col", "r", d, 1, width)
    b.assume("update", _upper(row_bound * column_bound))
    b.aff("m", {"m": turn, "update": [[-v for v in row] for row in turn]}, rows=d, cols=width)
    b.assume("m", _upper(max(row_bound, entry, B ** 2, 1.0)))
    b.end_repeat()
    b.aff("w", {"m": _unit(d, d * width, [(i, i * width + d) for i in range(d)])}, rows=d)
    b.assume("w", _upper(weight))
    b.dot("pred", "w", "x")
    b.assume("pred", _upper(math.sqrt(n * d) * B ** 2 / (2 * math.sqrt(float(lam)))))
    return b.build(output="pred")
