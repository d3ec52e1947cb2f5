"""``rawc bench ops``: observed vs predicted error of every lowered operation, in isolation.

For each op kind (``verify.check.ops.OP_KINDS``), ``d`` in ``{2, 4}`` and dtype in
``{float64, float32}`` (constants from ``CompileConfig.for_dtype(dtype)``, one op per layer),
``verify.check.ops.measure`` compares the op's layer with the exact op applied to the compiled
model's own inputs. The exit status is 1 when any observed error exceeds its bound.
"""
from __future__ import annotations

import argparse
import json
import sys

from tqdm import tqdm

from construct.compiler.config import CompileConfig
from verify.check.ops import OP_KINDS, OpMeasurement, measure

DIMENSIONS = (2, 4)
DTYPES = ("float64", "float32")
BATCH = 1024  # sequences per measurement: more draws give a sharper maximum
PROGRESS_AFTER_S = 2.0  # only long runs report progress


def run_all(seed: int, batch: int = BATCH) -> list[OpMeasurement]:
    cases = [(kind, d, dtype) for dtype in DTYPES for kind in OP_KINDS for d in DIMENSIONS]
    results = []
    for kind, d, dtype in tqdm(cases, desc="ops", unit="op", file=sys.stderr, leave=False,
                               delay=PROGRESS_AFTER_S):
        config = CompileConfig.for_dtype(dtype, schedule="sequential")
        results.append(measure(kind, d, dtype, config, seed, batch=batch))
    return results


def table(results: list[OpMeasurement]) -> str:
    lines = [f"{'op':<11} {'d':>2} {'dtype':<8} {'observed':>10} {'bound':>10} {'ratio':>9}",
             "-" * 55]
    for m in results:
        flag = "" if m.holds else "  EXCEEDS BOUND"
        lines.append(f"{m.kind:<11} {m.d:>2} {m.dtype:<8} {m.observed:>10.3e} "
                     f"{m.predicted:>10.3e} {m.ratio:>9.2e}{flag}")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    seed = getattr(args, "seed", 0)
    results = run_all(seed)
    if getattr(args, "json", False):
        print(json.dumps([m.to_json() for m in results], indent=2))
    else:
        print(f"per-op error, isolated (exact inputs from the compiled residual), seed {seed}, "
              f"{BATCH} sequences of 5 tokens")
        print(table(results))
        failed = [m for m in results if not m.holds]
        print(f"{len(results) - len(failed)}/{len(results)} within their bounds")
    return 1 if any(not m.holds for m in results) else 0
