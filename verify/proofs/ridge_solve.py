"""The exact proof of ``ridge --method solve`` in two parts, so that d = 3 proves in seconds.

Running the whole program on symbolic exemplars puts ``S_k = sum x_i x_i^T`` of ``n``
symbolic vectors into every pivot, and sympy's ``cancel`` of the Gauss–Jordan quotients (each
a ratio of ``d x d`` minors of such sums) did not finish in ten minutes at d = 3, n = 4. The
program has two parts with a narrow interface between them, so the proof does too:

1. *Statistics* (every op up to the last ``mov``, the only ops that read other columns): run
   on the symbolic task, at the x-column after ``k`` exemplars the slots hold
   ``s_mean = S_k / k``, ``c_mean = b_k / k``, ``inv_k = 1 / k`` (at ``k = 0``: ``0, 0, 1``).
   Polynomials in the data: ``expand`` of the difference is 0.
2. *Elimination* (every later op: in-token ``aff``, ``mul``, ``div``; each column alone): run on
   one column whose statistics are *fresh* symbols, a general ``d x d`` matrix ``M`` (not even
   symmetric), a vector ``c``, a scalar ``r``, and the query ``q``. Read ``w`` off as ``p`` at
   ``q = e_j``; ``cancel(p - w^T q) = 0`` and ``cancel((M + lam r I) w - c) = 0``, so
   ``p = q^T (M + lam r I)^-1 c`` wherever the pivots (ratios of leading principal minors of
   ``M + lam r I``) are nonzero — the hypothesis, true for the SPD ``A_k``.

Together: ``p_k = q^T (S_k / k + (lam / k) I)^-1 b_k / k = q^T (S_k + lam I)^-1 b_k``, the
ridge solution on the first ``k`` exemplars, and ``p_0 = q^T (lam I)^-1 0 = 0``. Part 2 holds
for every ``n`` at once.
"""
from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import sympy as sp

from construct.language import interpreter
from construct.language.program import Mov, Program

STATISTICS = ("s_mean", "c_mean", "inv_k")


def split_point(program: Program) -> int:
    """The number of ops in the statistics part: up to and including the last ``mov``."""
    ops = program.unrolled().ops
    return 1 + max(i for i, op in enumerate(ops) if isinstance(op, Mov))


def _expected(symbols, k: int, d: int) -> dict[str, list[sp.Expr]]:
    """The statistics after ``k`` exemplars, as flat slot values."""
    if k == 0:
        return {"s_mean": [sp.Integer(0)] * (d * d), "c_mean": [sp.Integer(0)] * d,
                "inv_k": [sp.Integer(1)]}
    xs, ys = symbols.xs[:k], symbols.ys[:k]
    gram = sum((x * x.T for x in xs), sp.zeros(d, d)) / k
    moment = sum((x * y for x, y in zip(xs, ys)), sp.zeros(d, 1)) / k
    return {"s_mean": list(gram), "c_mean": list(moment), "inv_k": [sp.Rational(1, k)]}


def statistics_steps(program: Program, symbols, columns: list[int], prefixes: list[int],
                     normalize: Callable) -> tuple[list[tuple[str, str]], sp.Expr]:
    """Part 1: the statistics slots at every checked column (``expand`` of the difference)."""
    d, split = program.d, split_point(program)
    missing = [name for name in STATISTICS if name not in program.slot_map]
    if missing:
        return [("statistics", f"the program has no slot {', '.join(missing)}")], sp.Symbol(
            missing[0])
    state = None
    for step in itertools.islice(interpreter.steps(program, symbols.tokens, normalize), split + 1):
        state = step.state
    for k, t in zip(prefixes, columns):
        expected = _expected(symbols, k, d)
        for name in STATISTICS:
            for got, want in zip(state[name][t], expected[name]):
                difference = sp.expand(got - want)
                if difference != 0:
                    return [(f"statistics at prefix k={k}", f"{name} differs from its "
                             "statistic (S_k/k, b_k/k, 1/k; at k = 0: 0, 0, 1)")], difference
    return [(f"statistics (ops 1..{split}, run on the task)",
             f"at the x-column after k exemplars s_mean = S_k/k, c_mean = b_k/k, inv_k = 1/k "
             f"(k = 0: 0, 0, 1); expand(slot - statistic) = 0 at k = {', '.join(map(str, prefixes))}")
            ], sp.Integer(0)


def elimination_steps(program: Program, lam: sp.Rational
                      ) -> tuple[list[tuple[str, str]], sp.Expr]:
    """Part 2: the in-token ops on fresh statistics ``M, c, r`` and query ``q``.

    A ``div`` divides by ``|pivot|``; every pivot is positive on the SPD matrices, a connected
    set on which no pivot vanishes, so its sign there is its sign at ``M = 0, r = 1``
    (``lam I``, every pivot ``lam``): ``|pivot|`` is replaced by the pivot with that sign."""
    d, split = program.d, split_point(program)
    unrolled = program.unrolled()
    m = sp.Matrix(d, d, lambda i, j: sp.Symbol(f"m{i + 1}{j + 1}", real=True))
    c = sp.Matrix(d, 1, lambda i, _: sp.Symbol(f"c{i + 1}", real=True))
    r, q = sp.Symbol("r", positive=True), sp.Matrix(d, 1, lambda i, _: sp.Symbol(
        f"q{i + 1}", real=True))
    state = {s.name: np.full((1, s.size), sp.Integer(0), dtype=object) for s in unrolled.slots}
    state["s_mean"] = np.array([list(m)], dtype=object)
    state["c_mean"] = np.array([list(c)], dtype=object)
    state["inv_k"] = np.array([[r]], dtype=object)
    state[unrolled.x_slot] = np.array([list(q)], dtype=object)
    reference = {**{symbol: 0 for symbol in (*m, *c, *q)}, r: 1}

    def signed(argument: sp.Expr) -> sp.Expr:
        return argument if argument.subs(reference) > 0 else -argument

    normalize = np.frompyfunc(lambda v: sp.cancel(sp.sympify(v).replace(sp.Abs, signed)), 1, 1)
    for op in unrolled.ops[split:]:
        if isinstance(op, Mov):
            return [("elimination", f"op {op.dst} reads another column")], sp.Symbol(op.dst)
        state = {**state, op.dst: normalize(interpreter.apply_op(op, state, ("x",)))}
    p = state[unrolled.output][0, 0]
    unit = {entry: 0 for entry in q}
    w = sp.Matrix([sp.cancel(p.subs({**unit, q[j]: 1})) for j in range(d)])
    linear = sp.cancel(sp.together(p - (w.T * q)[0]))
    normal = [sp.cancel(sp.together(e)) for e in (m + lam * r * sp.eye(d)) * w - c]
    difference = linear if linear != 0 else next((e for e in normal if e != 0), sp.Integer(0))
    return [(f"elimination (ops {split + 1}..{len(unrolled.ops)}, one column, fresh "
             f"M = (m_ij), c, r, q)", f"w = p at q = e_j: {list(w)}"),
            ("  cancel(p - w^T q)  [p is linear in q]", str(linear)),
            ("  cancel((M + lam r I) w - c)", str(normal)),
            ("so", "p_k = q^T (S_k/k + (lam/k) I)^-1 b_k/k = q^T (S_k + lam I)^-1 b_k, the "
                   "ridge solution on k exemplars (p_0 = 0), for every n")], difference

