"""``rawc fuzz``: random-program differential testing of the compiler (``verify.fuzz``)."""
from __future__ import annotations

import argparse
import json
import os

DESCRIPTION = """\
Draw random RAW programs (every read map, mul shape, div, aff, priors, loops, explicit
groups, keyword-like slot names, deep chains and wide layers), compile each under every
MLP target (paper, gated) x schedule x form x dtype it supports, and run it on random inputs inside the declared bound
against the reference interpreter: every op on the model's own inputs, every live slot after
every layer, the output end to end and against each task's a-posteriori bound. Small programs
also run the interpreter in float64 against its exact run on rationals, and every program
round-trips through the text front ends (the native one, and the paper notation where the
program can be said in it).

Each trial ends as: agree; no guarantee (some bound is infinite: not an agreement); disagree
beyond bound (a silent miscompile); refused (the named reason is then checked against the
program: an untrue reason is a disagreement); or crashed. Failures are shrunk by Hypothesis
to a minimal program, printed in the native text form. Exit 1 on any disagreement or crash.

For developers extending the compiler: run it after every change to a pass, e.g.
  rawc fuzz --programs 2000 --jobs 2 --out fuzz.json
About 0.2 s per program on one core; --jobs J runs chunks of 50 programs in J Ray workers.
"""


def add_fuzz_parser(sub) -> None:
    p = sub.add_parser("fuzz", help="random-program differential testing of the compiler",
                       description=DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--programs", type=int, default=1000,
                   help="how many random programs (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="campaign seed (default 0); the same "
                                                       "seed draws the same programs")
    p.add_argument("--jobs", type=int, default=1,
                   help="Ray workers (default 1: in this process)")
    p.add_argument("--tasks", type=int, default=8,
                   help="random tasks per compiled program (default 8)")
    p.add_argument("--max-findings", type=int, default=10,
                   help="failures to shrink; later ones are only counted (default 10)")
    p.add_argument("--out", help="write the report as JSON to this file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    for option in ("programs", "jobs", "tasks"):
        if getattr(args, option) < 1:
            raise ValueError(f"--{option} must be >= 1, got {getattr(args, option)}")
    if args.max_findings < 0:
        raise ValueError(f"--max-findings must be >= 0, got {args.max_findings}")
    if args.seed < 0:
        raise ValueError(f"--seed must be >= 0, got {args.seed}")
    if args.out is not None:
        directory = os.path.dirname(os.path.abspath(args.out))
        if not os.path.isdir(directory):
            raise ValueError(f"--out {args.out}: directory {directory} does not exist")
        if os.path.isdir(args.out):
            raise ValueError(f"--out {args.out} is a directory")
    from construct.model.checkpoint import replace_atomically
    from verify.fuzz.campaign import Campaign, report_json, run_campaign, summary

    campaign = Campaign(args.programs, args.seed, args.jobs, args.max_findings, args.tasks)
    tally, seconds = run_campaign(campaign, progress=not args.quiet)
    print(summary(campaign, tally, seconds))
    if args.out is not None:
        text = json.dumps(report_json(campaign, tally, seconds), indent=2) + "\n"
        replace_atomically(args.out, lambda tmp: open(tmp, "w").write(text))
    return 0 if tally.failures == 0 else 1
