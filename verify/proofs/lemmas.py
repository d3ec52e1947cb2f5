"""The lowering tricks, derived in sympy: each limit with its leading error term.

These derivations are what ``construct/compiler/error_models.py`` turns into numbers; ``tests/verify/test_lemmas.py``
checks every bound there against the leading term derived here (the bound must dominate it, in
the same power of the constant), so the two cannot drift apart.

*GeLU product* (Lemma 4; erf and tanh GeLU). ``G(z) = z/2 + f(z)`` with ``f`` even, so in
``sqrt(pi/2) (G(e(a+b)) - G(e a) - G(e b)) / e^2`` the linear parts cancel and only even powers
of ``e`` remain. The series is ``a b + e^2 c(a, b) + O(e^4)``; on ``|a|, |b| <= 1`` the leading
term is at most ``e^2 K`` with ``K`` the sum of ``|coefficients|`` of ``c``. Scaled by the
operand bounds (``a -> a/A``), a product is off by ``K e^2 A B`` to leading order.

*Richardson GeLU product.* Only even powers of ``e`` remain, so ``(4 P(e) - P(2 e)) / 3``
weighs the ``e^2`` term by ``(4 - 4) / 3 = 0``: the series is ``a b + e^4 c_4(a, b) + O(e^6)``.

*Polarized GeLU product.* ``G(z) + G(-z) = 2 f(z)``, so
``sqrt(pi/2) (G(e(a+b)) + G(-e(a+b)) - G(e(a-b)) - G(e(b-a))) / (4 e^2)`` is even in ``e``
too; the same Richardson weights leave ``a b + e^4 c_4(a, b) + O(e^6)``, ``c_4`` half the
Lemma 4 units' (``construct.compiler.gelu_products``).

*GeLU bypass.* ``G(z) - G(-z) = z`` exactly: ``erf`` and ``tanh`` are odd.

*LayerNorm at a fixed scale* (Lemma 6, second order). Pads ``+P, -P`` and a zero-sum rest of
energy ``E`` over ``L`` rows: ``sigma^2 = (2 P^2 + E) / L + eps``; rescaling by
``sigma_0 = sqrt(2 P^2 / L + eps)`` recovers ``v (1 + E / (2 P^2 + L eps))^(-1/2)``, whose series
in ``1/P`` is ``v (1 - E / (4 P^2) + O(P^-4))``.

*LayerNorm division* (Lemma 8). Pads ``+N c, -N c``: ``y / sigma * N sqrt(2/L)`` has series
``(y / c) (1 - (E + L eps) / (4 N^2 c^2) + O(N^-4))`` for ``c > 0``.

*Softmax saturation.* Scores ``N (2 tau j - j^2)``: the chosen key beats key ``tau + m`` by
``N m^2``, the runner-up by ``N``. Since ``m^2 >= 3 m - 2`` on the integers (``(m-1)(m-2) >= 0``),
the weight left on the others is at most ``2 sum_{m>=1} e^{-N(3m-2)} = 2 e^{-N} / (1 - e^{-3N})``.
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import sympy as sp

TANH_GELU_CUBIC = sp.Rational(44715, 10 ** 6)  # the 0.044715 of the tanh approximation


def gelu_erf(z: sp.Expr) -> sp.Expr:
    return z / 2 * (1 + sp.erf(z / sp.sqrt(2)))


def gelu_tanh(z: sp.Expr) -> sp.Expr:
    return z / 2 * (1 + sp.tanh(sp.sqrt(2 / sp.pi) * (z + TANH_GELU_CUBIC * z ** 3)))


GELUS: dict[str, Callable[[sp.Expr], sp.Expr]] = {"erf": gelu_erf, "tanh": gelu_tanh}


@dataclasses.dataclass(frozen=True)
class Derivation:
    """One trick: the statement, the steps a class can follow, and the leading error term.

    ``leading_error`` is the first term of (approximation - target), 0 for exact identities;
    ``order`` names its power of the construction's constant (``"eps^2"``, ``"P^-2"``, ...);
    ``coefficient`` bounds it with the constant and operand bounds set to 1 (``K`` above).
    """

    name: str
    statement: str
    steps: tuple[tuple[str, str], ...]
    holds: bool
    leading_error: sp.Expr
    order: str
    coefficient: sp.Expr
    seconds: float = 0.0

    def render(self, times: bool = True) -> str:
        lines = [f"Lemma: {self.name}", f"  claim: {self.statement}"]
        lines += [f"  {label}: {text}" for label, text in self.steps]
        verdict = "proved" if self.holds else "FAILED"
        lines.append(f"  {verdict}" + (f" ({self.seconds:.2f} s)" if times else ""))
        return "\n".join(lines)


def _timed(build: Callable[[], Derivation]) -> Derivation:
    started = time.perf_counter()
    derivation = build()
    return dataclasses.replace(derivation, seconds=time.perf_counter() - started)


def _abs_coefficient_sum(poly_expr: sp.Expr, *symbols: sp.Symbol) -> sp.Expr:
    """Sum of ``|coefficients|``: a bound on the polynomial over ``|symbols| <= 1``."""
    return sp.nsimplify(sum(abs(c) for c in sp.Poly(poly_expr, *symbols).coeffs()))


def one_scale_product(gelu: Callable[[sp.Expr], sp.Expr], a: sp.Expr, b: sp.Expr,
                      scale: sp.Expr) -> sp.Expr:
    """Lemma 4's ``sqrt(pi/2) (G(eps (a+b)) - G(eps a) - G(eps b)) / eps^2``."""
    return sp.sqrt(sp.pi / 2) * (gelu(scale * (a + b)) - gelu(scale * a)
                                 - gelu(scale * b)) / scale ** 2


def polarized_product(gelu: Callable[[sp.Expr], sp.Expr], a: sp.Expr, b: sp.Expr,
                      scale: sp.Expr) -> sp.Expr:
    """``sqrt(pi/2) (G(eps (a+b)) + G(-eps (a+b)) - G(eps (a-b)) - G(eps (b-a))) / (4 eps^2)``."""
    return sp.sqrt(sp.pi / 2) * (gelu(scale * (a + b)) + gelu(-scale * (a + b))
                                 - gelu(scale * (a - b)) - gelu(scale * (b - a))) / (4 * scale ** 2)


def gelu_product(kind: str = "erf") -> Derivation:
    a, b = sp.symbols("a b", real=True)
    e = sp.Symbol("epsilon", positive=True)
    product = one_scale_product(GELUS[kind], a, b, e)
    series = sp.expand(sp.series(product, e, 0, 4).removeO())
    limit = series.subs(e, 0)
    leading = sp.expand(series - limit)
    c2 = sp.expand(leading.coeff(e, 2))
    holds = sp.expand(limit - a * b) == 0 and sp.expand(leading - c2 * e ** 2) == 0
    bound = _abs_coefficient_sum(c2, a, b)
    return Derivation(
        name=f"GeLU product ({kind} GeLU)",
        statement="sqrt(pi/2) (G(eps (a+b)) - G(eps a) - G(eps b)) / eps^2 -> a b as eps -> 0",
        steps=(("series in eps", f"{sp.factor(c2)} * eps^2 + a*b + O(eps^4)"),
               ("limit eps -> 0", f"{limit}"),
               ("leading error", f"{sp.factor(c2)} * eps^2"),
               ("on |a|, |b| <= 1", f"|leading error| <= {bound} * eps^2 "
                                    f"(= {float(bound):.4f} eps^2)")),
        holds=holds, leading_error=c2 * e ** 2, order="eps^2", coefficient=bound)


def gelu_richardson_product(kind: str = "erf", polarized: bool = False) -> Derivation:
    """``(4 P(e) - P(2 e)) / 3`` with ``P`` the one-scale product (``polarized``: the
    four-unit one): the ``e^2`` terms cancel."""
    a, b = sp.symbols("a b", real=True)
    e = sp.Symbol("epsilon", positive=True)
    gelu = GELUS[kind]
    units = polarized_product if polarized else one_scale_product
    combined = (4 * units(gelu, a, b, e) - units(gelu, a, b, 2 * e)) / 3
    series = sp.expand(sp.series(combined, e, 0, 6).removeO())
    limit = series.subs(e, 0)
    c2 = sp.expand(series.coeff(e, 2))
    c4 = sp.expand(sp.cancel(series.coeff(e, 4)))
    holds = all(sp.simplify(rest) == 0
                for rest in (limit - a * b, c2, series - limit - c4 * e ** 4))
    bound = _abs_coefficient_sum(c4, a, b)
    return Derivation(
        name=f"{'Polarized' if polarized else 'Richardson'} GeLU product ({kind} GeLU)",
        statement="(4 P(eps) - P(2 eps)) / 3 -> a b with error O(eps^4), "
                  + ("P = sqrt(pi/2) (G(eps (a+b)) + G(-eps (a+b)) - G(eps (a-b)) "
                     "- G(eps (b-a))) / (4 eps^2)" if polarized
                     else "P the one-scale GeLU product"),
        steps=(("series in eps", f"a*b + 0 * eps^2 + ({sp.factor(c4)}) * eps^4 + O(eps^6)"),
               ("eps^2 coefficient", f"{c2}"),
               ("leading error", f"{sp.factor(c4)} * eps^4"),
               ("on |a|, |b| <= 1", f"|leading error| <= {bound} * eps^4 "
                                    f"(= {float(bound):.4f} eps^4)")),
        holds=holds, leading_error=c4 * e ** 4, order="eps^4", coefficient=bound)


def gelu_bypass(kind: str = "erf") -> Derivation:
    z = sp.Symbol("z", real=True)
    gelu = GELUS[kind]
    difference = sp.expand(gelu(z) - gelu(-z) - z)
    return Derivation(
        name=f"GeLU bypass ({kind} GeLU)", statement="G(z) - G(-z) = z for every z",
        steps=(("G(-z)", f"{gelu(-z)}"), ("expand(G(z) - G(-z) - z)", f"{difference}")),
        holds=difference == 0, leading_error=sp.Integer(0), order="exact",
        coefficient=sp.Integer(0))


def gated_product() -> Derivation:
    """The gated target's product: ``relu(a) b - relu(-a) b = a b``, case by case on the sign
    of ``a`` (``relu`` as ``Piecewise``), no approximation at all."""
    a, b = sp.symbols("a b", real=True)
    relu = lambda z: sp.Piecewise((z, z > 0), (0, True))  # noqa: E731
    difference = relu(a) * b - relu(-a) * b - a * b
    cases = []
    for sign, assumption in (("a > 0", sp.Q.positive(a)), ("a < 0", sp.Q.negative(a)),
                             ("a = 0", None)):
        if assumption is None:
            value = sp.simplify(difference.subs(a, 0))
        else:
            positive = sp.Symbol("p", positive=True)
            value = sp.expand(sp.piecewise_fold(difference.subs(
                a, positive if sign == "a > 0" else -positive)))
        cases.append((sign, value))
    holds = all(value == 0 for _, value in cases)
    return Derivation(
        name="gated product (relu gate)",
        statement="relu(a) b - relu(-a) b = a b for all real a, b: two gated units, exact",
        steps=tuple((f"case {sign}", f"relu(a) b - relu(-a) b - a b = {value}")
                    for sign, value in cases),
        holds=holds, leading_error=sp.Integer(0), order="exact", coefficient=sp.Integer(0))


def newton_division(steps: int = 3) -> Derivation:
    """The gated target's division (``construct.compiler.newton_division``): the seed's
    interpolation bound and the coupled Newton identity ``q_k = (n / a) (1 - e0^(2^k))``."""
    x, t, rho = sp.symbols("x t rho", positive=True)
    line = x * (t + rho * t - x) / (rho * t * t)  # x times the chord of 1/x over [t, rho t]
    peak = sp.solve(sp.diff(line, x), x)[0]
    spread = sp.simplify(line.subs(x, peak) - 1 - (rho - 1) ** 2 / (4 * rho))
    n, a, e0 = sp.symbols("n a e0", real=True)
    q, e, identities = n * (1 - e0) / a, e0, []
    for k in range(1, steps + 1):
        q, e = q + q * e, e * e
        identities.append(sp.simplify(q - n / a * (1 - e0 ** (2 ** k))))
    # every k at once: if q_i = (n / a)(1 - E), E = e0^(2^i), and e_i = E, the step gives
    # (n / a)(1 - E^2) and e_(i+1) = E^2 (config.newton_steps allows up to 8)
    big = sp.Symbol("E", real=True)
    induction = sp.simplify(n / a * (1 - big) * (1 + big) - n / a * (1 - big ** 2))
    # the scalar chain's last step, taken afresh from r = (1 - eps) / a with the numerator:
    # t = n r, q = t + t (1 - a r)
    eps = sp.Symbol("eps", real=True)
    r = (1 - eps) / a
    fresh = sp.simplify(n * r + n * r * (1 - a * r) - n / a * (1 - eps ** 2))
    holds = (spread == 0 and all(value == 0 for value in identities) and induction == 0
             and fresh == 0)
    return Derivation(
        name="gated division (hinge seed, coupled Newton)",
        statement="q_0 = n g(a), e_0 = 1 - a g(a); q_(i+1) = q_i (1 + e_i), e_(i+1) = e_i^2 "
                  f"give q_k = (n / a)(1 - e_0^(2^k)) (shown for k <= {steps}, every k by "
                  "induction); a fresh last step t + t (1 - a r), t = n r, a r = 1 - eps, "
                  "gives (n / a)(1 - eps^2); the chord "
                  "of 1/x over [t, rho t] has x g(x) - 1 <= (rho - 1)^2 / (4 rho)",
        steps=(("chord peak", f"x = {peak}: x g(x) - 1 - (rho - 1)^2 / (4 rho) = {spread}"),
               *((f"k = {k + 1}", f"q_k - (n / a)(1 - e0^{2 ** (k + 1)}) = {value}")
                 for k, value in enumerate(identities)),
               ("every k", f"q_i = (n / a)(1 - E), E = e0^(2^i): q_i (1 + E) - (n / a)(1 - E^2) "
                           f"= {induction}"),
               ("fresh step", f"n r (2 - a r) - (n / a)(1 - eps^2) = {fresh}")),
        holds=holds, leading_error=n / a * e0 ** (2 ** steps), order="eps0^(2^k)",
        coefficient=sp.Integer(1))


def _inverse_pad_series(expr: sp.Expr, pad: sp.Symbol, target: sp.Expr,
                        ) -> tuple[sp.Expr, sp.Expr, bool]:
    """Series of ``expr / target`` in ``t = 1/pad``: ``(limit, t^2 coefficient, exact order)``."""
    t = sp.Symbol("t", positive=True)
    relative = sp.series(sp.powsimp(expr.subs(pad, 1 / t) / target, force=True), t, 0, 4)
    relative = sp.expand(relative.removeO())
    limit = relative.subs(t, 0)
    c2 = sp.factor(relative.coeff(t, 2))
    holds = limit == 1 and sp.expand(relative - 1 - c2 * t ** 2) == 0
    return limit, c2, holds


def ln_fixed_scale() -> Derivation:
    v = sp.Symbol("v", real=True)
    p, energy, width, eps = sp.symbols("P E L eps_ln", positive=True)
    sigma = sp.sqrt((2 * p ** 2 + energy) / width + eps)
    sigma_0 = sp.sqrt(2 * p ** 2 / width + eps)
    recovered = v * sigma_0 / sigma
    limit, c2, holds = _inverse_pad_series(recovered, p, v)
    return Derivation(
        name="LayerNorm at a fixed scale (pads +P, -P)",
        statement="v sigma_0 / sigma -> v as P -> oo, relative error O(1/P^2)",
        steps=(("sigma^2", f"{sigma ** 2}"), ("relative series in 1/P",
                                              f"1 + ({c2}) / P^2 + O(P^-4)"),
               ("leading relative error", f"{c2} / P^2")),
        holds=holds, leading_error=c2 / p ** 2, order="P^-2", coefficient=-c2.subs(energy, 1))


def ln_division() -> Derivation:
    y = sp.Symbol("y", real=True)
    n, c, energy, width, eps = sp.symbols("N c E L eps_ln", positive=True)
    sigma = sp.sqrt((2 * n ** 2 * c ** 2 + energy) / width + eps)
    divided = y / sigma * n * sp.sqrt(2 / width)
    limit, c2, holds = _inverse_pad_series(divided, n, y / c)
    return Derivation(
        name="LayerNorm division (pads +N c, -N c)",
        statement="y / sigma * N sqrt(2/L) -> y / c as N -> oo (c > 0), relative error O(1/N^2)",
        steps=(("sigma^2", f"{sigma ** 2}"), ("relative series in 1/N",
                                              f"1 + ({c2}) / N^2 + O(N^-4)"),
               ("leading relative error", f"{c2} / N^2")),
        holds=holds, leading_error=c2 / n ** 2, order="N^-2",
        coefficient=-c2.subs({energy: 1, eps: 0, c: 1}))


def point_read_leak(hardness: sp.Expr) -> sp.Expr:
    """The closed-form bound on the softmax weight off the target key."""
    return 2 * sp.exp(-hardness) / (1 - sp.exp(-3 * hardness))


def softmax_saturation() -> Derivation:
    hardness = sp.Symbol("N", positive=True)
    tau, j, m = sp.symbols("tau j m", integer=True)

    def score(key: sp.Expr) -> sp.Expr:
        return hardness * (2 * tau * key - key ** 2)

    gap = sp.factor(sp.expand(score(tau) - score(tau + m)))
    runner_up = gap.subs(m, 1)
    quadratic_vs_linear = sp.factor(m ** 2 - (3 * m - 2))
    ratio = sp.Symbol("r", positive=True)  # r = e^{-3N} lies in (0, 1) for N > 0
    geometric = sp.summation(ratio ** m, (m, 1, sp.oo))
    geometric = geometric.args[0][0] if isinstance(geometric, sp.Piecewise) else geometric
    leak = sp.powsimp(2 * sp.exp(2 * hardness) * geometric.subs(ratio, sp.exp(-3 * hardness)))
    expected = point_read_leak(hardness)
    holds = (sp.expand(gap - hardness * m ** 2) == 0
             and sp.expand(quadratic_vs_linear - (m - 1) * (m - 2)) == 0
             and sp.cancel(sp.powsimp(leak - expected)) == 0)
    return Derivation(
        name="softmax saturation (quadratic position code)",
        statement="with scores N (2 tau j - j^2) the weight off key tau is <= 2 e^-N / (1 - e^-3N)",
        steps=(("score(tau) - score(tau + m)", f"{gap}"),
               ("gap to the runner-up (m = +-1)", f"{runner_up}"),
               ("m^2 - (3m - 2)", f"{quadratic_vs_linear} >= 0 on the integers"),
               ("2 sum_{m>=1} e^{-N(3m-2)}", f"{leak}"),
               ("leading error", "2 e^-N")),
        holds=holds, leading_error=2 * sp.exp(-hardness), order="e^-N",
        coefficient=sp.Integer(2))


def dyadic_saturation() -> Derivation:
    """The dyadic code's gap (``construct.compiler.position_codes``): every other key scores
    at least ``2 N`` below the target, at any length."""
    hardness = sp.Symbol("N", positive=True)
    s, v = sp.symbols("s v", integer=True, nonnegative=True)
    n_ctx = sp.Symbol("T", positive=True, integer=True)
    distance = 2 ** v * (2 * s + 1)  # j - tau = 2^v * odd, v < F
    angle = sp.powsimp(2 * sp.pi * distance / 2 ** (v + 1))
    term = sp.cos(angle)  # the term f = v + 1 of sum_f cos(2 pi (j - tau) / 2^f)
    gap = hardness * (1 - term)  # every other term's 1 - cos(...) is >= 0
    leak = (n_ctx - 1) * sp.exp(-gap)
    holds = term == -1 and sp.expand(gap - 2 * hardness) == 0
    return Derivation(
        name="softmax saturation (dyadic position code)",
        statement="with scores N sum_f cos(2 pi (j - tau) / 2^f), 2^F >= T, the weight off key "
                  "tau is <= (T - 1) e^-2N",
        steps=(("j - tau", f"{distance}  (v < F: columns differ modulo 2^F)"),
               ("term f = v + 1", f"cos({angle}) = {term}"),
               ("score(tau) - score(j) >= N (1 - that term)", f"{gap}"),
               ("T - 1 keys each e^-gap below", f"{leak}")),
        holds=holds, leading_error=leak, order="e^-2N", coefficient=n_ctx - 1)


def all_derivations() -> tuple[Derivation, ...]:
    """Every trick, for ``rawc prove lemmas`` (the tanh variants for comparison)."""
    builders: tuple[Callable[[], Derivation], ...] = (
        lambda: gelu_product("erf"), lambda: gelu_product("tanh"),
        lambda: gelu_richardson_product("erf"), lambda: gelu_richardson_product("tanh"),
        lambda: gelu_richardson_product("erf", polarized=True),
        lambda: gelu_richardson_product("tanh", polarized=True),
        lambda: gelu_bypass("erf"), lambda: gelu_bypass("tanh"), gated_product,
        newton_division, ln_fixed_scale, ln_division, softmax_saturation, dyadic_saturation)
    return tuple(_timed(build) for build in builders)


def derivations_for(op_kinds: set[str], gated: bool = False) -> tuple[Derivation, ...]:
    """The tricks a program's lowering uses, given its op kinds (``mov``, ``mul``, ...) and
    its MLP target (``gated``: the exact relu product, which also passes values through; the
    paper target's products: Lemma 4 and the default rule, ``polarized``)."""
    builders: list[Callable[[], Derivation]] = [softmax_saturation]
    builders.append(gated_product if gated else lambda: gelu_bypass("erf"))
    if "mul" in op_kinds and not gated:
        builders += [lambda: gelu_product("erf"),  # the trick, then the default rule's
                     lambda: gelu_richardson_product("erf", polarized=True)]
    if "div" in op_kinds:
        builders += [newton_division] if gated else [ln_division, ln_fixed_scale]
    return tuple(_timed(build) for build in builders)
