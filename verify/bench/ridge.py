"""``rawc bench ridge``: the depth–width Pareto table of the ridge methods, in one run.

For each method (``solve``: statistics and an in-token Gauss–Jordan solve; ``newton``: the
statistics and Newton–Schulz steps; ``sherman-morrison``: the paper's stack of ``n`` updates) x MLP target x ``d`` x ``n``: layers, ``d_model``, nonzero
parameters, compile time (float64 constants), and the worst relative error over every prefix
(``max |err| / max |ref|`` against the closed form, ``torch.linalg.solve`` in float64) in
float64 and in float32, each with the constants tuned for its dtype. Beside them the lower
bounds: the critical path of the compiled program (``construct.compiler.limits``), the
``2 + ceil(log2 d)`` any exact per-token solve needs (a product of two inputs is a
nonlinearity level; inverting a ``d x d`` matrix takes at least ``log2 d`` more, the depth of
the product tree of its adjugate, and one read of the statistics), and the paper's
``3 n + 2`` for the stacked updates.

A stack deeper than ``--max-stack-layers`` is not compiled (its depth is ``O(n)``: at ``n = 4096``
about 12,000 layers). Long contexts run few tasks (``tasks_for``): the softmax scores of one
task at ``n = 4096`` are ``8194^2`` per head.

Goals (issue 18): solve in at most 15 / 27 / 51 layers at d = 4 / 8 / 16 for every n; float64
error <= 1e-10 (gated) and <= 1e-6 (paper) for d <= 8, lam >= 0.1, n <= 4096.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time

from tqdm import tqdm

from construct.algorithms.registry import get_algorithm
from construct.algorithms.ridge_solve import RidgeMethod
from construct.compiler.config import CompileConfig, MlpTarget, PositionCode
from construct.compiler.limits import limits
from construct.model.assemble import compile_program
from verify.bench.options import listed
from verify.bench.targets import relative_error

DIMENSIONS = (2, 4, 8, 16)
CONTEXTS = (16, 256, 4096)
GOAL_LAYERS = {4: 15, 8: 27, 16: 51}
GOAL_ERROR = {MlpTarget.GATED: 1e-10, MlpTarget.PAPER: 1e-6}
SCORE_BUDGET = 2 ** 26  # softmax entries per batch: tasks x tokens^2


def tasks_for(n: int, trials: int) -> tuple[int, int]:
    """(tasks, batch) for contexts of ``n`` exemplars."""
    tokens = 2 * n + 2
    batch = max(1, SCORE_BUDGET // tokens ** 2)
    return (min(trials, max(2, batch)), batch)


def stack_layers(n: int) -> int:
    """The paper's count for ``n`` stacked Sherman–Morrison updates."""
    return 3 * n + 2


def measure(method: RidgeMethod, target: MlpTarget, d: int, n: int, trials: int,
            seed: int) -> dict[str, object]:
    algorithm = get_algorithm("ridge")
    params = algorithm.resolve(d=d, n=n, method=method)
    program = algorithm.program(params)
    row: dict[str, object] = {"method": method.value, "target": target.value, "d": d, "n": n,
                              "exact_solve_bound": 2 + math.ceil(math.log2(d)),
                              "paper_layers": stack_layers(n)}
    for dtype in ("float64", "float32"):
        config = CompileConfig.for_dtype(dtype, target=target, n_ctx=2 * n + 2)
        started = time.perf_counter()
        compiled = compile_program(program, config)
        seconds = time.perf_counter() - started
        if dtype == "float64":
            bound = limits(compiled.program, compiled.layout)
            row.update(layers=compiled.shape.depth, d_model=compiled.shape.d_model,
                       nonzero=compiled.n_nonzero_params, compile_s=seconds,
                       critical_path=bound.depth)
        count, batch = tasks_for(n, trials)
        row[f"error_{dtype}"] = relative_error(compiled, "ridge", params, dtype, count, seed,
                                               batch)
    return row


HORIZON_CONTEXTS = (16, 64, 256, 1024, 4096)
HORIZON_ERROR = 1e-3


def _learner_error(name: str, params: dict[str, object], dtype: str, target: MlpTarget,
                   trials: int, seed: int, code: PositionCode | None = None) -> float:
    algorithm = get_algorithm(name)
    n = int(params["n"])
    config = CompileConfig.for_dtype(dtype, target=target, n_ctx=2 * n + 2, position_code=code)
    compiled = compile_program(algorithm.program(params, config.input_bound), config)
    count, batch = tasks_for(n, trials)
    return relative_error(compiled, name, params, dtype, count, seed, batch)


def horizon(d: int, target: MlpTarget, max_n: int, max_layers: int, trials: int, seed: int,
            progress: bool = True, code: PositionCode | None = None) -> list[dict[str, object]]:
    """Per learner and dtype: the relative error at each context length, and the first ``n``
    where it exceeds ``HORIZON_ERROR`` (None: not within the lengths measured); ``code``: the
    position code (None: the one each length calls for)."""
    learners = [("ridge", {"method": m}) for m in RidgeMethod] + [("sgd", {}), ("gd-batch", {})]
    rows = []
    for name, extra in tqdm(learners, desc="learners", file=sys.stderr, disable=not progress,
                            leave=False):
        for dtype in ("float64", "float32"):
            errors: dict[int, float] = {}
            reached = None
            for n in (n for n in HORIZON_CONTEXTS if n <= max_n):
                params = get_algorithm(name).resolve(d=d, n=n, **extra)
                deep = (name == "sgd" or extra.get("method") is RidgeMethod.SHERMAN_MORRISON)
                if deep and stack_layers(n) > max_layers:
                    break
                errors[n] = _learner_error(name, params, dtype, target, trials, seed, code)
                if errors[n] > HORIZON_ERROR:
                    reached = n
                    break
            rows.append({"learner": name + (f" --method {extra['method']}" if extra else ""),
                         "dtype": dtype, "target": target.value, "d": d, "errors": errors,
                         "horizon": reached, "position_code": code.value if code else "auto"})
    return rows


def format_horizon(rows: list[dict[str, object]]) -> str:
    lines = [f"{'learner':<34}{'target':<8}{'code':<11}{'dtype':<9}"
             + "".join(f"{n:>10}" for n in HORIZON_CONTEXTS) + "   first n over 1e-3"]
    lines.append("-" * len(lines[0]))
    for r in rows:
        cells = "".join(f"{r['errors'][n]:>10.1e}" if n in r["errors"] else f"{'-':>10}"
                        for n in HORIZON_CONTEXTS)
        measured = max(r["errors"], default=0)
        lines.append(f"{r['learner']:<34}{r['target']:<8}{r['position_code']:<11}"
                     f"{r['dtype']:<9}{cells}   "
                     + (str(r["horizon"]) if r["horizon"] else f"none up to {measured}"))
    return "\n".join(lines)


def format_table(rows: list[dict[str, object]]) -> str:
    head = (f"{'method':<17}{'target':<7}{'d':>3}{'n':>6}{'layers':>7}{'path':>5}"
            f"{'exact':>6}{'3n+2':>7}{'d_model':>8}{'nonzero':>9}{'compile s':>10}"
            f"{'err f64':>10}{'err f32':>10}")
    lines = [head, "-" * len(head)]
    for r in rows:
        if r.get("skipped"):
            lines.append(f"{r['method']:<17}{r['target']:<7}{r['d']:>3}{r['n']:>6}  "
                         f"{r['skipped']}")
            continue
        lines.append(f"{r['method']:<17}{r['target']:<7}{r['d']:>3}{r['n']:>6}{r['layers']:>7}"
                     f"{r['critical_path']:>5}{r['exact_solve_bound']:>6}{r['paper_layers']:>7}"
                     f"{r['d_model']:>8}{r['nonzero']:>9}{r['compile_s']:>10.2f}"
                     f"{r['error_float64']:>10.1e}{r['error_float32']:>10.1e}")
    return "\n".join(lines)


def goals(rows: list[dict[str, object]]) -> list[str]:
    solved = [r for r in rows if r["method"] == "solve" and not r.get("skipped")]
    out = []
    for d, goal in GOAL_LAYERS.items():
        depths = sorted({r["layers"] for r in solved if r["d"] == d})
        if depths:
            out.append(f"solve layers at d = {d} <= {goal} for every n: "
                       f"{'yes' if len(depths) == 1 and depths[0] <= goal else 'no'} "
                       f"({', '.join(map(str, depths))})")
    for target, goal in GOAL_ERROR.items():
        chosen = [r for r in solved if r["target"] == target.value and r["d"] <= 8]
        if chosen:
            worst = max(chosen, key=lambda r: r["error_float64"])
            out.append(f"solve {target.value} float64 error <= {goal:g} (d <= 8): "
                       f"{'yes' if worst['error_float64'] <= goal else 'no'} (worst "
                       f"{worst['error_float64']:.2g} at d={worst['d']} n={worst['n']})")
    return out


def main_horizon(args: argparse.Namespace) -> int:
    """``rawc bench horizon``: each learner's error against the context length, d = 4."""
    rows = []
    for target in listed(args.target, MlpTarget):
        for code in listed(args.position_code, PositionCode):
            rows += horizon(min(4, args.max_d), target, args.max_n, args.max_stack_layers,
                            args.trials, args.seed, progress=not args.json, code=code)
    print(json.dumps(rows, indent=2) if args.json else format_horizon(rows))
    return 0


def main(args: argparse.Namespace) -> int:
    targets = listed(args.target, MlpTarget)
    work = [(method, target, d, n) for method in RidgeMethod for target in targets
            for d in DIMENSIONS if d <= args.max_d for n in CONTEXTS if n <= args.max_n]
    rows = []
    if not args.json:
        print("\n".join(format_table([]).splitlines()[:2]))
    for method, target, d, n in tqdm(work, desc="configurations", file=sys.stderr,
                                     disable=args.json, leave=False):
        if method is RidgeMethod.SHERMAN_MORRISON and stack_layers(n) > args.max_stack_layers:
            row = {"method": method.value, "target": target.value, "d": d, "n": n,
                   "skipped": f"not compiled: the stack is {stack_layers(n)} layers deep "
                              f"(--max-stack-layers {args.max_stack_layers})"}
        else:
            row = measure(method, target, d, n, args.trials, args.seed)
        rows.append(row)
        if not args.json:
            tqdm.write(format_table([row]).splitlines()[-1], file=sys.stdout)
    if args.json:
        print(json.dumps({"rows": rows, "goals": goals(rows)}, indent=2))
    else:
        print("\n".join(goals(rows)))
    return 0
