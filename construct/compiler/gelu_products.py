"""The paper target's GeLU products: each rule's pre-scales, units and error terms.

Write ``G`` for GeLU, ``phi``, ``Phi`` for the normal density and distribution, and ``A, B``
for the declared bounds of the two operands, read as ``x = eps a / A``, ``y = eps b / B``
(``|x|, |y| <= eps``). The units read through LayerNorm (``construct.targets.paper.mlp``);
below, everything is in units of ``A B`` with ``|a|, |b| <= 1``.

*GeLU product (Lemma 4).* ``f(z) = G(z) - z/2 = (z/2) erf(z / sqrt 2)
= phi(0) sum_k (-1)^k c_k z^(2k+2)``, ``c_k = 1 / (2^k k! (2k+1))``, is even and alternating
with decreasing terms for ``|z| <= 1``, so ``f(z) = phi(0) z^2 + R(z)``,
``|R(z)| <= phi(0) z^4 / 6``. ``sqrt(pi/2) (G(x+y) - G(x) - G(y)) / eps^2 = a b +
sqrt(pi/2) (R(x+y) - R(x) - R(y)) / eps^2``: the remainder is at most
``(16 + 1 + 1) eps^2 / 12 = 1.5 eps^2``, so a ``b``-term dot is off by ``1.5 b eps^2 A B``.
Three units per term: ``G(x)`` and ``G(y)`` are shared across a matrix product (width
``a b c + a b + b c``).

*Richardson GeLU product.* ``P(eps) = a b + sum_{k>=1} p_k eps^(2k)`` with
``p_k = (-1)^k c_k ((a+b)^(2k+2) - a^(2k+2) - b^(2k+2)) / 2``. ``(4 P(eps) - P(2 eps)) / 3``
weighs term ``k`` by ``sum_j w_j s_j^(2k) = (4 - 4^k) / 3``: zero for ``k = 1``. On
``|a|, |b| <= 1``, ``|(a+b)^m - a^m - b^m| <= 2^m - 2`` and the series converges absolutely, so
the error is at most ``sum_{k>=2} c_k (2^(2k+2) - 2) |4 - 4^k| eps^(2k) / 6`` (``3.1 eps^4``).

*Polarized GeLU product.* ``G(z) + G(-z) = 2 f(z)``: the linear parts cancel within each pair,
so ``(sqrt(pi/2) / 4) (G(x+y) + G(-x-y) - G(x-y) - G(y-x)) / eps^2
= sqrt(pi/2) (f(x+y) - f(x-y)) / (2 eps^2)`` is
``a b + sum_{k>=1} (-1)^k c_k ((a+b)^(2k+2) - (a-b)^(2k+2)) eps^(2k) / 4`` (the ``k = 0`` term
is ``((a+b)^2 - (a-b)^2) / 4 = a b``). Both powers are non-negative, so
``|(a+b)^m - (a-b)^m| <= 2^m``: with the Richardson weights the error is at most
``sum_{k>=2} c_k 2^(2k+2) |4 - 4^k| eps^(2k) / 12`` (``1.6 eps^4``, half the Richardson
product's). Four units per term, none shared (width ``4 a b c`` per pre-scale).

*Rounding.* ``|G(z)| = |z| Phi(z) <= |z| Phi(z_max)`` on ``|z| <= z_max = 2 s_max eps``. Per
term and pre-scale ``s``, Lemma 4's units read ``|x+y| + |x| + |y| <= 4 s eps`` at output
weight ``kappa / s^2`` (``kappa = sqrt(pi/2) / eps^2``); the polarized units read
``2 |x+y| + 2 |x-y| <= 4 s eps`` at ``kappa / (4 s^2)``. So ``W_out`` sums terms of total size
``K b kappa eps Phi(z_max) sum_j |w_j| / s_j`` with ``K = 4`` (Lemma 4) or ``1`` (polarized),
and rounds it by at most ``(n + 6) u`` times that, ``n`` the terms summed (``3`` or ``4`` per
term and pre-scale; the ``6`` for the scaling, the bias and the residual add).

*Input errors.* A unit whose input is off by ``delta`` is off by ``|G'| delta`` at the output,
``|G'(z)| <= G'(z_max) = Phi(z_max) + z_max phi(z_max)`` (``G'' = phi (2 - z^2) > 0`` there).
With operand errors ``dx, dy``, Lemma 4's three units sum ``|w| |delta|`` to
``2 kappa (dx + dy)`` per pre-scale, the polarized four (each ``kappa / 4``) to
``kappa (dx + dy)`` (``input_error_gain``).
"""
from __future__ import annotations

import math

from construct.compiler.config import GeluProduct
from construct.language.program import Mul

RICHARDSON_RATIO = 2.0  # the second pre-scale, in multiples of eps


def product_scales(rule: GeluProduct) -> tuple[tuple[float, float], ...]:
    """``(s_j, w_j)``: the product is ``sum_j w_j P(s_j eps)`` (``P`` the one-scale trick)."""
    if rule is GeluProduct.LEMMA4:
        return ((1.0, 1.0),)
    square = RICHARDSON_RATIO ** 2
    return ((1.0, square / (square - 1)), (RICHARDSON_RATIO, -1 / (square - 1)))


def units_per_term(rule: GeluProduct) -> int:
    """Units each term ``l_ik r_kj`` of a product is summed from, per pre-scale."""
    return 4 if rule.polarized else 3


def product_units(rule: GeluProduct, op: Mul) -> int:
    """MLP units of ``op`` (``a x b`` by ``b x c``): Lemma 4 shares ``G(l)`` and ``G(r)``
    across the product; the polarized units are each one term's, but of the terms that read
    one entry twice (a slot times itself, ``l_ik`` the same entry as ``r_kj``) only the pair
    of ``G(+-2 l)`` lives (``x - y = 0`` exactly and ``G(0) = 0``)."""
    a, b, c = op.a, op.b, op.c
    if not rule.polarized:
        return len(product_scales(rule)) * (a * b * c + a * b + b * c)
    squares = sum(i * b + k == k * c + j for i in range(a) for k in range(b)
                  for j in range(c)) if op.left == op.right else 0
    return len(product_scales(rule)) * (4 * a * b * c - 2 * squares)


def unit_weight(rule: GeluProduct) -> float:
    """A unit's ``W_out`` entry at pre-scale ``s``, in units of ``w_j kappa / s^2``."""
    return 0.25 if rule.polarized else 1.0


def output_weight(rule: GeluProduct) -> float:
    """``sum_j |w_j| / s_j``: the units' outputs (and their input errors) against the
    one-scale trick's at the same ``eps``."""
    return sum(abs(weight) / s for s, weight in product_scales(rule))


def largest_output_weight(rule: GeluProduct) -> float:
    """The largest ``W_out`` entry in units of ``kappa``."""
    return unit_weight(rule) * max(abs(weight) / s ** 2 for s, weight in product_scales(rule))


def largest_input(rule: GeluProduct, scale: float) -> float:
    """``z_max``: the largest unit input, ``|x +- y| <= 2 s_max eps``."""
    return 2 * max(s for s, _ in product_scales(rule)) * scale


def _normal_cdf(z: float) -> float:
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


def remainder_power(rule: GeluProduct) -> int:
    """The lowest degree of the remainder in the operands' magnitudes (``ScaledPart``)."""
    return 4 if rule is GeluProduct.LEMMA4 else 6


def _extrapolated_coefficient(scale: float, rule: GeluProduct) -> float:
    """``sum_{k>=2} c_k D_k |sum_j w_j s_j^(2k)| eps^(2k)`` with ``D_k`` the bound on the
    term's polynomial (``(2^(2k+2) - 2) / 2``, polarized ``2^(2k+2) / 4``), summed until the
    terms vanish (they fall faster than ``(4 eps)^(2k) / k!``)."""
    scales = product_scales(rule)
    total, k = 0.0, 2
    while True:
        c_k = 1.0 / (2 ** k * math.factorial(k) * (2 * k + 1))
        weight = abs(sum(w * s ** (2 * k) for s, w in scales))
        power = 2.0 ** (2 * k + 2)
        polynomial = power / 4 if rule.polarized else (power - 2) / 2
        term = c_k * polynomial * weight * scale ** (2 * k)
        total += term
        if term <= 1e-18 * total or k > 60:
            return total
        k += 1


def gelu_product_error(inner: int, left_bound: float, right_bound: float, scale: float,
                       rule: GeluProduct = GeluProduct.LEMMA4) -> float:
    """Approximation term of a ``b``-term GeLU dot product (Lemma 4; *Richardson* and
    *Polarized GeLU product*)."""
    if rule is GeluProduct.LEMMA4:
        return 1.5 * inner * scale ** 2 * left_bound * right_bound
    return inner * _extrapolated_coefficient(scale, rule) * left_bound * right_bound


def gelu_product_rounding(inner: int, left_bound: float, right_bound: float,
                          scale: float, rule: GeluProduct = GeluProduct.LEMMA4) -> float:
    """Rounding term of a GeLU dot product, in multiples of ``u`` (*Rounding*)."""
    kappa_eps = math.sqrt(math.pi / 2) * left_bound * right_bound / scale
    terms = units_per_term(rule) * len(product_scales(rule)) * inner
    outputs = 4 * unit_weight(rule) * _normal_cdf(largest_input(rule, scale))
    return (terms + 6) * outputs * inner * kappa_eps * output_weight(rule)


def input_error_gain(rule: GeluProduct, scale: float) -> float:
    """``sum |W_out| |G'| |delta|`` of one term's units per ``kappa (dx + dy)`` summed over
    the pre-scales (*Input errors*)."""
    z = largest_input(rule, scale)
    slope = _normal_cdf(z) + z * math.exp(-z * z / 2) / math.sqrt(2 * math.pi)
    return (1.0 if rule.polarized else 2.0) * slope * output_weight(rule)
