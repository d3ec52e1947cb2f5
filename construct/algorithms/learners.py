"""In-context learners over ``n`` exemplars, predicting at every prefix: ``sgd``, ``ridge``,
``gd-batch``.

The prompt is ``P x1 y1 x2 y2 ... xn yn x_q`` with a prior column ``P`` (column 0, a zero
token) whose content comes from the weights: the learner's initial state (``w0``, or
``A0^-1 = I / lam`` and ``b0 = 0``). The prediction at the x-column of example ``k + 1`` uses
the exemplars ``1..k`` only (``k = 0..n``; the last is the query).

*State carried column to column* (``sgd``, ``ridge``). The learner's state lives at y-columns.
One stage updates it: every y-column reads the state of the previous y-column (``back 2 on
y``; the first reads the prior column) and folds in its own exemplar. By induction, after
stage ``s`` the y-column of example ``i <= s`` holds the state after exemplars ``1..i``, so
``n`` identical stages finish every prefix: depth O(n). Each stage also reads its exemplar's
``x`` from the x-column before it (``xe = mov x prev``); at x-columns and at the prior that
read finds a y-token or the prior, whose features are zero, so there the exemplar is
``(0, 0)`` and the state stays what it was (zero at x-columns; the prior value at ``P``). The
stage is a ``repeat n`` loop: compiled ``stacked`` (unrolled, packed across stages) or
``shared`` (one stage's layers stored once and run ``n`` times).

*Mean read* (``gd-batch``). One full-batch step needs the mean gradient over the exemplars so
far, which one ``mov ... mean y`` head gives in constant depth.

Declared bounds (theorems about every column, checked by ``rawc verify``) keep the GeLU
products scaled to the values they really take; each is derived where it is declared.
"""
from __future__ import annotations

import math
from fractions import Fraction

from construct.algorithms.parameters import start_weights, upper_fraction
from construct.language.builder import ProgramBuilder, mean_of, prev
from construct.language.program import Program, ProgramError, identity, to_fraction


def _upper(value: float) -> Fraction:
    """A declared bound: a short fraction >= ``value`` (and > 0, as declared bounds must be)."""
    return max(upper_fraction(value), Fraction(1, 10 ** 6))


def _check_n(n: int) -> int:
    if int(n) < 1:
        raise ProgramError(f"n (the number of exemplars) must be >= 1, got {n}")
    return int(n)


def sgd_weight_bound(d: int, n: int, alpha: Fraction, lam: Fraction, w0: list[Fraction],
                     input_bound: float) -> float:
    """Largest ``||w_k||_2`` over ``k <= n`` for any data with entries ``<= B``.

    ``w_k = M_k w_{k-1} + 2 alpha y_k x_k`` with ``M_k = c I - 2 alpha x_k x_k^T``,
    ``c = 1 - 2 alpha lam``. ``M_k``'s eigenvalues are ``c`` and ``c - 2 alpha |x_k|^2`` with
    ``|x_k|^2 <= d B^2``, so ``||M_k|| <= rho = max(|c|, |c - 2 alpha d B^2|)`` and
    ``||w_k|| <= rho^k ||w0|| + 2 alpha sqrt(d) B^2 sum_{j<k} rho^j``. ``rho <= 1`` needs
    ``alpha <= (1 + c) / (2 d B^2)``; beyond it the bound (and the compiled model's error,
    which scales with it) grows geometrically in ``n``.
    """
    a, c, bound = float(alpha), 1 - 2 * float(alpha) * float(lam), float(input_bound)
    rho = max(abs(c), abs(c - 2 * a * d * bound ** 2))
    step = 2 * a * math.sqrt(d) * bound ** 2
    norm = math.sqrt(sum(float(v) ** 2 for v in w0))
    best, current = norm, norm
    for _ in range(n):
        current = rho * current + step
        best = max(best, current)
    return best


def sgd_program(d: int, n: int = 4, alpha: object = Fraction(1, 100), lam: object = 0,
                w0: object = None, input_bound: float = 4.0) -> Program:
    """One pass of SGD: ``w_i = w_{i-1} - 2 alpha (x_i x_i^T w_{i-1} - x_i y_i + lam w_{i-1})``.

    The prior column holds ``w0`` in ``w`` and ``2 alpha lam w0`` in ``keep``. Each stage
    writes ``w = c w_in - 2 alpha g + keep`` with ``c = 1 - 2 alpha lam``: at the prior
    (``g = 0``, ``w_in = w0``) that is ``c w0 + (1 - c) w0 = w0``, so the prior stays put;
    ``keep`` is zero in every other column.
    """

    n, alpha, lam, start = _check_n(n), to_fraction(alpha), to_fraction(lam), start_weights(d, w0)
    decay = 1 - 2 * alpha * lam
    weight = sgd_weight_bound(d, n, alpha, lam, start, input_bound)
    b = ProgramBuilder("sgd", d)
    b.prior("w", start)
    b.prior("keep", [(1 - decay) * v for v in start])
    b.repeat(n)
    b.mov("xe", "x", prev())                              # the exemplar's x at its y-column
    b.mov("w_in", "w", prev(2, on="y"))                   # w_{i-1} from the previous y-column
    b.dot("fit", "w_in", "xe")                            # w_{i-1}^T x_i
    b.assume("fit", _upper(weight * math.sqrt(d) * input_bound))
    b.aff("err", {"fit": 1, "y": -1})                     # w_{i-1}^T x_i - y_i
    b.mul("grad", "xe", "err", d, 1, 1)                   # x_i (w_{i-1}^T x_i - y_i)
    b.aff("w", {"w_in": decay, "grad": -2 * alpha, "keep": 1})
    b.assume("w", _upper(weight))
    b.end_repeat()
    b.mov("w_q", "w", prev(on="x"))                       # w_k at the x-column of k + 1
    b.dot("pred", "w_q", "x")
    b.assume("pred", _upper(weight * math.sqrt(d) * input_bound))
    return b.build(output="pred")


def ridge_program(d: int, n: int = 4, lam: object = Fraction(1, 2),
                  input_bound: float = 4.0) -> Program:
    """Ridge at every prefix by ``n`` stacked Sherman–Morrison updates.

    State at y-columns: ``A^-1 = (lam I + sum_{i<=k} x_i x_i^T)^-1`` (prior ``I / lam``) and
    ``b = sum_{i<=k} y_i x_i`` (prior 0). A stage: ``u = A^-1 x``, ``A^-1 <- A^-1 - u u^T /
    (1 + x^T u)``, ``b <- b + y x``. The prediction at x-column ``k + 1`` is
    ``(A_k^-1 b_k)^T x_{k+1}``.

    Declared bounds, with ``|entries| <= B``: every ``A^-1`` is symmetric positive definite
    with eigenvalues in ``(0, 1/lam]``, so its entries are ``<= 1/lam``; ``u u^T / (1 + x^T u)``
    is PSD and below ``A^-1`` (their difference is the next ``A^-1``), so also ``<= 1/lam``;
    ``|u| <= ||A^-1|| ||x|| <= sqrt(d) B / lam``; ``x^T u <= |x|^2 / lam <= d B^2 / lam``.
    The ridge solution ``w = (lam I + X^T X)^-1 X^T y`` has singular values of the map
    ``y -> w`` equal to ``s / (s^2 + lam) <= 1 / (2 sqrt(lam))``, so
    ``|w| <= sqrt(n) B / (2 sqrt(lam))`` and ``|w^T x| <= sqrt(n d) B^2 / (2 sqrt(lam))``.
    In x-columns ``A^-1``, ``b`` and ``w`` stay zero, within every bound.
    """
    n, lam = _check_n(n), to_fraction(lam)
    if lam <= 0:
        raise ProgramError(f"lam must be > 0 for ridge, got {lam}")
    inv_lam, B = 1 / lam, float(input_bound)
    half_root = 1 / (2 * math.sqrt(float(lam)))
    b = ProgramBuilder("ridge", d)
    b.prior("a_inv", [v for row in identity(d, inv_lam) for v in row], rows=d, cols=d)
    b.prior("moment", [0] * d)
    b.repeat(n)
    b.mov("xe", "x", prev())                              # the exemplar's x at its y-column
    b.mov("a_in", "a_inv", prev(2, on="y"))               # A_{i-1}^-1 from the previous y-column
    b.mov("m_in", "moment", prev(2, on="y"))              # b_{i-1}
    b.mul("u", "a_in", "xe", d, d, 1)                     # A^-1 x
    b.assume("u", _upper(math.sqrt(d) * B * float(inv_lam)))
    b.mul("xy", "xe", "y", d, 1, 1)                       # y x
    b.dot("quad", "xe", "u")                              # x^T A^-1 x >= 0
    b.assume("quad", _upper(d * B ** 2 * float(inv_lam)))
    b.mul("outer", "u", "u", d, 1, d)                     # A^-1 x x^T A^-1
    b.aff("moment", {"m_in": 1, "xy": 1})                 # b_i = b_{i-1} + y_i x_i
    b.aff("den", {"quad": 1}, bias=[1])                   # 1 + x^T A^-1 x >= 1
    b.div("right", "outer", "den", min_abs=1)
    b.assume("right", inv_lam)
    b.aff("a_inv", {"a_in": 1, "right": -1})              # A_i^-1 (Sherman–Morrison)
    b.assume("a_inv", inv_lam)
    b.end_repeat()
    b.mul("w", "a_inv", "moment", d, d, 1)                # ridge weights after each prefix
    b.assume("w", _upper(math.sqrt(n) * B * half_root))
    b.mov("w_q", "w", prev(on="x"))
    b.dot("pred", "w_q", "x")
    b.assume("pred", _upper(math.sqrt(n * d) * B ** 2 * half_root))
    return b.build(output="pred")


def gd_batch_program(d: int, n: int = 4, alpha: object = Fraction(1, 10), lam: object = 0,
                     w0: object = None) -> Program:
    """One full-batch GD step from ``w0`` on the exemplars before each query (mean loss).

    Loss convention: ``L_k(w) = (1/k) sum_{i<=k} (w^T x_i - y_i)^2 + lam |w|^2``, so
    ``w_k = w0 - 2 alpha ((1/k) sum_{i<=k} x_i (x_i^T w0 - y_i) + lam w0)``; with no exemplar
    (``k = 0``) the mean is empty and taken as zero: ``w_0 = (1 - 2 alpha lam) w0``. Each
    y-column computes its exemplar's gradient ``g_i`` (zero at x-columns and the prior, whose
    ``xe`` and ``y`` are zero); one mean read over y-columns averages them at every x-column
    (at ``x_1`` there is no y-column and the read averages the prior and itself: zero).
    Depth is constant in ``n``.
    """

    _check_n(n)
    alpha, lam, start = to_fraction(alpha), to_fraction(lam), start_weights(d, w0)
    b = ProgramBuilder("gd-batch", d)
    b.prior_column()
    b.mov("xe", "x", prev())                              # x_i at its y-column, 0 elsewhere
    b.aff("err", {"xe": [start], "y": -1})                # w0^T x_i - y_i
    b.mul("grad", "xe", "err", d, 1, 1)                   # x_i (w0^T x_i - y_i)
    b.mov("mean_grad", "grad", mean_of("y"))              # (1/k) sum_{i<=k} of them
    b.aff("w", {"mean_grad": -2 * alpha}, bias=[(1 - 2 * alpha * lam) * v for v in start])
    b.dot("pred", "w", "x")
    return b.build(output="pred")
