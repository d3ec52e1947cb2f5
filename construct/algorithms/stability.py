"""Compile-time divergence checks: a step size that provably diverges on the declared input box.

The compiled model runs its algorithm faithfully, so an algorithm that diverges on inputs the
checkpoint promises to handle (every entry ``<= B``, ``rawc compile --bound``) makes weights
whose outputs, and error bounds, blow up geometrically: ``rawc compile`` warns (``Divergence``).

*SGD* (``learners.sgd_program``): ``w_i = w_{i-1} - 2 alpha (x_i x_i^T w_{i-1} - x_i y_i +
lam w_{i-1})``. Repeat one exemplar ``(x, y)``; its fixed point ``w*`` solves ``(x x^T + lam I)
w* = x y``, and the error ``e = w - w*`` obeys ``e_i = M e_{i-1}`` with ``M = (1 - 2 alpha lam)
I - 2 alpha x x^T``. ``M``'s eigenvalue along ``x`` is ``q(x) = 1 - 2 alpha (|x|^2 + lam)``
(across ``x``: ``1 - 2 alpha lam``). On the box ``|x|^2 <= d B^2``, with equality at
``x = B (1, ..., 1)``, so the worst factor is

    q = 1 - 2 alpha (d B^2 + lam),

and for ``|q| > 1`` the error along that ``x`` grows as ``|q|^k`` over ``k`` steps (from any
``w0`` off the fixed point's line, e.g. ``y`` chosen so). ``|q| <= 1`` iff ``0 <= alpha (d B^2
+ lam) <= 1``: the largest stable step is ``alpha = 1 / (d B^2 + lam)``, and there
``|1 - 2 alpha lam| <= 1`` across ``x`` too (``lam >= 0``). It is ``sgd_weight_bound``'s
``rho <= 1`` condition. With ``n = 1`` the factor applies once: no divergence, no warning.

*One step* (``gd``, ``gd-batch``): the factor applies once, whatever ``alpha``; nothing diverges.

*Linear attention* (``lsa-*``): no check. Their error map per step is exact, ``e <- (I - eta
S) e`` with ``S = (1/n) sum x_i x_i^T`` (worst factor ``1 - eta d B^2`` on a box), but those
checkpoints declare no input box (``rawc.bounds.input_bound`` is null: the blocks are exact and
``rawc verify`` draws Gaussian tasks), so there is no declared box to diverge on.
"""
from __future__ import annotations

import dataclasses
import math
from fractions import Fraction


@dataclasses.dataclass(frozen=True)
class Divergence:
    """An algorithm's error multiplier per step at the worst input of the box, when ``|factor|
    > 1`` and the step repeats."""

    algorithm: str
    formula: str  # the factor in the parameters, e.g. "1 - 2 alpha (d B^2 + lam)"
    factor: Fraction
    steps: int
    input_bound: float
    stable_alpha: Fraction  # the largest step size with |factor| <= 1

    def warning(self) -> str:
        """One line for stderr; it starts with ``warning:``."""
        B = f"{self.input_bound:g}"
        return (f"warning: {self.algorithm} diverges on the declared input box |x_j| <= {B}: "
                f"at x = {B}*(1,...,1) one step multiplies the error along x by {self.formula} "
                f"= {float(self.factor):.6g}, |factor|^n = {_power(abs(self.factor), self.steps)}"
                f" over n = {self.steps} steps; the largest stable alpha is 1/(d B^2 + lam) = "
                f"{_exact(self.stable_alpha)}")


def _exact(value: Fraction) -> str:
    """``1/256 = 0.00390625``; only the decimal when the fraction is long (a float ``B``)."""
    return (f"{value} = {float(value):.6g}" if value.denominator <= 10 ** 6
            else f"{float(value):.6g}")


def _power(base: Fraction, k: int) -> str:
    """``base^k`` as text, without overflowing a float (``10^e`` when it would)."""
    exponent = k * math.log10(base)
    return f"{float(base) ** k:.3g}" if exponent < 300 else f"10^{exponent:.0f}"


def sgd_divergence(params: dict[str, object], input_bound: float) -> Divergence | None:
    """``sgd`` with resolved ``params`` on the box ``|x_j| <= input_bound`` (module docstring):
    the factor ``1 - 2 alpha (d B^2 + lam)``, when its modulus exceeds 1 and ``n >= 2``."""
    d, n = int(params["d"]), int(params["n"])
    alpha, lam = Fraction(params["alpha"]), Fraction(params["lam"])
    curvature = d * Fraction(input_bound) ** 2 + lam  # |x|^2 + lam at x = B (1, ..., 1)
    factor = 1 - 2 * alpha * curvature
    if n < 2 or abs(factor) <= 1:
        return None
    return Divergence("sgd", "1 - 2 alpha (d B^2 + lam)", factor, n, input_bound,
                      1 / curvature)
