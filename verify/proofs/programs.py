"""Exact proofs that a program computes its algorithm's closed form (sympy, no ``simplify``).

The interpreter runs the program on symbolic tokens ``[x, y, x_q]`` (every entry a symbol) and
its prediction ``p`` at the query is compared with the closed form by a decision procedure:

- ``gd``: ``p`` and ``w'^T x_q`` with ``w' = w0 - 2 alpha (x x^T w0 - y x + lam w0)`` are
  polynomials; ``expand(p - w'^T x_q) = 0`` decides equality.
- ``sherman-morrison``: ``p`` is rational. Read ``w`` off as ``p`` at ``x_q = e_k``; then
  ``cancel(p - w^T x_q) = 0`` (``p`` is linear in ``x_q``) and
  ``cancel((lam I + x x^T) w - x y) = 0`` entrywise. As ``lam I + x x^T`` is invertible for
  ``lam > 0`` this is ``w = (lam I + x x^T)^{-1} x y`` without forming the inverse.

- ``ridge``: at every prefix ``k`` the same two identities with ``lam I + sum_{i<=k} x_i x_i^T``
  and ``sum_{i<=k} x_i y_i`` (the stacked updates hold the inverse exactly); ``--method
  solve`` in two parts, its statistics on the task and its elimination on fresh symbols
  (``verify.proofs.ridge_solve``).
- ``sgd``, ``gd-batch``: the predictions at every prefix are polynomials in the data;
  ``expand(p_k - c_k) = 0`` against the recursion written out (SGD) or the mean-gradient step.

A failed proof names the first term of the nonzero difference.
"""
from __future__ import annotations

import dataclasses
import functools
import sys
import textwrap
import time
from collections.abc import Callable

import numpy as np
import sympy as sp
from tqdm import tqdm

from construct.language import interpreter
from construct.algorithms.parameters import default_w0
from construct.algorithms.registry import get_algorithm
from construct.algorithms.ridge_solve import RidgeMethod
from construct.language.printer import program_text
from construct.language.program import Div, Program, to_fraction
from verify.proofs import ridge_solve
from verify.solvers import checked_prefixes

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
    """Symbolic exemplars ``(x_i, y_i)`` and the query (``xs[-1]``), with the interpreter's
    tokens (after a zero prior column when the program has one)."""

    tokens: np.ndarray
    xs: tuple[sp.Matrix, ...]
    ys: tuple[sp.Symbol, ...]

    @classmethod
    def for_task(cls, d: int, n: int = 1, prior_column: bool = False) -> Symbols:
        offset = 1 if prior_column else 0
        tokens = interpreter.symbolic_tokens(d, offset + 2 * n + 1, prior_column)
        xs = tuple(sp.Matrix([tokens[offset + 2 * i, k + 1] for k in range(d)])
                   for i in range(n + 1))
        return cls(tokens, xs, tuple(tokens[offset + 2 * i + 1, 0] for i in range(n)))

    @property
    def x(self) -> sp.Matrix:
        return self.xs[0]

    @property
    def y(self) -> sp.Symbol:
        return self.ys[0]

    @property
    def query(self) -> sp.Matrix:
        return self.xs[-1]

    def describe(self) -> str:
        parts = [f"x{i + 1} = ({', '.join(map(str, x))}), y{i + 1} = {y}"
                 for i, (x, y) in enumerate(zip(self.xs, self.ys))]
        return "; ".join(parts + [f"x_q = ({', '.join(map(str, self.query))})"])


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


def _gd_steps(predictions: list[sp.Expr], s: Symbols, params: dict[str, object],
              ) -> tuple[list[tuple[str, str]], sp.Expr]:
    prediction = predictions[-1]
    alpha, lam = _rational(params["alpha"]), _rational(params["lam"])
    w0 = sp.Matrix([_rational(v) for v in (params.get("w0") or default_w0(len(s.x)))])
    updated = w0 - 2 * alpha * (s.x * (s.x.T * w0)[0] - s.y * s.x + lam * w0)
    closed = (updated.T * s.query)[0]
    difference = sp.expand(prediction - closed)
    return ([("w0", _short(list(w0))),
             ("program's prediction p", _short(sp.expand(prediction))),
             ("closed form c = w'^T x_q", _short(sp.expand(closed))),
             ("expand(p - c)", _short(difference))], difference)


def _ridge_check(prediction: sp.Expr, xs: list[sp.Matrix], ys: list[sp.Expr],
                 query: sp.Matrix, lam: sp.Rational, label: str,
                 ) -> tuple[list[tuple[str, str]], sp.Expr]:
    """``p = w^T x_q`` with ``(lam I + sum x x^T) w = sum x y``, without forming the inverse."""
    d = len(query)
    unit = {q: 0 for q in query}
    w = sp.Matrix([sp.cancel(prediction.subs({**unit, query[k]: 1})) for k in range(d)])
    linear = sp.cancel(sp.together(prediction - (w.T * query)[0]))
    gram, moment = lam * sp.eye(d), sp.zeros(d, 1)
    for x, y in zip(xs, ys):
        gram, moment = gram + x * x.T, moment + x * y
    normal = [sp.cancel(sp.together(entry)) for entry in gram * w - moment]
    steps = [(f"{label}w = p at x_q = e_k", _short(list(w))),
             (f"{label}cancel(p - w^T x_q)  [p is linear in x_q]", _short(linear)),
             (f"{label}cancel((lam I + sum x x^T) w - sum x y)", _short(normal))]
    difference = linear if linear != 0 else next((e for e in normal if e != 0), sp.Integer(0))
    return steps, difference


def _ridge_steps(predictions: list[sp.Expr], s: Symbols, params: dict[str, object],
                 ) -> tuple[list[tuple[str, str]], sp.Expr]:
    steps, difference = _ridge_check(predictions[-1], [s.x], [s.y], s.query,
                                     _rational(params["lam"]), "")
    if difference == 0:
        steps.append(("so", "w = (lam I + x x^T)^{-1} x y, the ridge solution on one exemplar"))
    return steps, difference


def _every_prefix(check: Callable[[int, sp.Expr], tuple[list[tuple[str, str]], sp.Expr]],
                  predictions: list[sp.Expr]) -> tuple[list[tuple[str, str]], sp.Expr]:
    """Run ``check(k, p_k)`` at every prefix; stop at the first that fails."""
    steps: list[tuple[str, str]] = []
    for k, prediction in enumerate(predictions):
        more, difference = check(k, prediction)
        steps += more
        if difference != 0:
            return steps, difference
    return steps, sp.Integer(0)


def _positive_divisors(expr: object) -> sp.Expr:
    """``Abs(den) -> den`` under the hypothesis that every divisor is positive.

    sympy may store ``Abs(den)`` as ``Abs(-den)``; a divisor never vanishes (``|den| >= 1``),
    so its sign is the same everywhere and its value at the origin tells which it is."""
    def unsigned(argument: sp.Expr) -> sp.Expr:
        at_origin = argument.subs({symbol: 0 for symbol in argument.free_symbols})
        return argument if at_origin > 0 else -argument

    return sp.sympify(expr).replace(sp.Abs, unsigned)


def _inverse_state(trace: interpreter.Trace, program: Program, s: Symbols,
                   params: dict[str, object]) -> tuple[list[tuple[str, str]], sp.Expr]:
    """The carried state at y-column ``k`` is ``(lam I + sum_{i<=k} x_i x_i^T)^{-1}``: the
    matrix it inverts is positive definite, so ``1 + x^T A^-1 x >= 1`` justifies the
    hypothesis."""
    lam, d = _rational(params["lam"]), len(s.x)
    gram, steps = lam * sp.eye(d), []
    for k, x in enumerate(s.xs[:-1], start=1):
        gram = gram + x * x.T
        column = program.first_x_column + 2 * k - 1
        state = sp.Matrix(d, d, [_positive_divisors(v) for v in trace.final["a_inv"][column]])
        residual = [sp.cancel(sp.together(v)) for v in gram * state - sp.eye(d)]
        step = (f"k={k}: cancel((lam I + sum x x^T) A_k^-1 - I)  [A_k^-1 at y-column k]",
                _short(residual))
        bad = next((v for v in residual if v != 0), None)
        if bad is not None:
            return [step], bad
        steps.append(step)
    return steps + [("so", "each divisor 1 + x^T A^-1 x >= 1 (A^-1 positive definite)")], \
        sp.Integer(0)


def _prefix_ridge_steps(predictions: list[sp.Expr], s: Symbols, params: dict[str, object],
                        ) -> tuple[list[tuple[str, str]], sp.Expr]:
    lam = _rational(params["lam"])
    return _every_prefix(lambda k, p: _ridge_check(p, list(s.xs[:k]), list(s.ys[:k]),
                                                   s.xs[k], lam, f"k={k}: "), predictions)


def _start(params: dict[str, object], d: int) -> sp.Matrix:
    return sp.Matrix([_rational(v) for v in (params.get("w0") or default_w0(d))])


def _polynomial_check(prediction: sp.Expr, closed: sp.Expr, k: int,
                      ) -> tuple[list[tuple[str, str]], sp.Expr]:
    difference = sp.expand(prediction - closed)
    return ([(f"k={k}: closed form c_k", _short(sp.expand(closed))),
             (f"k={k}: expand(p_k - c_k)", _short(difference))], difference)


def _sgd_steps(predictions: list[sp.Expr], s: Symbols, params: dict[str, object],
               ) -> tuple[list[tuple[str, str]], sp.Expr]:
    alpha, lam = _rational(params["alpha"]), _rational(params["lam"])
    weights = [_start(params, len(s.x))]
    for x, y in zip(s.xs, s.ys):
        w = weights[-1]
        weights.append(w - 2 * alpha * (x * (x.T * w)[0] - x * y + lam * w))
    return _every_prefix(lambda k, p: _polynomial_check(p, (weights[k].T * s.xs[k])[0], k),
                         predictions)


def _gd_batch_steps(predictions: list[sp.Expr], s: Symbols, params: dict[str, object],
                    ) -> tuple[list[tuple[str, str]], sp.Expr]:
    alpha, lam = _rational(params["alpha"]), _rational(params["lam"])
    w0 = _start(params, len(s.x))

    def closed(k: int) -> sp.Expr:
        grad = sp.zeros(len(w0), 1)
        for x, y in zip(s.xs[:k], s.ys[:k]):
            grad += x * ((x.T * w0)[0] - y)
        w = w0 - 2 * alpha * ((grad / k if k else grad) + lam * w0)
        return (w.T * s.xs[k])[0]

    return _every_prefix(lambda k, p: _polynomial_check(p, closed(k), k), predictions)


@dataclasses.dataclass(frozen=True)
class Statement:
    claim: Callable[[dict[str, object]], str]
    steps: Callable[[sp.Expr, Symbols, dict[str, object]],
                    tuple[list[tuple[str, str]], sp.Expr]]


_RIDGE_METHOD_WORDS = {RidgeMethod.SOLVE: "statistics and in-token Gauss-Jordan",
                       RidgeMethod.NEWTON: "statistics and Newton-Schulz",
                       RidgeMethod.SHERMAN_MORRISON: "stacked Sherman-Morrison"}

STATEMENTS: dict[str, Statement] = {
    "gd": Statement(
        lambda p: (f"one GD step (d={p['d']}, alpha={p['alpha']}, lam={p['lam']}) predicts "
                   "w'^T x_q with w' = w0 - 2 alpha (x x^T w0 - y x + lam w0)"),
        _gd_steps),
    "sherman-morrison": Statement(
        lambda p: (f"one Sherman-Morrison update (d={p['d']}, lam={p['lam']}) predicts "
                   "w'^T x_q with w' = (lam I + x x^T)^{-1} x y"),
        _ridge_steps),
    "ridge": Statement(
        lambda p: (f"{_RIDGE_METHOD_WORDS[p['method']]} (d={p['d']}, n={p['n']}, "
                   f"lam={p['lam']}) predicts w_k^T x_{{k+1}} with w_k = (lam I + sum_{{i<=k}} "
                   "x_i x_i^T)^{-1} sum_{i<=k} x_i y_i, at every prefix k = 0..n"),
        _prefix_ridge_steps),
    "sgd": Statement(
        lambda p: (f"one pass of SGD (d={p['d']}, n={p['n']}, alpha={p['alpha']}, "
                   f"lam={p['lam']}) predicts w_k^T x_{{k+1}} with w_i = w_{{i-1}} - 2 alpha "
                   "(x_i x_i^T w_{i-1} - x_i y_i + lam w_{i-1}), at every prefix"),
        _sgd_steps),
    "gd-batch": Statement(
        lambda p: (f"one full-batch GD step (d={p['d']}, n={p['n']}, alpha={p['alpha']}, "
                   f"lam={p['lam']}, mean loss) predicts w_k^T x_{{k+1}} with w_k = w0 - "
                   "2 alpha ((1/k) sum_{i<=k} x_i (x_i^T w0 - y_i) + lam w0), at every prefix"),
        _gd_batch_steps),
}


def prove_program(name: str, params: dict[str, object] | None = None,
                  program: Program | None = None) -> ProgramProof:
    """Prove that ``program`` (default: the named algorithm's builder program) meets the
    closed form of algorithm ``name`` with parameters ``params``."""
    if name not in STATEMENTS:
        raise ValueError(f"no closed form known for {name!r}; provable: {', '.join(STATEMENTS)}")
    algorithm = get_algorithm(name)
    params = algorithm.resolve(**(params or {}))
    if params.get("method") is RidgeMethod.NEWTON:
        raise ValueError("ridge --method newton approximates the inverse (k Newton-Schulz steps "
                         "leave a relative error up to (1 - 1/K)^(2^k), see "
                         "construct.algorithms.ridge_newton): there is no exact identity to "
                         "prove; prove --method solve or sherman-morrison")
    program = program or algorithm.program(params)
    started = time.perf_counter()
    n = int(params.get("n", 1))
    symbols = Symbols.for_task(int(params["d"]), n, program.prior_column)
    lowest_terms = np.frompyfunc(lambda v: sp.cancel(_positive_divisors(v)), 1, 1)
    # The symbolic run is the slow part (ridge d=3 simplifies rational functions for ~20 s).
    bar = functools.partial(tqdm, total=len(program.unrolled().ops) + 1, unit="op",
                            desc=f"prove {name}: symbolic run", file=sys.stderr, leave=False,
                            delay=2.0)
    prefixes = list(checked_prefixes(name, n))
    columns = [program.first_x_column + 2 * k for k in prefixes]
    statement = STATEMENTS[name]
    solve = params.get("method") is RidgeMethod.SOLVE
    if solve:  # in two parts: the full symbolic run does not finish at d = 3
        steps, difference = ridge_solve.statistics_steps(program, symbols, columns, prefixes,
                                                         lowest_terms)
        if difference == 0:
            more, difference = ridge_solve.elimination_steps(program, _rational(params["lam"]))
            steps += [(label, _short(text)) for label, text in more]
    else:
        trace = interpreter.run(program, symbols.tokens, normalize=lowest_terms, progress=bar)
        predictions = [_positive_divisors(trace.final[program.output][t, 0]) for t in columns]
        steps, difference = statement.steps(predictions, symbols, params)
    if any(isinstance(op, Div) for op in program.ops):
        steps.insert(0, ("hypothesis", "every divisor is positive, so |den| = den (" + (
            "the program divides by the Gauss-Jordan pivots of S/k + (lam/k) I, symmetric "
            "positive definite, whose pivots are Schur-complement diagonals >= lam/k > 0"
            if solve else "the program divides by 1 + x^T A^-1 x >= 1; see the inverse check "
            "below") + ")"))
    if name == "ridge" and difference == 0 and not solve:
        more, difference = _inverse_state(trace, program, symbols, params)
        steps += more
    steps.insert(0, ("symbols", symbols.describe()))
    steps.insert(0, ("program text", "\n" + textwrap.indent(program_text(program).rstrip(), "      ")))
    proved = difference == 0
    ops = f"{len(program.ops)} ops" + ("" if program.loop is None else
                                       f", a {program.loop.length}-op stage run "
                                       f"{program.loop.times} times")
    return ProgramProof(program=f"{program.name} ({ops})",
                        claim=statement.claim(params), steps=tuple(steps), proved=proved,
                        offending_term=None if proved else _first_term(difference),
                        seconds=time.perf_counter() - started)
