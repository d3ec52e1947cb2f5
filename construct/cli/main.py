"""The ``rawc`` command line: list, compile, verify, explain, prove, docs, bench, fuzz, export,
train-lsa, and the trained learners (train, compare, probe, phases, transience)."""
from __future__ import annotations

import argparse
import os
import sys

from construct.algorithms.registry import (ALGORITHMS, algorithm_params, get_algorithm,
                                           parameter_options)
from construct.cli.progress import phases
from construct.cli.compile_options import (check_size, lowering_choices,
                                          refuse_shared_without_loop)
from construct.language.program import ProgramError

DESCRIPTION = """\
rawc compiles learning algorithms written in the RAW operation language (mov, mul, div, aff;
Akyurek et al., ICLR 2023) into the weights of an ordinary transformer, saves them as a
safetensors checkpoint, and verifies them against a reference interpreter and closed-form
solvers.

typical use:
  rawc list
  rawc compile gd --d 8 --alpha 0.1 --lam 0.01 -o gd.safetensors
  rawc verify gd.safetensors --trials 10000
  rawc compile ridge --d 4 --n 16 --lam 0.5 -o ridge.safetensors
  rawc verify ridge.safetensors --dtype float64
  rawc train --layers 2 -o trained.safetensors
  rawc compare trained.safetensors ridge.safetensors --plot spd.png
"""


def _cmd_list(args: argparse.Namespace) -> int:
    for algorithm in ALGORITHMS.values():
        print(f"{algorithm.name}: {algorithm.summary}")
        width = max(len(p.option) for p in algorithm.parameters)
        for p in algorithm.parameters:
            default = "(see help)" if p.default is None else p.default
            print(f"    {p.option:<{width}} {p.help}; default {default}")
    return 0


def _cmd_compile(args: argparse.Namespace) -> int:
    from construct.cli import program_file
    from construct.cli.summary import compile_summary
    from construct.compiler.config import CompileConfig
    from construct.model.checkpoint import save_checkpoint

    if args.name not in ALGORITHMS:  # a known name wins over a file of that name (./NAME)
        if program_file.looks_like_file(args.name):
            return _compile_program_file(args)
        raise ProgramError(f"unknown algorithm {args.name!r} (known: {', '.join(ALGORITHMS)}; "
                           "see `rawc list`) and no program file of that name")
    algorithm = get_algorithm(args.name)
    params = algorithm.resolve(**algorithm_params(args))
    overrides = {"input_bound": args.bound, "n_ctx": args.n_ctx,
                 **lowering_choices(args, args.name, algorithm.family)}
    config = CompileConfig.for_dtype(args.dtype, **overrides)
    if hasattr(algorithm, "effective"):
        params = algorithm.effective(params, config.input_bound)
    check_size(algorithm, params, config, args)
    with phases(f"compile {args.name}", ("building", "writing", "bounding")) as phase:
        built = algorithm.construct(params, config, listing=args.listing)
        if hasattr(built, "source_program"):  # the tokens a task carries must fit n_ctx
            refuse_shared_without_loop(args, args.name, built.source_program)
            program_file.exemplars(built.source_program, int(params.get("n", 1)), config.n_ctx)
        phase()
        save_checkpoint(built, args.output, algorithm=args.name, params=params)
        phase()
        lines = compile_summary(args.name, built, params, listing=args.listing)
    for line in lines:
        print(line)
    print(f"  wrote {args.output}")
    return 0


def _compile_program_file(args: argparse.Namespace) -> int:
    """``rawc compile PROGRAM_FILE``: the program fixes d and its coefficients; of the
    algorithm flags only --n (exemplars per verification task) applies."""
    from construct.cli import program_file
    from construct.cli.summary import compile_summary
    from construct.model.checkpoint import save_checkpoint

    given = {**algorithm_params(args), "listing": args.listing}
    program, compiled, record = program_file.compile_file(args.name, args, given)
    save_checkpoint(compiled, args.output, str(record["name"]), record["params"],
                    {k: v for k, v in record.items() if k not in ("name", "params")})
    lines = compile_summary(program.name, compiled, record["params"])  # type: ignore[arg-type]
    lines[0] = lines[0].replace("(builder program)", f"(program file {args.name})", 1)
    for line in lines:
        print(line)
    print(f"  wrote {args.output}")
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    from verify.check.command import main as verify_main

    return verify_main(args)


def _cmd_explain(args: argparse.Namespace) -> int:
    from construct.teach.explain_command import main as explain_main

    return explain_main(args)


def _cmd_prove(args: argparse.Namespace) -> int:
    from verify.proofs.prove import main as prove_main

    return prove_main(args)


def _cmd_docs(args: argparse.Namespace) -> int:
    from construct.teach.course import main as docs_main

    return docs_main(args)


def _add_algorithm_args(parser: argparse.ArgumentParser) -> None:
    """``--d``, ``--n``, ``--alpha``, ...: every parameter flag of every algorithm; each says
    which algorithms take it (``rawc list``)."""
    for option, spec in parameter_options().items():
        users = spec["users"]
        default = " (default 2)" if option == "--d" else ""
        parser.add_argument(option, dest=spec["dest"], type=spec["type"],
                            choices=spec.get("choices"), default=2 if option == "--d" else None,
                            help=f"{spec['help']}{default}; for {', '.join(users)}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rawc", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an error (also RAWC_DEBUG=1); by default "
                             "every error is one line and an exit code")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("list", help="the named algorithms and their parameters")
    p.set_defaults(run=_cmd_list)

    p = sub.add_parser("compile", help="compile a named algorithm or a program file to a "
                                       "checkpoint",
                       description="Compile a named algorithm, or your own program text (the "
                                   "native or the paper's notation; README, \"The language\"), "
                                   "to a rawc.checkpoint/1 safetensors file; prints width, "
                                   "depth, parameters and predicted error. A program file fixes "
                                   "d and every coefficient: of the algorithm flags it takes "
                                   "only --n, the exemplars per verification task (default: its "
                                   "`repeat N`, else 1).")
    p.add_argument("name", metavar="NAME|PROGRAM_FILE",
                   help="algorithm name (see `rawc list`) or a program file (an existing file, "
                        "or a path with a directory or a suffix; for a file named like an "
                        "algorithm write ./NAME)")
    _add_algorithm_args(p)
    p.set_defaults(d=None)  # given or not: a program file refuses --d; algorithms default to 2
    p.add_argument("-o", "--output", required=True, help="checkpoint path to write")
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                   help="dtype the constants are tuned for (default float64)")
    p.add_argument("--bound", type=float, default=4.0,
                   help="declared bound B on every input entry (default 4)")
    p.add_argument("--n-ctx", type=int, default=256, help="longest sequence (default 256)")
    p.add_argument("--schedule", choices=("packed", "sequential"),
                   help="packed (default): independent ops share layers and affine maps fold "
                        "into the weights around them; sequential: one op per layer, the "
                        "paper's layout")
    p.add_argument("--form", choices=("stacked", "shared"),
                   help="for learners with a repeated stage (sgd, ridge): stacked = every "
                        "layer its own weights; shared = one stage's layers stored once and "
                        "run n times (parameters constant in n)")
    p.add_argument("--target", choices=("paper", "gated"),
                   help="the MLP products and quotients are lowered into: paper (default; "
                        "GeLU products, error O(eps^2) + rounding u/eps) or gated "
                        "(TransformerLens GatedMLP, relu(z W_gate) * (z W_in): exact products, "
                        "error at rounding)")
    p.add_argument("--gelu-product", choices=("polarized", "richardson", "lemma4"),
                   help="the paper target's GeLU product: polarized (default; four units "
                        "per term, G(x+y) + G(-x-y) - G(x-y) - G(y-x), at eps and 2 eps "
                        "combined so the eps^2 terms cancel: error O(eps^4) + rounding "
                        "u/eps, a quarter of richardson's rounding for up to twice its "
                        "units), richardson (Lemma 4's units, shared across a matrix "
                        "product, at eps and 2 eps) or lemma4 (the paper's one-scale trick, "
                        "error O(eps^2)); refused with --target gated")
    p.add_argument("--position-code", choices=("quadratic", "dyadic"),
                   help="the point reads' position code: quadratic (keys (j, j^2), 2 rows; "
                        "float32 cannot resolve its scores past about 836 positions) or dyadic "
                        "(keys cos/sin(2 pi j / 2^f), 2F - 1 rows per read map, the same gap at "
                        "any length); default: quadratic up to n_ctx = 836, dyadic beyond")
    p.add_argument("--listing", action="store_true",
                   help="compile the paper's appendix listing instead of the builder program")
    p.set_defaults(run=_cmd_compile)

    p = sub.add_parser("verify", help="check a checkpoint against the interpreter and closed form",
                       description="Check that the weights are a fresh build of the checkpoint's "
                                   "own description (integrity), then run random tasks within "
                                   "the declared input bound: every op and every live slot after "
                                   "every layer against the interpreter, the prediction at every "
                                   "prefix against the closed-form solver (a program file: the "
                                   "interpreter alone), and each task's prediction against its "
                                   "own a-posteriori bound (the op error models at the "
                                   "magnitudes the task reads, through the interpreter's "
                                   "Jacobians). Trained weights are held to the closed form of "
                                   "the algorithm they claim, within --tol. Exit 0 PASS (every "
                                   "bound finite and informative: the a-priori one below 1 %% of "
                                   "the output's magnitude bound, each a-posteriori one below 1 %% "
                                   "of the largest output); 1 FAIL (changed weights, an error "
                                   "over any of its bounds, or trained weights off their claim); "
                                   "3 NO GUARANTEE (a bound is infinite or uninformative, or "
                                   "nothing independent of the weights was compared); 2 bad "
                                   "input. Memory depends on --batch, never on --trials.")
    p.add_argument("path", help="checkpoint file")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    p.add_argument("--trials", type=int, default=1000, help="number of random tasks")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=None,
                   help="tasks per batch (default: as many as fit in about 200 MB; memory "
                        "depends on the batch, never on --trials)")
    p.add_argument("--tol", type=float, default=None,
                   help="relative tolerance for trained weights against the closed form of the "
                        "algorithm they claim (default 0.05); compiled weights are held to their "
                        "error bounds instead")
    p.add_argument("--noise", type=float, default=0.0, help="label noise standard deviation")
    p.add_argument("--scale", type=float, default=1.0,
                   help="x ~ N(0, I) * scale before shrinking into the bound (default 1)")
    p.add_argument("--metric-tasks", type=int, default=32,
                   help="tasks for the ILWD probe fits of multi-exemplar learners (default 32)")
    p.add_argument("--json", action="store_true", help="print a JSON report instead of tables")
    p.add_argument("--every-prefix", action="store_true",
                   help="take each task's a-posteriori bound at every prefix (one backward pass "
                        "each; default: prefixes 0-4, the powers of two and n; the a-priori "
                        "bound and the closed form cover every prefix either way)")
    p.add_argument("--no-integrity", action="store_true",
                   help="skip the integrity check (every weight equal, bit for bit, to a fresh "
                        "build of the checkpoint's program and constants, or of its named "
                        "construction); without it a changed weight can hide inside the bounds")
    p.set_defaults(run=_cmd_verify)

    p = sub.add_parser("explain", help="program, layout, schedule and error budget as markdown")
    p.add_argument("target", help="algorithm name or checkpoint path")
    _add_algorithm_args(p)
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    p.add_argument("--form", choices=("stacked", "shared"),
                   help="for a learner with a repeated stage (sgd, ridge --method "
                        "sherman-morrison): shared explains the weight-shared form stage by "
                        "stage (page NAME-shared.md); not for a checkpoint, whose config fixes it")
    p.add_argument("--out", help="directory to write NAME.md into (default: print)")
    p.set_defaults(run=_cmd_explain)

    p = sub.add_parser("prove", help="sympy: the program equals its closed form; the lemmas",
                       description="Prove exactly (sympy: expand/cancel, never simplify) that "
                                   "the named algorithm's program computes its closed form, then "
                                   "derive each lowering trick it uses with its leading error "
                                   "term. `rawc prove lemmas` derives every trick. Exit 0 when "
                                   "all is proved, 1 with the offending term otherwise.")
    p.add_argument("name", help="algorithm name (gd, sherman-morrison, sgd, ridge, gd-batch, "
                                "lsa-gd, lsa-precond-gd) or `lemmas`")
    _add_algorithm_args(p)
    p.add_argument("--listing", action="store_true",
                   help="prove the paper's Appendix A/B listing instead of the builder program")
    p.add_argument("--target", choices=("paper", "gated"), default="paper",
                   help="the MLP target whose lowering tricks to derive (default paper)")
    p.set_defaults(run=_cmd_prove)

    p = sub.add_parser("docs", help="regenerate the course in docs/ (pages, proofs, pictures)",
                       description="Regenerate docs/: one page per construction (the output of "
                                   "`rawc explain NAME --d 2 --out docs`, pictures included) and "
                                   "the generated blocks (`rawc prove ...` output) inside the "
                                   "hand-written pages. --check writes nothing and exits 1 when "
                                   "a committed page differs from what the code makes today.")
    p.add_argument("--out", default="docs", help="the docs folder (default docs)")
    p.add_argument("--check", action="store_true", help="compare only; exit 1 when out of date")
    p.set_defaults(run=_cmd_docs)


    from construct.cli.bench import add_bench_parser  # rawc bench: verify.bench
    from construct.cli.fuzz import add_fuzz_parser  # rawc fuzz: verify.fuzz
    from construct.cli.train import add_train_parser  # rawc train-lsa: verify.training
    from construct.cli.learners import add_learner_parsers  # train, compare, probe, phases, ...
    from construct.cli.export import add_export_parser  # rawc export: construct.model.export_*

    add_bench_parser(sub)
    add_fuzz_parser(sub)
    add_train_parser(sub)
    add_learner_parsers(sub)
    add_export_parser(sub)
    return parser


INTERRUPTED = 130  # 128 + SIGINT, as shells report it
INTERNAL_ERROR = 70  # EX_SOFTWARE: a bug in rawc, not the user's input


def main(argv: list[str] | None = None) -> int:
    """Exit codes: 0 pass, 1 verification failed, 2 bad input (one line naming it), 3 no
    guarantee, 130 interrupted, 70 an internal error (a bug). No traceback unless ``--debug``
    or ``RAWC_DEBUG=1``."""
    args = build_parser().parse_args(argv)
    debug = args.debug or os.environ.get("RAWC_DEBUG", "") not in ("", "0")
    try:
        return args.run(args)
    except (ProgramError, ValueError, OSError) as exc:
        if debug:
            raise
        print(f"rawc {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"rawc {args.command}: interrupted (nothing half-written is left behind)",
              file=sys.stderr)
        return INTERRUPTED
    except MemoryError:
        if debug:
            raise
        print(f"rawc {args.command}: error: out of memory; try a smaller size or --batch",
              file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - a bug: one line, the traceback on request
        if debug:
            raise
        print(f"rawc {args.command}: internal error: {type(exc).__name__}: {exc} (a bug in "
              "rawc; run with --debug for the traceback and report it)", file=sys.stderr)
        return INTERNAL_ERROR


if __name__ == "__main__":
    sys.exit(main())
