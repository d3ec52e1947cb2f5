"""``rawc bench``: the benchmarks (``verify.bench``), one parser for all of them; each option
is refused where its benchmark does not read it (``verify.bench.options``)."""
from __future__ import annotations

import argparse


def _cmd_bench(args: argparse.Namespace) -> int:
    from verify.bench.options import settle

    args = settle(args)
    if args.what == "ops":
        from verify.bench.ops import main as bench_main
    elif args.what == "bounds":
        from verify.bench.bounds import main as bench_main
    elif args.what == "verify":
        from verify.bench.verify_scale import main as bench_main
    elif args.what == "targets":
        from verify.bench.targets import main as bench_main
    elif args.what == "ridge":
        from verify.bench.ridge import main as bench_main
    elif args.what == "horizon":
        from verify.bench.ridge import main_horizon as bench_main
    else:
        from verify.bench.sizes import main as bench_main
    return bench_main(args)


def add_bench_parser(sub) -> None:
    p = sub.add_parser(
        "bench", help="size, depth, time and error tables beside the paper and the bounds",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="`rawc bench` (= `rawc bench sizes`): for gd (d = 1..64) and "
                    "sherman-morrison (d = 1..32): layers and width beside the paper's counts "
                    "and beside the lower bounds (critical path; largest live set), parameters, "
                    "compile time and peak memory, verify time for --trials tasks, and float64 / "
                    "float32 end-to-end error, then whether the goals are met (gd <= 3 layers, "
                    "one Sherman-Morrison update <= 6, width <= 1.5x the bound). Takes about 20 "
                    "s on two cores; --max-d 16 for a quick look.\n\n`rawc bench ops`: observed vs "
                    "predicted error of each lowered operation in isolation.\n\n`rawc bench "
                    "bounds [--target paper,gated]`: the a-priori and a-posteriori bounds of every "
                    "named program algorithm at its defaults, each MLP target, across d "
                    "(<= --max-d) and n (<= --max-n), beside the observed error (tightness goal: "
                    "within 100x).\n\n`rawc bench verify`: "
                    "wall time, phases and peak memory of `rawc verify` on ridge d=8 n=32 "
                    "(both forms) and sgd d=16 n=64 with --trials tasks (goal: 10000 tasks in "
                    "under 60 s and 1.5 GB), each in its own process.\n\n`rawc bench targets "
                    "[--target paper,gated] [--gelu-product polarized,richardson,lemma4]`: the paper target with each "
                    "GeLU product rule and the gated target side by side for "
                    "gd (d <= --max-d, 64), sherman-morrison (d <= 32), ridge and sgd (d = 4, "
                    "n <= --max-n, 64): layers, width, parameters, largest weight, float64 and "
                    "float32 end-to-end relative error over --trials tasks, beside the "
                    "program's own float32 error (the interpreter in float32) (goals: gated <= "
                    "1e-12 and 1e-5, weights <= 1e4; paper float32 sherman-morrison <= 1e-3).\n\n`rawc bench ridge`: the depth-width "
                    "Pareto table of ridge --method solve, newton and sherman-morrison, each MLP target, "
                    "d = 2..16 (<= --max-d), n = 16, 256, 4096 (<= --max-n): layers, d_model, "
                    "nonzero parameters, compile time, float64 and float32 worst relative error "
                    "over every prefix, beside the critical path, the 2 + ceil(log2 d) of any "
                    "exact per-token solve and the paper's 3n + 2 (stacks deeper than "
                    "--max-stack-layers are not compiled). About 15 min on two cores in full; "
                    "--max-d 8 --max-n 256 for a quick look.\n\n`rawc bench horizon`: the "
                    "divergence horizon, each learner's (ridge by every method, sgd, gd-batch; "
                    "d = 4) relative error at n = 16 .. 4096 (<= --max-n) in float64 and "
                    "float32, and the first n where it passes 1e-3 (deep stacks stop at "
                    "--max-stack-layers), under each position code of --position-code.")
    p.add_argument("what", nargs="?",
                   choices=("sizes", "ops", "bounds", "verify", "targets", "ridge", "horizon"),
                   default="sizes")
    p.add_argument("--target",
                   help="`bench targets`, `bounds`, `ridge`, `horizon`: the MLP targets to set "
                        "side by side, comma separated (default paper,gated)")
    p.add_argument("--gelu-product",
                   help="`bench targets`: the paper target's GeLU product rules to measure, "
                        "comma separated (default polarized,richardson,lemma4)")
    p.add_argument("--seed", type=int, help="seed of the random tasks (default 0)")
    p.add_argument("--trials", type=int,
                   help="tasks per verify or per configuration (default 1000)")
    p.add_argument("--max-d", type=int, help="largest d to measure (default 64)")
    p.add_argument("--max-n", type=int,
                   help="largest n for the learners (bounds and targets measure n <= 64, "
                        "ridge n <= 4096; default: all of them)")
    p.add_argument("--max-stack-layers", type=int,
                   help="`bench ridge`: deepest Sherman-Morrison stack to compile (default 800: "
                        "n <= 266)")
    p.add_argument("--position-code",
                   help="`bench horizon`: the position codes to set side by side, comma "
                        "separated (default quadratic,dyadic: the code before and after the "
                        "long-context one)")
    p.add_argument("--json", action="store_true", help="the rows as JSON instead of a table")
    p.set_defaults(run=_cmd_bench)
