"""Named algorithms: each as a clean builder program and as the paper's own listing.

``gd`` (Theorem 1, Appendix A): one gradient step on the first exemplar from ``w0``,
``w' = w0 - 2 alpha (x x^T w0 - y x + lam w0)``, predicted at the next x-token as ``w'^T x_q``.

``sherman-morrison`` (Theorem 2, Appendix B): one Sherman–Morrison update from
``A0^-1 = I / lam``, ``A1^-1 = A0^-1 - A0^-1 x x^T A0^-1 / (1 + x^T A0^-1 x)``, and
``w' = A1^-1 x y = (lam I + x x^T)^-1 x y``, predicted as ``w'^T x_q``.

The listings follow reference section 3 with its corrections (Appendix A step 6 uses ``+lam``;
Appendix B step 14 has shape ``1, d, 1``).
"""
from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from fractions import Fraction

from construct.algorithms import learners
from construct.language.builder import ProgramBuilder, prev
from construct.language.program import Program, ProgramError, identity, to_fraction


@dataclasses.dataclass(frozen=True)
class Parameter:
    name: str
    kind: type
    default: object
    help: str


@dataclasses.dataclass(frozen=True)
class Algorithm:
    name: str
    summary: str
    parameters: tuple[Parameter, ...]
    build: Callable[..., Program]
    listing: Callable[..., Program] | None = None
    lam_rule: str = "any"  # "any", ">= 0" or "> 0"

    def resolve(self, **given: object) -> dict[str, object]:
        """Every parameter's value: given ones checked, the others defaulted."""
        known = {p.name for p in self.parameters}
        unknown = sorted(set(given) - known)
        if unknown:
            raise ProgramError(f"{self.name} has no parameter(s) {', '.join(unknown)}; "
                               f"it takes {', '.join(sorted(known))}")
        values = {p.name: given.get(p.name, p.default) for p in self.parameters}
        if values.get("w0") is None:
            values.pop("w0", None)
        if int(values["d"]) < 1:
            raise ProgramError(f"d must be >= 1, got {values['d']}")
        lam = to_fraction(values["lam"]) if "lam" in values else None
        if lam is not None and ((self.lam_rule == "> 0" and lam <= 0)
                                or (self.lam_rule == ">= 0" and lam < 0)):
            raise ProgramError(f"lam must be {self.lam_rule} for {self.name}, got "
                               f"{values['lam']}")
        if "n" in values and int(values["n"]) < 1:
            raise ProgramError(f"n (the number of exemplars) must be >= 1, got {values['n']}")
        return values

    def program(self, params: dict[str, object], input_bound: float = 4.0,
                listing: bool = False) -> Program:
        """The builder program (or the paper listing) for resolved ``params``.

        Builders that declare bounds on their results get the input bound those depend on.
        """
        if listing:
            if self.listing is None:
                raise ProgramError(f"{self.name} has no paper listing; compile its builder "
                                   "program (drop --listing)")
            return self.listing(**params)
        if "input_bound" in inspect.signature(self.build).parameters:
            return self.build(**params, input_bound=input_bound)
        return self.build(**params)


def default_w0(d: int) -> list[Fraction]:
    """A fixed, data-independent start ``w0`` (alternating signs, shrinking): ``(-1)^k / (k+1)``."""
    return [Fraction((-1) ** k, k + 1) for k in range(d)]


def _w0(d: int, w0: object) -> list[Fraction]:
    if w0 is None:
        return default_w0(d)
    values = [to_fraction(v) for v in (w0 if isinstance(w0, (list, tuple)) else [w0] * d)]
    if len(values) != d:
        raise ProgramError(f"w0 has {len(values)} entries, d = {d}")
    return values


def gd_program(d: int, alpha: object = Fraction(1, 10), lam: object = Fraction(1, 100),
               w0: object = None) -> Program:
    alpha, lam, start = to_fraction(alpha), to_fraction(lam), _w0(d, w0)
    b = ProgramBuilder("gd", d)
    b.mov("x", "x", prev(on="y"))                                  # x_1 also at the y column
    b.aff("err", {"x": [start], "y": -1})                           # w0^T x - y
    b.mul("grad", "x", "err", d, 1, 1)                              # x (w0^T x - y)
    b.aff("w", {"grad": -2 * alpha},                                # w0 - 2a(grad + lam w0)
          bias=[(1 - 2 * alpha * lam) * v for v in start])
    b.mov("w_q", "w", prev(on="x"))                                 # w' at the query column
    b.dot("pred", "w_q", "x")                                       # w'^T x_q
    return b.build(output="pred")


def upper_fraction(value: float) -> Fraction:
    """A short fraction no smaller than ``value`` (declared bounds must not undercut)."""
    guess = Fraction(value * (1 + 1e-12)).limit_denominator(10 ** 6)
    return guess if guess >= value else guess + Fraction(1, 10 ** 6)


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
                                      "lam": to_fraction(lam), "w": _w0(d, w0)})


def sherman_morrison_listing(d: int, lam: object = Fraction(1, 2)) -> Program:
    from construct.language.parser import parse_program

    return parse_program(SHERMAN_MORRISON_LISTING, {"d": d, "lam": to_fraction(lam),
                                                    "div_min": 1})


def _step_parameters(alpha: Fraction) -> tuple[Parameter, ...]:
    """The parameters of the gradient learners over n exemplars (``sgd``, ``gd-batch``)."""
    return (Parameter("d", int, 2, "input dimension"),
            Parameter("n", int, 4, "number of exemplars"),
            Parameter("alpha", Fraction, alpha, "step size"),
            Parameter("lam", Fraction, Fraction(0), "ridge penalty"),
            Parameter("w0", list, None, "start weights (default (-1)^k/(k+1))"))


ALGORITHMS: dict[str, Algorithm] = {
    "gd": Algorithm(
        "gd", "one gradient-descent step on one exemplar (Theorem 1, O(d) width)",
        (Parameter("d", int, 2, "input dimension"),
         Parameter("alpha", Fraction, Fraction(1, 10), "step size"),
         Parameter("lam", Fraction, Fraction(1, 100), "ridge penalty"),
         Parameter("w0", list, None, "start weights (default (-1)^k/(k+1))")),
        gd_program, gd_listing),
    "sherman-morrison": Algorithm(
        "sherman-morrison",
        "one Sherman-Morrison ridge update on one exemplar (Theorem 2, O(d^2) width)",
        (Parameter("d", int, 2, "input dimension"),
         Parameter("lam", Fraction, Fraction(1, 2), "ridge penalty (> 0)")),
        sherman_morrison_program, sherman_morrison_listing, lam_rule="> 0"),
    "sgd": Algorithm(
        "sgd", "one pass of SGD over n exemplars, predicting at every prefix (O(n) depth)",
        _step_parameters(alpha=Fraction(1, 100)),
        learners.sgd_program, lam_rule=">= 0"),
    "ridge": Algorithm(
        "ridge", "ridge regression at every prefix by n stacked Sherman-Morrison updates "
        "(O(d^2) width, O(n) depth)",
        (Parameter("d", int, 2, "input dimension"),
         Parameter("n", int, 4, "number of exemplars"),
         Parameter("lam", Fraction, Fraction(1, 2), "ridge penalty (> 0)")),
        learners.ridge_program, lam_rule="> 0"),
    "gd-batch": Algorithm(
        "gd-batch", "one full-batch GD step (mean loss) on the exemplars before each query "
        "(constant depth)",
        _step_parameters(alpha=Fraction(1, 10)),
        learners.gd_batch_program, lam_rule=">= 0"),
}


def get_algorithm(name: str) -> Algorithm:
    try:
        return ALGORITHMS[name]
    except KeyError:
        raise ProgramError(f"unknown algorithm {name!r}; known: {', '.join(ALGORITHMS)}") from None
