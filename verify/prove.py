"""``rawc prove``: exact (sympy) checks of a program and of the lemmas its lowering uses.

1. The program, run by the interpreter on symbolic tokens, equals the algorithm's closed
   form as a rational function (``gd``: ``expand`` of the difference is 0; ``sherman-morrison``:
   ``cancel`` of the difference is 0).
2. Each lemma's limit, symbolically:
   - GeLU product (Lemma 4): ``sqrt(pi/2) (G(e a + e b) - G(e a) - G(e b)) / e^2 = a b + O(e^2)``;
   - GeLU pass-through: ``G(z) - G(-z) = z`` exactly;
   - LayerNorm division (Lemma 8): with pads ``+N c, -N c`` and zero-sum rest, the rescaled
     output tends to ``y / |c|`` as ``N -> oo``;
   - fixed-scale LayerNorm (Lemma 6, second order): ``v sigma_0 / sigma -> v`` as ``P -> oo``,
     with error ``O(1/P^2)``.
"""
from __future__ import annotations

import argparse
import time
from fractions import Fraction

import sympy as sp

from construct import interpreter
from construct.algorithms import default_w0, get_algorithm


def _rational(value: object) -> sp.Rational:
    f = Fraction(str(value))
    return sp.Rational(f.numerator, f.denominator)


def program_equals_closed_form(name: str, params: dict[str, object]) -> bool:
    algorithm = get_algorithm(name)
    params = algorithm.resolve(**params)
    d = int(params["d"])
    program = algorithm.build(**params)
    tokens = interpreter.symbolic_tokens(d, 3)
    prediction = interpreter.run(program, tokens).final[program.output][2, 0]
    x = sp.Matrix([tokens[0, k + 1] for k in range(d)])
    y = tokens[1, 0]
    xq = sp.Matrix([tokens[2, k + 1] for k in range(d)])
    if name == "gd":
        alpha, lam = _rational(params["alpha"]), _rational(params["lam"])
        w0 = sp.Matrix([_rational(v) for v in (params["w0"] or default_w0(d))])
        w = w0 - 2 * alpha * (x * (x.T * w0)[0] - y * x + lam * w0)
        return sp.expand(prediction - (w.T * xq)[0]) == 0
    if name == "sherman-morrison":
        lam = _rational(params["lam"])
        w = (lam * sp.eye(d) + x * x.T).inv() * x * y
        return sp.cancel(sp.together(prediction - (w.T * xq)[0])) == 0
    raise ValueError(f"no closed form known for {name!r}")


def _gelu(z: sp.Expr) -> sp.Expr:
    return z / 2 * (1 + sp.erf(z / sp.sqrt(2)))


def lemma_checks() -> dict[str, bool]:
    a, b, e, z, y = sp.symbols("a b epsilon z y", real=True)
    product = sp.sqrt(sp.pi / 2) * (_gelu(e * a + e * b) - _gelu(e * a) - _gelu(e * b)) / e ** 2
    series = sp.series(product, e, 0, 2).removeO()
    n, c, p = sp.symbols("N c P", positive=True)
    width, rest = sp.Integer(8), sp.symbols("E", positive=True)
    sigma_div = sp.sqrt((2 * n ** 2 * c ** 2 + rest) / width)
    divided = y / sigma_div * n * sp.sqrt(2 / width)
    sigma_fixed = sp.sqrt((2 * p ** 2 + rest) / width)
    recovered = y * sp.sqrt(2 * p ** 2 / width) / sigma_fixed
    return {
        "GeLU product -> a b + O(eps^2)": sp.expand(series - a * b) == 0,
        "GeLU pass-through G(z) - G(-z) = z": sp.simplify(_gelu(z) - _gelu(-z) - z) == 0,
        "LayerNorm division -> y/|c| (N -> oo)": sp.simplify(
            sp.limit(divided, n, sp.oo) - y / c) == 0,
        "fixed-scale LayerNorm -> v, error O(1/P^2)": (
            sp.limit(recovered, p, sp.oo) == y
            and sp.limit((recovered - y) * p ** 2, p, sp.oo).is_finite),
    }


def main(args: argparse.Namespace) -> int:
    params: dict[str, object] = {"d": args.d}
    for key in ("alpha", "lam"):
        if getattr(args, key, None) is not None:
            params[key] = Fraction(getattr(args, key))
    if getattr(args, "w0", None):
        params["w0"] = [Fraction(v) for v in args.w0.split(",")]
    started = time.perf_counter()
    results = {f"{args.name} (d={args.d}) equals its closed form exactly":
               program_equals_closed_form(args.name, params)}
    results.update(lemma_checks())
    for claim, ok in results.items():
        print(f"{'proved' if ok else 'FAILED'}: {claim}")
    print(f"({time.perf_counter() - started:.1f} s)")
    return 0 if all(results.values()) else 1


