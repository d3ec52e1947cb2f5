"""A fuzzing campaign: N random programs through the oracle, failures shrunk to minimal ones.

The programs are drawn by Hypothesis (``verify.fuzz.generator.programs``) in *chunks* of
``CHUNK`` programs, each with its own seed derived from the campaign's, so a campaign is
reproducible whatever ``--jobs`` (chunks run in Ray workers when ``jobs > 1``). Within a
chunk every generated program is counted once; the first failure stops generation, and
Hypothesis shrinks it, keeping only smaller programs that fail the same way (same outcome,
target and ``Trial.kind``), so the finding is a minimal program of *that* failure. The chunk
then resumes with the programs it has left, under a fresh seed, so one bug cannot hide the
rest of the count. After ``max_findings`` findings, failures are counted but not shrunk.
"""
from __future__ import annotations

import collections
import dataclasses
import sys
import time

import numpy as np
from hypothesis import HealthCheck, Phase, Verbosity, given, seed as seeded, settings
from tqdm import tqdm

from verify.fuzz.generator import programs
from verify.fuzz.oracle import Outcome, Trial, check_program
from verify.sweeps import ray_map

CHUNK = 50


@dataclasses.dataclass(frozen=True)
class Finding:
    """One failure, shrunk: the minimal program text and what went wrong with it."""

    outcome: str
    target: str
    kind: str
    reason: str
    program: str

    def to_json(self) -> dict[str, object]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Tally:
    """What a campaign (or a chunk of one) saw; ``merge`` adds another's."""

    programs: int = 0
    outcomes: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    refusals: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    targets: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    ratios: list[float] = dataclasses.field(default_factory=list)
    zero_bounds: int = 0
    findings: list[Finding] = dataclasses.field(default_factory=list)
    unshrunk: int = 0  # failures counted after max_findings, not shrunk

    def add(self, trials: tuple[Trial, ...]) -> None:
        self.programs += 1
        for trial in trials:
            self.outcomes[trial.outcome.name] += 1
            self.targets[trial.target.label] += 1
            if trial.outcome is Outcome.REFUSED:
                self.refusals[trial.reason] += 1
            if trial.ratio is not None:
                self.ratios.append(trial.ratio)
                self.zero_bounds += trial.bound == 0

    def merge(self, other: Tally) -> None:
        self.programs += other.programs
        self.outcomes.update(other.outcomes)
        self.refusals.update(other.refusals)
        self.targets.update(other.targets)
        self.ratios += other.ratios
        self.zero_bounds += other.zero_bounds
        self.findings += other.findings
        self.unshrunk += other.unshrunk

    @property
    def failures(self) -> int:
        return sum(self.outcomes[o.name] for o in Outcome if o.failed)

    def tightness(self) -> dict[str, float | int]:
        """observed / bound, end to end, over the agreeing trials."""
        if not self.ratios:
            return {"count": 0}
        values = np.array(self.ratios)
        return {"count": len(values), "median": float(np.median(values)),
                "p99": float(np.quantile(values, 0.99)), "max": float(values.max()),
                "zero_bounds": self.zero_bounds}


class _Failed(Exception):
    """Raised inside the Hypothesis test so that it shrinks the program."""

    def __init__(self, program_text: str, trial: Trial) -> None:
        super().__init__(trial.reason)
        self.program_text, self.trial = program_text, trial


def _signature(trial: Trial) -> tuple[str, str, str]:
    return trial.outcome.name, trial.target.label, trial.kind


def run_chunk(n_programs: int, chunk_seed: int, shrink: bool = True, tasks: int = 8
              ) -> Tally:
    """``n_programs`` programs drawn from ``chunk_seed``; see the module docstring."""
    tally = Tally()
    round_seed = chunk_seed
    while tally.programs < n_programs:
        wanted: list[tuple[str, str, str] | None] = [None]
        budget = n_programs - tally.programs

        @seeded(round_seed)
        @settings(max_examples=budget, database=None, deadline=None, verbosity=Verbosity.quiet,
                  suppress_health_check=list(HealthCheck), report_multiple_bugs=False,
                  phases=(Phase.generate, Phase.shrink) if shrink else (Phase.generate,))
        @given(programs())
        def probe(program) -> None:
            trials = check_program(program, tasks=tasks, seed=round_seed % 2 ** 31)
            if wanted[0] is None and tally.programs < n_programs:
                tally.add(trials)  # generation: count each program once
            failed = [t for t in trials if t.outcome.failed]
            if not failed or not shrink:
                return
            if wanted[0] is None:
                wanted[0] = _signature(failed[0])
            same = [t for t in failed if _signature(t) == wanted[0]]
            if same:
                raise _Failed(program.text(), same[0])

        try:
            probe()
        except _Failed as failure:
            trial = failure.trial
            tally.findings.append(Finding(trial.outcome.name, trial.target.label, trial.kind,
                                          trial.reason, failure.program_text))
        round_seed += 7919
        if wanted[0] is None and tally.programs < n_programs:
            break  # Hypothesis ran out of distinct programs to try
    return tally


@dataclasses.dataclass(frozen=True)
class Campaign:
    programs: int
    seed: int = 0
    jobs: int = 1
    max_findings: int = 10
    tasks: int = 8

    def chunks(self) -> list[tuple[int, int]]:
        """(programs, seed) of every chunk: the same for any number of jobs."""
        out, left, k = [], self.programs, 0
        while left > 0:
            out.append((min(CHUNK, left), self.seed * 1_000_003 + k))
            left -= CHUNK
            k += 1
        return out


def run_campaign(campaign: Campaign, progress: bool = True) -> tuple[Tally, float]:
    """Run every chunk (in Ray workers when ``jobs > 1``); return the merged tally and the
    wall time."""
    start = time.perf_counter()
    total = Tally()
    chunks = campaign.chunks()
    bar = tqdm(total=campaign.programs, desc="programs", unit="program", disable=not progress,
               file=sys.stderr, leave=False)

    def absorb(tally: Tally) -> None:
        if len(total.findings) >= campaign.max_findings:
            total.unshrunk += len(tally.findings)
            tally.findings = []
        total.merge(tally)
        bar.update(tally.programs)

    if campaign.jobs <= 1:
        for n, chunk_seed in chunks:
            absorb(run_chunk(n, chunk_seed, len(total.findings) < campaign.max_findings,
                             campaign.tasks))
    else:
        for tally in _ray_chunks(chunks, campaign):
            absorb(tally)
    bar.close()
    return total, time.perf_counter() - start


def _ray_chunks(chunks: list[tuple[int, int]], campaign: Campaign):
    """Yield each chunk's tally as a Ray worker finishes it."""
    yield from ray_map(_chunk_in_worker, [(n, s, campaign.tasks) for n, s in chunks],
                       num_cpus=campaign.jobs)


def _chunk_in_worker(n: int, chunk_seed: int, tasks: int) -> Tally:
    import torch

    torch.set_num_threads(1)
    return run_chunk(n, chunk_seed, True, tasks)


def report_json(campaign: Campaign, tally: Tally, seconds: float) -> dict[str, object]:
    return {"programs": tally.programs, "seed": campaign.seed, "jobs": campaign.jobs,
            "seconds": seconds, "trials": dict(tally.outcomes),
            "refusals": dict(tally.refusals), "targets": dict(tally.targets),
            "tightness": tally.tightness(), "findings": [f.to_json() for f in tally.findings],
            "failures_not_shrunk": tally.unshrunk,
            "ok": tally.failures == 0}


def summary(campaign: Campaign, tally: Tally, seconds: float) -> str:
    from construct.compiler.refusal import Refusal

    trials = sum(tally.outcomes.values())
    lines = [f"rawc fuzz: {tally.programs} programs (seed {campaign.seed}, {campaign.jobs} "
             f"job{'s' if campaign.jobs > 1 else ''}), {trials} trials in {seconds:.0f} s"]
    for outcome in Outcome:
        lines.append(f"  {outcome.value:<32} {tally.outcomes[outcome.name]:>7}")
        if outcome is Outcome.REFUSED:
            for name, count in tally.refusals.most_common():
                lines.append(f"    {name:<30} {count:>7}  ({Refusal[name].value})")
    t = tally.tightness()
    if t["count"]:
        lines.append(f"  tightness (end-to-end observed / bound, agreeing trials): median "
                     f"{t['median']:.2g}, p99 {t['p99']:.2g}, max {t['max']:.2g}; "
                     f"{t['zero_bounds']} with a bound of exactly 0")
    if tally.findings:
        lines.append(f"findings ({len(tally.findings)}, shrunk; "
                     f"{tally.unshrunk} more not shrunk):")
        for f in tally.findings:
            lines.append(f"  {f.outcome} {f.target}: {f.reason}")
            lines += ["    " + line for line in f.program.splitlines()]
    verdict = "no disagreement, no crash" if tally.failures == 0 else \
        f"{tally.failures} failing trials"
    lines.append(verdict)
    return "\n".join(lines)

