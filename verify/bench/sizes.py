"""``rawc bench``: width, depth, parameters, time and error across d, beside the paper and
beside the lower bounds (``construct.compiler.limits``), all measured in one run.

The paper's counts (reference section 3): GD (Appendix A) 9 single-layer ops over
``3 + 4d`` data rows plus scratch; Sherman–Morrison (Appendix B) 14 ops over
``3 + 5d + 3d^2`` data rows plus about ``4d^2`` of scratch. rawc's width already includes its
scratch, position and LayerNorm rows. The bounds: depth from the critical path in attention
hops and MLP nonlinearity levels, width from the largest set of rows live at once.

Errors are end-to-end against the closed form, relative (``max|err| / max|ref|``), each dtype
with the constants tuned for it. Compile time and peak memory (``tracemalloc``: every numpy
buffer the passes allocate) are for the float64 compilation; verify time is for ``trials``
tasks in float64 on the CPU with every check of ``rawc verify``.

Goals (issue 7): GD in at most 3 layers, one Sherman–Morrison update in at most 6, width
within 1.5x the live-set bound.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import tracemalloc

import torch

from tqdm import tqdm

from construct.algorithms.registry import get_algorithm
from construct.model.assemble import compile_program
from construct.compiler.config import CompileConfig, torch_dtype
from construct.compiler.limits import limits
from construct.model.transformer import Transformer
from construct.compiler.schedule import build_schedule
from verify.check.runner import verify_model

DIMENSIONS = {"gd": (1, 2, 4, 8, 16, 32, 64), "sherman-morrison": (1, 2, 4, 8, 16, 32)}
PAPER = {"gd": (9, lambda d: 3 + 4 * d), "sherman-morrison": (14, lambda d: 3 + 5 * d + 3 * d * d)}
GOAL_LAYERS = {"gd": 3, "sherman-morrison": 6}
GOAL_WIDTH_RATIO = 1.5


def _error(compiled, name: str, params: dict[str, object], dtype: str, trials: int,
           seed: int) -> tuple[float, float, bool]:
    """(relative end-to-end error, verify seconds, every check passed)."""
    model = Transformer(compiled.shape, compiled.weights, torch_dtype(dtype))
    report = verify_model(compiled, model, name, params, dtype=dtype, device=torch.device("cpu"),
                          trials=trials, seed=seed)
    closed = next(r for r in report["rows"]
                  if r["check"].startswith("end-to-end: compiled vs closed"))
    return closed["max_rel"], report["seconds"], report["ok"]


def measure(name: str, d: int, trials: int, seed: int) -> dict[str, object]:
    algorithm = get_algorithm(name)
    params = algorithm.resolve(d=d)
    program = algorithm.program(params)
    tracemalloc.start()
    started = time.perf_counter()
    compiled = compile_program(program, CompileConfig.for_dtype("float64"))
    compile_seconds = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    bound = limits(compiled.program, compiled.layout)
    f64, verify_seconds, ok64 = _error(compiled, name, params, "float64", trials, seed)
    f32_model = compile_program(program, CompileConfig.for_dtype("float32"))
    f32, _, ok32 = _error(f32_model, name, params, "float32", trials, seed)
    paper_layers, paper_rows = PAPER[name]
    return {"algorithm": name, "d": d, "paper_layers": paper_layers,
            "paper_data_rows": paper_rows(d), "layers": compiled.shape.n_layers,
            "depth_bound": bound.depth,
            "sequential_layers": build_schedule(compiled.program, "sequential").n_layers,
            "d_model": compiled.shape.d_model, "width_bound": bound.width,
            "heads": compiled.shape.n_heads, "d_head": compiled.shape.d_head,
            "d_mlp": compiled.shape.d_mlp, "params": compiled.n_params,
            "nonzero_params": compiled.n_nonzero_params, "compile_s": compile_seconds,
            "compile_peak_mib": peak / 2 ** 20, "verify_s": verify_seconds, "trials": trials,
            "float64_rel_error": f64, "float32_rel_error": f32, "ok": ok64 and ok32}


def format_table(rows: list[dict[str, object]]) -> str:
    head = (f"{'algorithm':<17}{'d':>3} | {'L paper':>7} {'L bound':>7} {'L':>3} {'L/bnd':>5} | "
            f"{'rows paper':>10} {'W bound':>7} {'d_model':>7} {'W/bnd':>5} | "
            f"{'params (nonzero)':>21} | {'compile s':>9} {'peak MiB':>8} {'verify s':>8} | "
            f"{'f64 rel err':>11} {'f32 rel err':>11} ok")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['algorithm']:<17}{r['d']:>3} | {r['paper_layers']:>7} {r['depth_bound']:>7} "
            f"{r['layers']:>3} {r['layers'] / r['depth_bound']:>5.2f} | "
            f"{r['paper_data_rows']:>10} {r['width_bound']:>7} {r['d_model']:>7} "
            f"{r['d_model'] / r['width_bound']:>5.2f} | "
            f"{r['params']:>10} ({r['nonzero_params']:>8}) | {r['compile_s']:>9.3f} "
            f"{r['compile_peak_mib']:>8.2f} {r['verify_s']:>8.3f} | "
            f"{r['float64_rel_error']:>11.2e} {r['float32_rel_error']:>11.2e} "
            f"{'yes' if r['ok'] else 'NO'}")
    return "\n".join(lines)


def goals(rows: list[dict[str, object]]) -> list[str]:
    """One line per goal: met, or what stands in the way."""
    out = []
    for name, most in GOAL_LAYERS.items():
        mine = [r for r in rows if r["algorithm"] == name]
        if not mine:
            continue
        worst = max(mine, key=lambda r: r["layers"])
        verdict = "met" if worst["layers"] <= most else "MISSED"
        out.append(f"{name}: at most {most} layers: {verdict} ({worst['layers']} layers at "
                   f"d = {worst['d']}; critical-path bound {worst['depth_bound']})")
    worst = max(rows, key=lambda r: r["d_model"] / r["width_bound"])
    ratio = worst["d_model"] / worst["width_bound"]
    out.append(f"width within {GOAL_WIDTH_RATIO}x the live-set bound: "
               f"{'met' if ratio <= GOAL_WIDTH_RATIO else 'MISSED'} (worst {ratio:.2f} for "
               f"{worst['algorithm']} d = {worst['d']})")
    return out


def main(args: argparse.Namespace) -> int:
    trials, largest = args.trials, args.max_d
    rows = []
    work = [(name, d) for name, dims in DIMENSIONS.items() for d in dims if d <= largest]
    for name, d in tqdm(work, desc="configurations", file=sys.stderr, leave=False,
                        disable=args.json):
        rows.append(measure(name, d, trials, args.seed))
    if args.json:
        print(json.dumps({"rows": rows, "goals": goals(rows)}, indent=2))
    else:
        print(format_table(rows))
        print()
        print("\n".join(goals(rows)))
    return 0 if all(r["ok"] for r in rows) else 1
