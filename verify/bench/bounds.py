"""``rawc bench bounds``: the a-priori and the a-posteriori bound of every named program
algorithm at its default parameters, across d and n, beside the error actually observed.

For each configuration: the a-priori end-to-end bound over the declared input box
(``construct.compiler.propagate``) and its size relative to the output's magnitude bound; the
largest per-task a-posteriori bound (``verify.check.a_posteriori``) and its *tightness*, the
largest a-posteriori bound over the largest observed error (goal: within 100x); the worst
per-task ratio error / a-posteriori bound (must stay <= 1); and ``rawc verify``'s verdict.
Each MLP target of ``--target`` (default both), in float64 on the CPU, ``--trials`` tasks per
configuration.
"""
from __future__ import annotations

import argparse
import json
import math
import sys

import torch
from tqdm import tqdm

from construct.algorithms.registry import get_algorithm
from construct.compiler.config import CompileConfig, MlpTarget, torch_dtype
from construct.model.assemble import compile_program
from construct.model.transformer import Transformer
from verify.bench.options import listed
from verify.check.integrity import Integrity, IntegrityResult
from verify.check.runner import verify_model
from verify.check.verdict import judge_program

SINGLE = ("gd", "sherman-morrison")
LEARNERS = ("gd-batch", "sgd", "ridge")
DIMENSIONS = (1, 2, 4, 8, 16)
EXEMPLARS = (4, 16, 64)
GOAL_TIGHTNESS = 100.0


def configurations(max_d: int, max_n: int) -> list[tuple[str, int, int | None]]:
    out: list[tuple[str, int, int | None]] = []
    for name in SINGLE:
        out += [(name, d, None) for d in DIMENSIONS if d <= max_d]
    for name in LEARNERS:
        out += [(name, d, n) for d in DIMENSIONS if 2 <= d <= max_d
                for n in EXEMPLARS if n <= max_n]
    return out


def measure(name: str, d: int, n: int | None, trials: int, seed: int,
            target: MlpTarget = MlpTarget.PAPER) -> dict[str, object]:
    algorithm = get_algorithm(name)
    params = algorithm.resolve(d=d, **({} if n is None else {"n": n}))
    compiled = compile_program(algorithm.program(params),
                               CompileConfig.for_dtype("float64", target=target))
    model = Transformer(compiled.shape, compiled.weights, torch_dtype("float64"))
    report = verify_model(compiled, model, name, params, dtype="float64",
                          device=torch.device("cpu"), trials=trials, seed=seed, metric_tasks=4)
    verdict = judge_program(report, IntegrityResult(Integrity.SKIPPED))
    prior, posterior = report["a_priori"], report["a_posteriori"]
    return {"algorithm": name, "d": d, "n": n, "target": target.value,
            "layers": compiled.shape.n_layers,
            "a_priori": prior["bound"],
            "a_priori_relative": prior["bound"] / prior["output_bound"],
            "a_posteriori": posterior["max_bound"], "observed": posterior["max_observed"],
            "tightness": posterior["tightness"], "worst_ratio": posterior["worst_ratio"],
            "verdict": verdict.verdict.name, "seconds": report["seconds"]}


def format_rows(rows: list[dict[str, object]]) -> str:
    head = (f"{'algorithm':<17} {'d':>3} {'n':>3} {'target':<6} {'layers':>6} {'a priori':>10} "
            f"{'rel':>9} {'a posteriori':>12} {'observed':>10} {'tight':>7} {'worst':>7} "
            f"{'verdict':<13} {'s':>6}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['algorithm']:<17} {r['d']:>3} {r['n'] or '-':>3} {r['target']:<6} "
                     f"{r['layers']:>6} {r['a_priori']:>10.3g} {r['a_priori_relative']:>9.3g} "
                     f"{r['a_posteriori']:>12.3g} {r['observed']:>10.3g} "
                     f"{r['tightness']:>7.1f} {r['worst_ratio']:>7.3f} {r['verdict']:<13}"
                     f" {r['seconds']:>6.1f}")
    lines.append("")
    for target in dict.fromkeys(r["target"] for r in rows):
        mine = [r for r in rows if r["target"] == target]
        finite = [r for r in mine if math.isfinite(r["a_priori"])]
        rigorous = [r for r in mine if math.isfinite(r["a_posteriori"])]
        tight = [r for r in mine if r["tightness"] <= GOAL_TIGHTNESS]
        lines.append(f"{target}: a-priori bound finite: {len(finite)} of {len(mine)}; "
                     f"a-posteriori bound finite on every task: {len(rigorous)} of {len(mine)}; "
                     f"a-posteriori bound within {GOAL_TIGHTNESS:g}x of the observed error: "
                     f"{len(tight)} of {len(mine)}; every error within its a-posteriori bound: "
                     f"{'yes' if all(r['worst_ratio'] <= 1 for r in mine) else 'NO'}")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    torch.set_num_threads(1)
    grid = [(config, target) for config in configurations(args.max_d, args.max_n)
            for target in listed(args.target, MlpTarget)]
    rows = []
    for (name, d, n), target in tqdm(grid, desc="configurations", disable=args.json,
                                     file=sys.stderr):
        rows.append(measure(name, d, n, args.trials, args.seed, target))
        if not args.json:  # each row as it is measured: a long sweep shows what it has
            tqdm.write(format_rows(rows[-1:]).splitlines()[2], file=sys.stderr)
    print(json.dumps(rows, indent=2) if args.json else format_rows(rows))
    return 0 if all(r["worst_ratio"] <= 1 for r in rows) else 1
