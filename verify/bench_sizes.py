"""``rawc bench sizes``: width, depth, parameters, time and error across d, beside the paper.

The paper's counts (reference section 3): GD (Appendix A) 9 single-layer ops over
``3 + 4d`` data rows plus scratch; Sherman–Morrison (Appendix B) 14 ops over
``3 + 5d + 3d^2`` data rows plus scratch. rawc's width already includes its scratch, position
and LayerNorm rows. Errors are end-to-end against the closed form, relative
(``max|err| / max|ref|``), each dtype with the constants tuned for it.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from construct.algorithms import get_algorithm
from construct.assemble import compile_program
from construct.config import CompileConfig, torch_dtype
from construct.model import Transformer
from verify.runner import verify_model

DIMENSIONS = (1, 2, 4, 8, 16)
PAPER = {"gd": (9, lambda d: 3 + 4 * d), "sherman-morrison": (14, lambda d: 3 + 5 * d + 3 * d * d)}


def measure(name: str, d: int, trials: int, seed: int) -> dict[str, object]:
    algorithm = get_algorithm(name)
    params = algorithm.resolve(d=d)
    row: dict[str, object] = {"algorithm": name, "d": d,
                              "paper_layers": PAPER[name][0], "paper_data_rows": PAPER[name][1](d)}
    for dtype in ("float64", "float32"):
        started = time.perf_counter()
        compiled = compile_program(algorithm.program(params), CompileConfig.for_dtype(dtype))
        compile_seconds = time.perf_counter() - started
        model = Transformer(compiled.shape, compiled.weights, torch_dtype(dtype))
        report = verify_model(compiled, model, name, params, dtype=dtype,
                              device=torch.device("cpu"), trials=trials, seed=seed)
        closed = next(r for r in report["rows"] if r["check"].startswith("end-to-end: compiled vs closed"))
        row.update({f"{dtype}_rel_error": closed["max_rel"], f"{dtype}_bound": closed["bound"],
                    f"{dtype}_compile_s": compile_seconds, f"{dtype}_verify_s": report["seconds"]})
        if dtype == "float64":
            sequential = compile_program(algorithm.program(params),
                                         CompileConfig.for_dtype(dtype, schedule="sequential"))
            row.update({"d_model": compiled.shape.d_model, "layers": compiled.shape.n_layers,
                        "sequential_layers": sequential.shape.n_layers,
                        "sequential_d_model": sequential.shape.d_model,
                        "heads": compiled.shape.n_heads, "d_head": compiled.shape.d_head,
                        "d_mlp": compiled.shape.d_mlp, "params": compiled.n_params,
                        "nonzero_params": compiled.n_nonzero_params})
    return row


def format_table(rows: list[dict[str, object]]) -> str:
    head = (f"{'algorithm':<17}{'d':>3} {'paper L':>7} {'paper rows':>10} {'L':>3} {'L seq':>5} "
            f"{'d_model':>7} {'heads':>5} {'d_head':>6} {'d_mlp':>5} {'params':>9} {'nonzero':>8} "
            f"{'f64 rel err':>11} {'f32 rel err':>11} {'compile s':>9} {'verify s':>8}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['algorithm']:<17}{r['d']:>3} {r['paper_layers']:>7} {r['paper_data_rows']:>10} "
            f"{r['layers']:>3} {r['sequential_layers']:>5} {r['d_model']:>7} {r['heads']:>5} "
            f"{r['d_head']:>6} {r['d_mlp']:>5} {r['params']:>9} {r['nonzero_params']:>8} "
            f"{r['float64_rel_error']:>11.2e} "
            f"{r['float32_rel_error']:>11.2e} {r['float64_compile_s']:>9.3f} "
            f"{r['float64_verify_s']:>8.3f}")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    trials = getattr(args, "trials", None) or 1000
    rows = []
    for name in PAPER:
        for d in DIMENSIONS:
            print(f"measuring {name} d={d} ...", file=sys.stderr, flush=True)
            rows.append(measure(name, d, trials, args.seed))
    print(json.dumps(rows, indent=2) if args.json else format_table(rows))
    return 0
