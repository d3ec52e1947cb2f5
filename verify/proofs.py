"""Exact proofs that a program computes its algorithm's closed form (sympy, no ``simplify``).

The interpreter runs the program on symbolic tokens ``[x, y, x_q]`` (every entry a symbol) and
its prediction ``p`` at the query is compared with the closed form by a decision procedure:

- ``gd``: ``p`` and ``w'^T x_q`` with ``w' = w0 - 2 alpha (x x^T w0 - y x + lam w0)`` are
  polynomials; ``expand(p - w'^T x_q) = 0`` decides equality.
- ``sherman-morrison``: ``p`` is rational. Read ``w`` off as ``p`` at ``x_q = e_k``; then
  ``cancel(p - w^T x_q) = 0`` (``p`` is linear in ``x_q``) and
  ``cancel((lam I + x x^T) w - x y) = 0`` entrywise. As ``lam I + x x^T`` is invertible for
  ``lam > 0`` this is ``w = (lam I + x x^T)^{-1} x y`` without forming the inverse.

A failed proof names the first term of the nonzero difference.
"""
from __future__ import annotations

import dataclasses
import textwrap
import time
from collections.abc import Callable

import numpy as np
import sympy as sp

from construct import interpreter
from construct.algorithms import default_w0, get_algorithm
from construct.printer import program_text
from construct.program import Program, to_fraction

SHOWN_CHARS = 240  # long expressions are cut for the classroom printout


@dataclasses.dataclass(frozen=True)
class ProgramProof:
    """The outcome of one proof: what was claimed, each step, and the verdict."""

    program: str
    claim: str
    steps: tuple[tuple[str, str], ...]
    proved: bool
    offending_term: str | None
    seconds: float

    def render(self, times: bool = True) -> str:
        lines = [f"Theorem: {self.claim}", f"  program: {self.program}"]
        lines += [f"  {label}: {text}" for label, text in self.steps]
        took = f" ({self.seconds:.2f} s)" if times else ""
        if self.proved:
            lines.append(f"  proved{took}")
        else:
            lines.append(f"  NOT PROVED: the difference keeps the term {self.offending_term}{took}")
        return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class Symbols:
    """The symbolic exemplar ``(x, y)`` and query ``x_q``, with the interpreter's tokens."""

    tokens: np.ndarray
    x: sp.Matrix
    y: sp.Symbol
    query: sp.Matrix

    @classmethod
    def for_dimension(cls, d: int) -> Symbols:
        tokens = interpreter.symbolic_tokens(d, 3)
        return cls(tokens, sp.Matrix([tokens[0, k + 1] for k in range(d)]), tokens[1, 0],
                   sp.Matrix([tokens[2, k + 1] for k in range(d)]))

    def describe(self) -> str:
        return (f"x = ({', '.join(map(str, self.x))}), y = {self.y}, "
                f"x_q = ({', '.join(map(str, self.query))})")


def _rational(value: object) -> sp.Rational:
    exact = to_fraction(value)
    return sp.Rational(exact.numerator, exact.denominator)


def _short(expr: object) -> str:
    text = str(expr)
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + " ..."


def _first_term(expr: sp.Expr) -> str:
    """The leading term of a nonzero difference (of its numerator, if a rational function)."""
    numerator, denominator = sp.fraction(sp.together(expr))
    if not denominator.free_symbols:
        numerator = expr
    return _short(sp.expand(numerator).as_ordered_terms()[0])


def _gd_steps(prediction: sp.Expr, s: Symbols, params: dict[str, object],
              ) -> tuple[list[tuple[str, str]], sp.Expr]:
    alpha, lam = _rational(params["alpha"]), _rational(params["lam"])
    w0 = sp.Matrix([_rational(v) for v in (params.get("w0") or default_w0(len(s.x)))])
    updated = w0 - 2 * alpha * (s.x * (s.x.T * w0)[0] - s.y * s.x + lam * w0)
    closed = (updated.T * s.query)[0]
    difference = sp.expand(prediction - closed)
    return ([("w0", _short(list(w0))),
             ("program's prediction p", _short(sp.expand(prediction))),
             ("closed form c = w'^T x_q", _short(sp.expand(closed))),
             ("expand(p - c)", _short(difference))], difference)


def _ridge_steps(prediction: sp.Expr, s: Symbols, params: dict[str, object],
                 ) -> tuple[list[tuple[str, str]], sp.Expr]:
    lam = _rational(params["lam"])
    d = len(s.x)
    unit = {q: 0 for q in s.query}
    w = sp.Matrix([sp.cancel(prediction.subs({**unit, s.query[k]: 1})) for k in range(d)])
    linear = sp.cancel(sp.together(prediction - (w.T * s.query)[0]))
    gram = lam * sp.eye(d) + s.x * s.x.T
    normal = [sp.cancel(sp.together(entry)) for entry in gram * w - s.x * s.y]
    steps = [("w = p at x_q = e_k", _short(list(w))),
             ("cancel(p - w^T x_q)  [p is linear in x_q]", _short(linear)),
             ("cancel((lam I + x x^T) w - x y)", _short(normal))]
    difference = linear if linear != 0 else next((e for e in normal if e != 0), sp.Integer(0))
    if difference == 0:
        steps.append(("so", "w = (lam I + x x^T)^{-1} x y, the ridge solution on one exemplar"))
    return steps, difference


@dataclasses.dataclass(frozen=True)
class Statement:
    claim: Callable[[dict[str, object]], str]
    steps: Callable[[sp.Expr, Symbols, dict[str, object]],
                    tuple[list[tuple[str, str]], sp.Expr]]


STATEMENTS: dict[str, Statement] = {
    "gd": Statement(
        lambda p: (f"one GD step (d={p['d']}, alpha={p['alpha']}, lam={p['lam']}) predicts "
                   "w'^T x_q with w' = w0 - 2 alpha (x x^T w0 - y x + lam w0)"),
        _gd_steps),
    "sherman-morrison": Statement(
        lambda p: (f"one Sherman-Morrison update (d={p['d']}, lam={p['lam']}) predicts "
                   "w'^T x_q with w' = (lam I + x x^T)^{-1} x y"),
        _ridge_steps),
}


def prove_program(name: str, params: dict[str, object] | None = None,
                  program: Program | None = None) -> ProgramProof:
    """Prove that ``program`` (default: the named algorithm's builder program) meets the
    closed form of algorithm ``name`` with parameters ``params``."""
    if name not in STATEMENTS:
        raise ValueError(f"no closed form known for {name!r}; provable: {', '.join(STATEMENTS)}")
    algorithm = get_algorithm(name)
    params = algorithm.resolve(**(params or {}))
    program = program or algorithm.program(params)
    started = time.perf_counter()
    symbols = Symbols.for_dimension(int(params["d"]))
    trace = interpreter.run(program, symbols.tokens)
    prediction = sp.sympify(trace.final[program.output][2, 0])
    statement = STATEMENTS[name]
    steps, difference = statement.steps(prediction, symbols, params)
    steps.insert(0, ("symbols", symbols.describe()))
    steps.insert(0, ("program text", "\n" + textwrap.indent(program_text(program).rstrip(), "      ")))
    proved = difference == 0
    return ProgramProof(program=f"{program.name} ({len(program.ops)} ops)",
                        claim=statement.claim(params), steps=tuple(steps), proved=proved,
                        offending_term=None if proved else _first_term(difference),
                        seconds=time.perf_counter() - started)
