"""``rawc train``, ``compare``, ``probe``, ``phases``, ``transience``: trained in-context
learners beside compiled ones (``verify.training``)."""
from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import math
import os
import re
import sys

DEVICES = ("auto", "cpu", "cuda")


def _positive(args: argparse.Namespace, *names: str) -> None:
    for name in names:
        value = getattr(args, name)
        if value is not None and not (value > 0 and math.isfinite(value)):
            raise ValueError(f"--{name.replace('_', '-')} must be a finite number > 0, got "
                             f"{value}")


def _non_negative(args: argparse.Namespace, *names: str) -> None:
    for name in names:
        value = getattr(args, name)
        if value is not None and not (value >= 0 and math.isfinite(value)):
            raise ValueError(f"--{name.replace('_', '-')} must be a finite number >= 0, got "
                             f"{value}")


def _can_draw() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def _refuse_plot_without_matplotlib(args: argparse.Namespace) -> None:
    if args.plot and not _can_draw():
        raise ValueError("--plot needs matplotlib: pip install 'rawc[pictures]'")


def _seed(args: argparse.Namespace) -> None:
    if args.seed < 0:
        raise ValueError(f"--seed must be >= 0, got {args.seed}")


RAY_ADDRESS = re.compile(r"(auto|(ray://)?[A-Za-z0-9_.\-]+:\d+)")


def _ray_address(args: argparse.Namespace) -> None:
    if args.ray_address is not None and not RAY_ADDRESS.fullmatch(args.ray_address):
        raise ValueError(f"--ray-address must be HOST:PORT, ray://HOST:PORT or auto, got "
                         f"{args.ray_address!r}")


def _model_args(p: argparse.ArgumentParser, steps: int) -> None:
    p.add_argument("--d", type=int, default=4, help="input dimension (default 4)")
    p.add_argument("--n", type=int, default=16, help="exemplars per prompt (default 16)")
    p.add_argument("--layers", type=int, default=2, help="transformer blocks (default 2)")
    p.add_argument("--d-model", type=int, default=64, help="residual width (default 64)")
    p.add_argument("--heads", type=int, default=4, help="attention heads (default 4)")
    p.add_argument("--d-mlp", type=int, default=64, help="MLP width (default 64)")
    p.add_argument("--noise", type=float, default=0.0,
                   help="label noise sigma (default 0; w ~ N(0, I), so Bayes = ridge(sigma^2))")
    p.add_argument("--steps", type=int, default=steps, help=f"AdamW steps (default {steps})")
    p.add_argument("--batch", type=int, default=128, help="prompts per step (default 128)")
    p.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (default 3e-3)")
    p.add_argument("--weight-decay", type=float, default=0.0,
                   help="AdamW's decoupled L2 weight decay (default 0)")
    p.add_argument("--seed", type=int, default=0, help="model and data seed (default 0)")


def _config(args: argparse.Namespace, **changes: object):
    from verify.training.icl import ICLConfig

    for name in ("d", "n", "layers", "d_model", "heads", "d_mlp", "steps", "batch"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    _seed(args)
    _positive(args, "lr")
    _non_negative(args, "noise", "weight_decay")
    values = dict(d=args.d, n=args.n, layers=args.layers, d_model=args.d_model,
                  heads=args.heads, d_mlp=args.d_mlp, noise=args.noise, steps=args.steps,
                  batch=args.batch, lr=args.lr, weight_decay=args.weight_decay, seed=args.seed)
    return ICLConfig(**{**values, **changes})


def _train(args: argparse.Namespace) -> int:
    from construct.model.checkpoint import save_checkpoint
    from verify.devices import resolve_device
    from verify.training.icl import new_state, train, trained_model, training_record

    kind = {"softmax": "softmax", "linear": "linear", "momentum": "linear-momentum"}
    momentum = args.momentum if args.momentum is not None else (
        0.5 if args.attention == "momentum" else 0.0)
    config = _config(args, device=resolve_device(args.device), attention=kind[args.attention],
                     momentum=momentum)
    if config.device == "cpu":
        import torch

        torch.set_num_threads(1)  # small matrices: a second thread only contends
    if args.save_every < 1:
        raise ValueError(f"--save-every must be >= 1, got {args.save_every}")
    resume = f"{args.output}.train-state"
    state = new_state(config)
    if args.resume and os.path.exists(resume):
        state.load(resume)
        print(f"resuming {resume} at step {state.step} of {config.steps}", file=sys.stderr)
    state = train(config, state, resume_path=resume, save_every=args.save_every)
    save_checkpoint(trained_model(config, state), args.output, "trained-icl",
                    {"d": config.d, "n": config.n}, training_record(config, state))
    os.remove(resume)
    first, last = state.losses[0][1], state.losses[-1][1]
    print(f"trained {config.layers}-layer {config.attention.value} transformer, d = {config.d}, "
          f"n = {config.n}, noise {config.noise:g}: loss {first:.4f} (step {state.losses[0][0]})"
          f" -> {last:.4f} (step {state.step}) in {state.seconds:.1f} s on {config.device}")
    print(f"  wrote {args.output} (compare it: rawc compare {args.output})")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from verify.training.compare import compare_checkpoint, plot, table

    _positive(args, "alpha")
    _non_negative(args, "noise")
    _refuse_plot_without_matplotlib(args)
    if args.tasks < 2:
        raise ValueError(f"--tasks must be >= 2, got {args.tasks}")
    _seed(args)
    lams = _tuple(args.lam, float, "--lam")
    if not all(v > 0 for v in lams):
        raise ValueError(f"--lam must hold penalties > 0, got {args.lam!r}")
    found = [compare_checkpoint(path, args.tasks, args.noise, lams, args.alpha, args.seed)
             for path in args.checkpoints]
    if args.json:
        print(json.dumps([{**dataclasses.asdict(c), "nearest": c.nearest} for c in found],
                         indent=2))
    else:
        print(table(found))
    if args.plot:
        plot(found, args.plot)
        print(f"  wrote {args.plot}")
    return 0


def _probe(args: argparse.Namespace) -> int:
    from verify.training.probe import plot, probe_checkpoint, table

    _non_negative(args, "noise")
    _seed(args)
    _refuse_plot_without_matplotlib(args)
    if args.tasks < 16:
        raise ValueError(f"--tasks must be >= 16 (half fit, half score), got {args.tasks}")
    result = probe_checkpoint(args.checkpoint, args.tasks, args.prefix, args.noise, args.seed,
                              mlp=not args.linear_only)
    print(table(result))
    if args.plot:
        plot(result, args.plot)
        print(f"  wrote {args.plot}")
    return 0


def _tuple(text: str, kind, option: str) -> tuple:
    try:
        values = tuple(kind(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"{option} must be a comma-separated list, got {text!r}") from None
    if not values or not all(v >= 0 and math.isfinite(v) for v in values):
        raise ValueError(f"{option} must hold finite numbers >= 0, got {text!r}")
    return values


def _phases(args: argparse.Namespace) -> int:
    from verify.training import phases

    if args.record:
        return _replay(args, "phases")
    _ray_address(args)
    _positive(args, "alpha")
    if args.tasks < 2:
        raise ValueError(f"--tasks must be >= 2, got {args.tasks}")
    depths = _tuple(args.depths, int, "--depths")
    if min(depths) < 1:
        raise ValueError(f"--depths must be >= 1, got {args.depths}")
    noises = _tuple(args.noises, float, "--noises")
    base = _config(args)
    points = phases.run_grid(base, depths, noises, args.out, args.tasks, args.alpha,
                             args.ray_address)
    print(phases.table(points))
    _save_run(args, "phases", points, " and one checkpoint per point")
    return 0


def _transience(args: argparse.Namespace) -> int:
    from verify.training import transience

    if args.record:
        return _replay(args, "transience")
    _ray_address(args)
    _seed(args)
    for name in ("dim", "classes", "labels", "context", "burst", "layers", "d_model", "heads",
                 "steps", "batch", "eval_every"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if not args.burst < args.context:
        raise ValueError(f"--burst must be below --context ({args.context}), got {args.burst}")
    if args.labels < 2 or args.classes < 3:
        raise ValueError("--labels must be >= 2 and --classes >= 3")
    _positive(args, "lr", "l2")
    _non_negative(args, "within")
    fields = {f.name for f in dataclasses.fields(transience.TransienceConfig)}
    config = transience.TransienceConfig(**{k: v for k, v in vars(args).items() if k in fields})
    runs = transience.run_pair(config, args.l2, args.ray_address)
    print(transience.report(runs))
    _save_run(args, "transience", runs)
    return 0


def _save_run(args: argparse.Namespace, name: str, result: list, more: str = "") -> None:
    """A finished run's record in ``--out``, and its picture where matplotlib is installed."""
    from verify.training.records import RUNS

    run = RUNS[name]
    written = [os.path.join(args.out, run.record)]
    run.write(result, written[0])
    if _can_draw():
        written.append(os.path.join(args.out, run.picture))
        run.draw(result, written[-1])
    print(f"  wrote {' and '.join(written)}{more}")


def _replay(args: argparse.Namespace, name: str) -> int:
    """``--from RECORD``: the table and the picture of a stored run, without training."""
    from verify.training.records import RUNS

    run = RUNS[name]
    try:
        record = run.read(args.record)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"--from {args.record}: not a readable `rawc {name}` record "
                         f"({exc})") from None
    print(run.text(record))
    if args.out_given and _can_draw():
        os.makedirs(args.out, exist_ok=True)
        path = os.path.join(args.out, run.picture)
        run.draw(record, path)
        print(f"  wrote {path}")
    return 0


def _record_args(p: argparse.ArgumentParser, name: str) -> None:
    p.add_argument("--from", dest="record", metavar="RECORD",
                   help=f"print the table of a stored run ({name}.json) instead of training; "
                        f"with --out, draw its picture there (how `rawc docs` regenerates the "
                        f"trained-vs-compiled page)")


class _OutAction(argparse.Action):
    """``--out``, remembering that it was given (``--from`` draws only when it is)."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        setattr(namespace, self.dest, values)
        namespace.out_given = True


def add_learner_parsers(sub) -> None:
    p = sub.add_parser("train", help="train a causal transformer on in-context linear "
                                     "regression; write a trained checkpoint",
                       description="Train a standard causal transformer (pre-LN blocks, GeLU "
                                   "MLP, learned positions) on in-context linear regression in "
                                   "the compiled checkpoints' token format; write a "
                                   "rawc.checkpoint/1 file marked trained, with its training "
                                   "record. Deterministic per --seed; Ctrl-C keeps OUTPUT."
                                   "train-state and --resume continues from it.")
    _model_args(p, steps=3000)
    p.add_argument("--attention", choices=("softmax", "linear", "momentum"), default="softmax",
                   help="softmax (default), causal linear attention, or linear attention with "
                        "Dai et al.'s momentum (MoAttn)")
    p.add_argument("--momentum", type=float, help="MoAttn's beta for --attention momentum "
                                                  "(default 0.5)")
    p.add_argument("--device", choices=DEVICES, default="cpu", help="cpu (default), cuda or auto")
    p.add_argument("--resume", action="store_true", help="continue OUTPUT.train-state if present")
    p.add_argument("--save-every", type=int, default=500, help="steps between resume states")
    p.add_argument("-o", "--output", required=True, help="checkpoint path to write")
    p.set_defaults(run=_train)

    p = sub.add_parser("compare", help="SPD/MSPD of checkpoints against OLS, ridge, GD, SGD "
                                       "and Bayes at every prefix")
    p.add_argument("checkpoints", nargs="+", metavar="CHECKPOINT")
    p.add_argument("--tasks", type=int, default=2048, help="fresh tasks (default 2048)")
    p.add_argument("--noise", type=float, help="label noise sigma (default: a trained "
                                               "checkpoint's own, else 0)")
    p.add_argument("--lam", default="0.1,1", help="ridge penalties (default 0.1,1; the Bayes "
                                                  "sigma^2 is added)")
    p.add_argument("--alpha", type=float, default=0.05, help="GD / SGD step (default 0.05)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plot", help="write SPD against the prefix to this PNG")
    p.add_argument("--json", action="store_true", help="every number (SPD per prefix, ILWD per "
                                                       "sampled prefix, R^2) as JSON")
    p.set_defaults(run=_compare)

    p = sub.add_parser("probe", help="linear and MLP probes for w and X^T Y at every layer")
    p.add_argument("checkpoint", metavar="CHECKPOINT")
    p.add_argument("--tasks", type=int, default=2048, help="fresh tasks, half to fit, half to "
                                                           "score (default 2048)")
    p.add_argument("--prefix", type=int, help="exemplars before the query (default n)")
    p.add_argument("--noise", type=float, help="label noise sigma (default as compare)")
    p.add_argument("--linear-only", action="store_true", help="skip the MLP probes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plot", help="write R^2 per layer to this PNG")
    p.set_defaults(run=_probe)

    p = sub.add_parser("phases", help="Akyürek Fig. 3 at CPU scale: depth x noise grid on Ray")
    _model_args(p, steps=3000)
    p.add_argument("--depths", default="1,2,4,8", help="layers of the grid (default 1,2,4,8)")
    p.add_argument("--noises", default="0,0.1,0.5", help="noise sigmas (default 0,0.1,0.5)")
    p.add_argument("--tasks", type=int, default=2048, help="comparison tasks (default 2048)")
    p.add_argument("--alpha", type=float, default=0.05, help="GD / SGD step (default 0.05)")
    p.add_argument("--ray-address", help="join this Ray cluster (default: a local instance)")
    p.add_argument("--out", default="phases", action=_OutAction,
                   help="folder for the table, map, checkpoints (default phases)")
    _record_args(p, "phases")
    p.set_defaults(run=_phases, out_given=False)

    p = sub.add_parser("transience", help="Singh et al.'s transient ICL, without and with L2, "
                                          "on Ray")
    for name, default, text in (("dim", 32, "item dimension"), ("classes", 256, "training "
                                "classes"), ("labels", 16, "labels"), ("context", 8, "context "
                                "pairs"), ("burst", 4, "context items of the query's class"),
                                ("layers", 2, "blocks"), ("d-model", 64, "residual width"),
                                ("heads", 4, "heads"), ("steps", 20000, "steps"),
                                ("batch", 128, "sequences per step"),
                                ("eval-every", 500, "steps between evaluations"),
                                ("seed", 0, "seed")):
        p.add_argument(f"--{name}", type=int, default=default, help=f"{text} (default {default})")
    p.add_argument("--within", type=float, default=0.1,
                   help="item noise relative to its class mean (default 0.1; larger makes "
                        "memorising harder)")
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate (default 1e-3)")
    p.add_argument("--l2", type=float, default=0.01, help="weight decay of the second run "
                                                          "(default 0.01)")
    p.add_argument("--ray-address", help="join this Ray cluster (default: a local instance)")
    p.add_argument("--out", default="transience", action=_OutAction,
                   help="folder for the curves (default transience)")
    _record_args(p, "transience")
    p.set_defaults(run=_transience, out_given=False)
