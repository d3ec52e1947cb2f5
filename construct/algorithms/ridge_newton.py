"""Ridge at every prefix by the statistics and Newton–Schulz iterations
(``rawc compile ridge --method newton``).

The statistics are ``ridge_solve``'s: mean reads give ``A_k = S_k / k + (lam / k) I`` and
``c_k = b_k / k`` at every column. Instead of eliminating, iterate towards ``A_k^-1``:

    X_0 = I / tr(A_k),    X_{j+1} = X_j (2 I - A_k X_j) = 2 X_j - X_j A_k X_j.

Every ``X_j`` is a polynomial in ``A_k``, so ``X_j`` and ``A_k`` commute and share
eigenvectors; on an eigenvalue ``a`` the residual ``1 - a x_j`` squares each step
(``1 - a x_{j+1} = (1 - a x_j)^2``). It starts in ``[0, 1 - a_min / tr(A_k))`` (``tr >= a_max``),
so after ``k`` steps the relative error of the inverse is at most ``(1 - 1/K)^(2^k) <=
exp(-2^k / K)`` with ``K = tr(A_k) / a_min``. Over the declared box ``tr(A_k) <= d B^2 +
d lam / k`` and ``a_min >= lam / k``, so ``K <= (k d B^2 + d lam) / lam <= n d (B^2 + lam) / lam``,
and ``k = ceil(log2(K ln(1 / u)))`` steps reach the dtype's rounding ``u`` (``newton_steps``).
That is the anchor's trade: Fu et al. 2024 need ``k + 8`` layers, Giannou et al. 2025 two
linear-attention layers per step; here each step is two products (``A X``, then ``X (A X)``),
two MLP halves, so ``2 k + 5`` layers, and ``k`` grows like ``log2`` of the condition number
(so like ``log2 n`` over the box), where the Gauss–Jordan solve needs ``2 d + 3`` for any ``n``.

*Declared bounds* (``|x|, |y| <= B``): ``X_j`` has eigenvalues in ``(0, 1 / a_min]``
(``x_{j+1} = x_j (2 - a x_j) <= 1 / a``), entries ``<= n / lam``; ``A X_j`` has eigenvalues
``a x_j`` in ``(0, 1]``, entries ``<= 1``; ``X (A X)`` eigenvalues ``a x^2 <= 1 / a``, entries
``<= n / lam``; ``tr(A_k) >= d lam / n`` is the division's floor.
"""
from __future__ import annotations

import math
from fractions import Fraction

from construct.algorithms.parameters import upper_fraction
from construct.algorithms.ridge_solve import ridge_statistics
from construct.compiler.config import unit_roundoff
from construct.language.builder import ProgramBuilder
from construct.language.program import Program, ProgramError, identity, to_fraction


# The iterates converge onto the bounds (``A X -> I``): a float64 run lands a rounding above
# them, so each bound declared at a converging value carries this much room.
SLACK = Fraction(1, 1000)


def newton_steps(d: int, n: int, lam: Fraction, input_bound: float, dtype: str = "float64"
                 ) -> int:
    """Steps that bring ``(1 - 1/K)^(2^k)`` below the dtype's unit roundoff over the box."""
    condition = n * d * (input_bound ** 2 + float(lam)) / float(lam)
    return max(1, math.ceil(math.log2(condition * math.log(1 / unit_roundoff(dtype)))))


def ridge_newton_program(d: int, n: int = 4, lam: object = Fraction(1, 2),
                         input_bound: float = 4.0, steps: int = 0) -> Program:
    """Ridge at every prefix: statistics by mean reads, then ``steps`` Newton–Schulz steps
    (0: ``newton_steps`` for float64)."""
    lam = to_fraction(lam)
    if lam <= 0:
        raise ProgramError(f"lam must be > 0 for ridge, got {lam}")
    if n < 1:
        raise ProgramError(f"n (the number of exemplars) must be >= 1, got {n}")
    if steps < 0:
        raise ProgramError(f"newton_steps must be >= 0 (0: chosen from lam and the bound), "
                           f"got {steps}")
    steps = steps or newton_steps(d, n, lam, input_bound)
    B = float(input_bound)
    inverse = n / float(lam)  # 1 / a_min over the box
    b = ProgramBuilder("ridge", d)
    ridge_statistics(b, d, lam)
    b.aff("a", {"s_mean": 1, "inv_k": [[lam if i % (d + 1) == 0 else 0] for i in range(d * d)]},
          rows=d, cols=d)
    b.assume("a", max(upper_fraction(B ** 2 + float(lam)), Fraction(1, 10 ** 6)))
    b.aff("trace", {"a": [[1 if i % (d + 1) == 0 else 0 for i in range(d * d)]]}, rows=1)
    b.aff("eye", bias=[v for row in identity(d) for v in row], rows=d, cols=d)
    b.div("x_inv", "eye", "trace", min_abs=d * lam / n)   # X_0 = I / tr(A_k)
    b.assume("x_inv", upper_fraction(n / (d * float(lam))))
    b.repeat(steps)
    b.mul("ax", "a", "x_inv", d, d, d)                      # A X, eigenvalues in (0, 1]
    b.assume("ax", 1 + SLACK)
    b.mul("xax", "x_inv", "ax", d, d, d)                    # X A X
    b.assume("xax", upper_fraction(inverse * (1 + SLACK)))
    b.aff("x_inv", {"x_inv": 2, "xax": -1}, rows=d, cols=d)
    b.assume("x_inv", upper_fraction(inverse * (1 + SLACK)))
    b.end_repeat()
    b.mul("w", "x_inv", "c_mean", d, d, 1)
    b.assume("w", upper_fraction(math.sqrt(n) * B / (2 * math.sqrt(float(lam)))))
    b.dot("pred", "w", "x")
    b.assume("pred", upper_fraction(math.sqrt(n * d) * B ** 2 / (2 * math.sqrt(float(lam)))))
    return b.build(output="pred")
