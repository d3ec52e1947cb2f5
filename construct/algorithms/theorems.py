"""Theorems 1 and 2: each as a clean builder program and as the paper's own listing.

``gd`` (Theorem 1, Appendix A): one gradient step on the first exemplar from ``w0``,
``w' = w0 - 2 alpha (x x^T w0 - y x + lam w0)``, predicted at the next x-token as ``w'^T x_q``.

``sherman-morrison`` (Theorem 2, Appendix B): one Sherman–Morrison update from
``A0^-1 = I / lam``, ``A1^-1 = A0^-1 - A0^-1 x x^T A0^-1 / (1 + x^T A0^-1 x)``, and
``w' = A1^-1 x y = (lam I + x x^T)^-1 x y``, predicted as ``w'^T x_q``.

The listings follow reference section 3 with its corrections (Appendix A step 6 uses ``+lam``;
Appendix B step 14 has shape ``1, d, 1``).
"""
from __future__ import annotations

from fractions import Fraction

from construct.algorithms.parameters import start_weights, upper_fraction
from construct.language.builder import ProgramBuilder, prev
from construct.language.program import Program, identity, to_fraction


def gd_program(d: int, alpha: object = Fraction(1, 10), lam: object = Fraction(1, 100),
               w0: object = None) -> Program:
    alpha, lam, start = to_fraction(alpha), to_fraction(lam), start_weights(d, w0)
    b = ProgramBuilder("gd", d)
    b.mov("x", "x", prev(on="y"))                                  # x_1 also at the y column
    b.aff("err", {"x": [start], "y": -1})                           # w0^T x - y
    b.mul("grad", "x", "err", d, 1, 1)                              # x (w0^T x - y)
    b.aff("w", {"grad": -2 * alpha},                                # w0 - 2a(grad + lam w0)
          bias=[(1 - 2 * alpha * lam) * v for v in start])
    b.mov("w_q", "w", prev(on="x"))                                 # w' at the query column
    b.dot("pred", "w_q", "x")                                       # w'^T x_q
    return b.build(output="pred")


def sherman_morrison_program(d: int, lam: object = Fraction(1, 2),
                             input_bound: float = 4.0) -> Program:
    """Sherman–Morrison with the bounds intervals cannot see, declared (and checked by verify).

    With ``A1 = lam I + x x^T`` (eigenvalues ``>= lam``) and ``|entries| <= B``:
    ``right = x x^T / (lam (lam + |x|^2))`` has entries ``<= 1/lam``; ``A1^-1`` too (its
    spectral norm is ``<= 1/lam``); ``A1^-1 x = x / (lam + |x|^2)`` has entries
    ``<= |x| / (lam + |x|^2) <= 1 / (2 sqrt(lam))``; so ``|w'| <= B / (2 sqrt(lam))`` and
    ``|w'^T x_q| <= |y| |x| |x_q| / (lam + |x|^2) <= B^2 sqrt(d) / (2 sqrt(lam))``.
    """
    lam = to_fraction(lam)
    a0_inv = [v for row in identity(d, 1 / lam) for v in row]
    b = ProgramBuilder("sherman-morrison", d)
    b.mov("x", "x", prev(on="y"))                                  # u = v = x_1
    b.aff("u", {"x": 1 / lam})                                      # A0^-1 u
    b.mul("outer", "u", "u", d, 1, d)                              # A0^-1 u v^T A0^-1
    b.dot("quad", "x", "u")                                         # v^T A0^-1 u
    b.aff("den", {"quad": 1}, bias=[1])                             # 1 + v^T A0^-1 u >= 1
    b.div("right", "outer", "den", min_abs=1)
    b.assume("right", 1 / lam)
    b.aff("a_inv", {"right": -1}, bias=a0_inv, rows=d, cols=d)      # A1^-1
    b.assume("a_inv", 1 / lam)
    b.mul("a_inv_x", "a_inv", "x", d, d, 1)                         # A1^-1 x
    half_root = 1 / (2 * float(lam) ** 0.5)
    b.assume("a_inv_x", upper_fraction(half_root))
    b.mul("w", "a_inv_x", "y", d, 1, 1)                             # w' = A1^-1 x y
    b.assume("w", upper_fraction(input_bound * half_root))
    b.mov("w_q", "w", prev(on="x"))
    b.dot("pred", "w_q", "x")
    b.assume("pred", upper_fraction(input_bound ** 2 * d ** 0.5 * half_root))
    return b.build(output="pred")


GD_LISTING = """\
# Appendix A of Akyurek et al. (2023): one SGD step on one exemplar (step 6 corrected: +lam)
program gd-appendix-a
d d
output (3+3d, 4+3d)
1. mov(; 1, 0, (1,1+d), (1,1+d))
2. aff(; (1,1+d), (), (1+d,2+d), W1 = w)
3. aff(; (1+d,2+d), (0,1), (2+d,3+d), W1 = I, W2 = -I)
4. mul(; d, 1, 1, (1,1+d), (2+d,3+d), (3+d,3+2d))
5. aff(; (), (), (3+2d,3+3d), b = w)
6. aff(; (3+d,3+2d), (3+2d,3+3d), (3+3d,3+4d), W1 = I, W2 = lam)
7. aff(; (3+2d,3+3d), (3+3d,3+4d), (3+2d,3+3d), W1 = I, W2 = -2*alpha)
8. mov(; 2, 1, (3+2d,3+3d), (3+2d,3+3d))
9. mul(; 1, d, 1, (3+2d,3+3d), (1,1+d), (3+3d,4+3d))
"""

SHERMAN_MORRISON_LISTING = """\
# Appendix B of Akyurek et al. (2023): one Sherman-Morrison step (step 14 corrected: 1, d, 1)
program sherman-morrison-appendix-b
d d
output (2+5d+3d^2, 3+5d+3d^2)
1. mov(; 1, 0, (1,1+d), (1,1+d))
2. mul(; d, 1, 1, (1,1+d), (0,1), (1+d,1+2d))
3. aff(; (), (), (1+2d,1+2d+d^2), b = I/lam)
4. mul(; d, d, 1, (1+2d,1+2d+d^2), (1,1+d), (1+2d+d^2,1+3d+d^2))
5. mul(; 1, d, d, (1,1+d), (1+2d,1+2d+d^2), (1+3d+d^2,1+4d+d^2))
6. mul(; d, 1, d, (1+2d+d^2,1+3d+d^2), (1+3d+d^2,1+4d+d^2), (1+4d+d^2,1+4d+2d^2))
7. mul(; 1, d, 1, (1+3d+d^2,1+4d+d^2), (1,1+d), (1+4d+2d^2,2+4d+2d^2))
8. aff(; (1+4d+2d^2,2+4d+2d^2), (), (1+4d+2d^2,2+4d+2d^2), W1 = 1, b = 1)
9. div(; (1+4d+d^2,1+4d+2d^2), 1+4d+2d^2, (2+4d+2d^2,2+4d+3d^2))
10. aff(; (1+2d,1+2d+d^2), (2+4d+2d^2,2+4d+3d^2), (1+2d,1+2d+d^2), W1 = I, W2 = -I)
11. mul(; d, d, 1, (1+2d,1+2d+d^2), (1,1+d), (2+4d+3d^2,2+5d+3d^2))
12. mul(; d, 1, 1, (2+4d+3d^2,2+5d+3d^2), (0,1), (2+4d+3d^2,2+5d+3d^2))
13. mov(; 2, 1, (2+4d+3d^2,2+5d+3d^2), (2+4d+3d^2,2+5d+3d^2))
14. mul(; 1, d, 1, (2+4d+3d^2,2+5d+3d^2), (1,1+d), (2+5d+3d^2,3+5d+3d^2))
"""


def gd_listing(d: int, alpha: object = Fraction(1, 10), lam: object = Fraction(1, 100),
               w0: object = None) -> Program:
    from construct.language.parser import parse_program

    return parse_program(GD_LISTING, {"d": d, "alpha": to_fraction(alpha),
                                      "lam": to_fraction(lam), "w": start_weights(d, w0)})


def sherman_morrison_listing(d: int, lam: object = Fraction(1, 2)) -> Program:
    from construct.language.parser import parse_program

    return parse_program(SHERMAN_MORRISON_LISTING, {"d": d, "lam": to_fraction(lam),
                                                    "div_min": 1})
