"""``rawc bench verify``: what ``rawc verify`` costs at scale, each run in its own process.

The issue's goal on a 2-core machine: ``rawc verify`` of ``ridge --d 8 --n 32`` (both forms)
and of ``sgd --d 16 --n 64`` with ``--trials 10000`` in under 60 s and under 1.5 GB peak RSS.
Each configuration is compiled once, then verified in a fresh ``python -m construct.cli``
process; its wall time, peak resident memory (``os.wait4``'s rusage of that process alone)
and the phases the report gives are printed side by side. Run it with the machine otherwise
quiet.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from tqdm import tqdm

CONFIGURATIONS = (("ridge", 8, 32, "stacked"), ("ridge", 8, 32, "shared"),
                  ("sgd", 16, 64, "stacked"))
GOAL_SECONDS, GOAL_BYTES = 60.0, 1.5 * 2 ** 30


def _rawc(*argv: str) -> list[str]:
    return [sys.executable, "-m", "construct.cli", *argv]


def measure(name: str, d: int, n: int, form: str, trials: int, directory: str
            ) -> dict[str, object]:
    path = os.path.join(directory, f"{name}-{d}-{n}-{form}.safetensors")
    subprocess.run(_rawc("compile", name, "--d", str(d), "--n", str(n), "--form", form,
                         "-o", path), check=True, capture_output=True)
    started = time.perf_counter()
    process = subprocess.Popen(_rawc("verify", path, "--trials", str(trials), "--json"),
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    report = json.loads(output) if output.strip() else {}
    return {"algorithm": name, "d": d, "n": n, "form": form, "trials": trials,
            "seconds": seconds, "peak_bytes": usage.ru_maxrss * 1024,
            "exit": os.waitstatus_to_exitcode(status), "verdict": report.get("verdict"),
            "phases": report.get("phases", {}), "batch": report.get("batch")}


def main(args: argparse.Namespace) -> int:
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        bar = tqdm(CONFIGURATIONS, desc="bench verify", unit="configuration", file=sys.stderr)
        for name, d, n, form in bar:
            bar.set_postfix_str(f"{name} d={d} n={n} {form}, {args.trials} tasks")
            rows.append(measure(name, d, n, form, args.trials, directory))
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    head = (f"{'configuration':<26} {'tasks':>6} {'seconds':>8} {'peak MB':>8} {'batch':>6} "
            f"{'verdict':<13} phases")
    print(head + "\n" + "-" * len(head))
    for r in rows:
        phases = ", ".join(f"{k} {v:.1f}" for k, v in r["phases"].items())
        print(f"{r['algorithm'] + ' d=' + str(r['d']) + ' n=' + str(r['n']) + ' ' + r['form']:<26}"
              f" {r['trials']:>6} {r['seconds']:>8.1f} {r['peak_bytes'] / 2 ** 20:>8.0f} "
              f"{r['batch'] or '-':>6} {str(r['verdict']):<13} {phases}")
    met = all(r["seconds"] < GOAL_SECONDS * r["trials"] / 10000 and r["peak_bytes"] < GOAL_BYTES
              for r in rows)
    print(f"\ngoal (10000 tasks in < {GOAL_SECONDS:g} s, scaled to --trials; peak < 1.5 GB): "
          f"{'met' if met else 'MISSED'}")
    return 0
