"""``rawc prove lsa-gd`` / ``lsa-precond-gd``: linear-attention layers = GD steps, exactly (sympy).

The weights are the ones the checkpoint writer uses (``construct.algorithms.linear_attention.embed_matrix``
and ``block_lists``, filled with sympy entries); the block is run by its definition on symbolic
tokens, column by column:

    e_t = E [x_t; y_t],    e_t <- e_t + W_PV sum_{i<n} e_i (e_i^T W_KQ e_t) / n,    p = -e_q[y].

Everything is a polynomial in the symbols (x, y, x_q, and eta, w0 or Gamma unless given), so
``expand(p - c) = 0`` decides ``p = c`` for the closed form c: for ``lsa-gd``,
``c = w_K^T x_q`` with ``w_{k+1} = w_k - (eta/n) sum_i (w_k^T x_i - y_i) x_i``; for
``lsa-precond-gd``, ``w_{k+1} = w_k - Gamma (1/n) sum_i (w_k^T x_i - y_i) x_i``. For one step the
dual form is proved too: the attention output at the query is ``-dW x_q`` with
``dW = sum_i e_i x_i^T`` (GD on a linear layer, ``e_i = (eta/n)(y_i - w0^T x_i)``).
"""
from __future__ import annotations

import argparse
import time

import sympy as sp

from construct.algorithms.linear_attention import block_lists, embed_matrix
from verify.proofs.programs import ProgramProof, _first_term, _short

PROVABLE = ("lsa-gd", "lsa-precond-gd")


def _rational(text: str) -> sp.Rational:
    return sp.Rational(text)


def _forward(E: sp.Matrix, kq: sp.Matrix, pv: sp.Matrix, tokens: list[sp.Matrix], n: int,
             steps: int) -> tuple[list[sp.Matrix], list[sp.Matrix]]:
    """Residual columns after the last block, and each block's attention output at the query."""
    cols = [E * t for t in tokens]
    attention = []
    for _ in range(steps):
        outs = [pv * sum((cols[i] * (cols[i].T * kq * c)[0] for i in range(n)),
                         sp.zeros(len(c), 1)) / n for c in cols]
        attention.append(outs[-1])
        cols = [c + o for c, o in zip(cols, outs)]
    return cols, attention


def prove(name: str, d: int = 2, n: int = 2, steps: int = 1, eta: str | None = None,
          w0: str | None = None) -> ProgramProof:
    if name not in PROVABLE:
        raise ValueError(f"no proof for {name!r}; provable: {', '.join(PROVABLE)}")
    started = time.perf_counter()
    xs = [sp.Matrix(sp.symbols(f"x{i + 1}_1:{d + 1}")) for i in range(n)]
    ys = list(sp.symbols(f"y1:{n + 1}"))
    xq = sp.Matrix(sp.symbols(f"xq_1:{d + 1}"))
    w_start = (sp.Matrix([_rational(v) for v in w0.split(",")]) if w0
               else sp.Matrix(sp.symbols(f"w0_1:{d + 1}")))
    if name == "lsa-gd":
        step = _rational(eta) if eta else sp.Symbol("eta")
        P = step * sp.eye(d)
        kq, pv = block_lists(d, sp.eye(d).tolist(), -step)
        rule = f"w <- w - {step} (1/n) sum_i (w^T x_i - y_i) x_i"
    else:
        P = sp.Matrix(d, d, lambda j, k: sp.Symbol(f"G_{j + 1}{k + 1}"))
        kq, pv = block_lists(d, P.T.tolist(), -1)
        rule = "w <- w - Gamma (1/n) sum_i (w^T x_i - y_i) x_i"
    E = sp.Matrix(embed_matrix(d, list(w_start)))
    kq, pv = sp.Matrix(kq), sp.Matrix(pv)
    tokens = [sp.Matrix([*x, y]) for x, y in zip(xs, ys)] + [sp.Matrix([*xq, 0])]
    cols, attention = _forward(E, kq, pv, tokens, n, steps)
    prediction = -cols[-1][d]
    w = w_start
    for _ in range(steps):
        w = w - P * sum((((w.T * x)[0] - y) * x for x, y in zip(xs, ys)), sp.zeros(d, 1)) / n
    closed = (w.T * xq)[0]
    difference = sp.expand(prediction - closed)
    shown = [("symbols", f"exemplars x_i = (x{{i}}_1..x{{i}}_{d}), labels y1..y{n}, query "
                         f"x_q = (xq_1..xq_{d}); start w0 = {list(w_start)}"),
             ("weights (column convention)",
              f"E = {E.tolist()}, W_KQ = {kq.tolist()}, W_PV = {pv.tolist()}, attn_scale = "
              f"{n}, read-out -1"),
             ("substitution: the layer's prediction p = -(query y-slot)", _short(sp.expand(prediction))),
             (f"closed form c = w_{steps}^T x_q, {rule}", _short(sp.expand(closed))),
             ("expand(p - c)", _short(difference))]
    if steps == 1 and difference == 0:
        errors = [(y - (w_start.T * x)[0]) / n for x, y in zip(xs, ys)]
        dual = sp.expand(-attention[0][d] - sum(
            (e * ((P * x).T * xq)[0] for e, x in zip(errors, xs)), sp.Integer(0)))
        shown.append(("dual form: expand(-attn_q[y] - sum_i e_i (P x_i)^T x_q), "
                      "e_i = (y_i - w0^T x_i)/n", _short(dual)))
        difference = dual
    proved = difference == 0
    claim = (f"{steps} linear self-attention layer(s) (d={d}, n={n}) predict exactly as "
             f"{steps} step(s) of {'GD' if name == 'lsa-gd' else 'preconditioned GD'} on "
             "1/(2n) sum (w^T x_i - y_i)^2")
    return ProgramProof(program=f"{name} ({steps} block(s))", claim=claim, steps=tuple(shown),
                        proved=proved, offending_term=None if proved else _first_term(difference),
                        seconds=time.perf_counter() - started)


def report(name: str, d: int = 2, n: int = 2, steps: int = 1, eta: str | None = None,
           w0: str | None = None, times: bool = True) -> tuple[str, bool]:
    started = time.perf_counter()
    proof = prove(name, d, n, steps, eta, w0)
    verdict = "all proved" if proof.proved else "NOT PROVED"
    took = f" in {time.perf_counter() - started:.2f} s" if times else ""
    return proof.render(times) + f"\n\n{verdict}{took}\n", proof.proved


def main(args: argparse.Namespace, params: dict[str, object]) -> int:
    """``rawc prove lsa-*`` with the parameters the command line gave (checked already by the
    algorithm's ``resolve``): symbolic at their ``d``, ``n``, ``steps``, ``eta`` and ``w0``."""
    if args.name not in PROVABLE:
        raise ValueError(f"no proof for {args.name!r}; provable linear-attention algorithms: "
                         f"{', '.join(PROVABLE)}")
    if params.get("momentum"):
        raise ValueError(f"no proof for {args.name} with momentum (MoAttn); drop --momentum")
    text, proved = report(args.name, int(params["d"]), int(params["n"]), int(params["steps"]),
                          getattr(args, "eta", None), getattr(args, "w0", None))
    print(text, end="")
    return 0 if proved else 1
