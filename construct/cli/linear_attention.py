"""The command line of the linear-attention constructions (``rawc`` dispatches here).

``rawc compile lsa-*``, ``rawc verify`` on a linear-attention checkpoint, ``rawc explain lsa-*``
and ``rawc list`` come through small hooks in ``construct.cli.main``; ``rawc train-lsa`` is
``verify.training.linear_attention``. The options are added to the shared parser only where it does not have
them already (``--d`` and ``--w0`` are shared with the RAW algorithms), so this module and the
RAW options can grow independently.
"""
from __future__ import annotations

import argparse

import numpy as np

OPTIONS: tuple[tuple[str, dict[str, object]], ...] = (
    ("--n", {"type": int, "help": "lsa-*: number of exemplars n (default 10)"}),
    ("--eta", {"help": "lsa-*: step size on the mean loss (default n/(n+d+1))"}),
    ("--steps", {"type": int, "help": "lsa-*: GD steps = layers (default 1)"}),
    ("--gamma", {"help": "lsa-gd-plus-plus: input step, x <- (I - gamma S) x (default 0.1)"}),
    ("--precond", {"help": "lsa-precond-gd: the matrix Gamma, rows 'a,b;c,d'"}),
    ("--sigma", {"help": "lsa-precond-gd: covariance of x, rows 'a,b;c,d' or diagonal 'a,b'"}),
    ("--formula", {"choices": ("ahn", "inverse"),
                   "help": "lsa-precond-gd: Gamma from Sigma, ahn (w ~ N(0, I)) or inverse "
                           "(eta* Sigma^-1, w ~ N(0, Sigma^-1))"}),
    ("--noise-std", {"help": "lsa-precond-gd: label noise std in the Gamma formulas"}),
    ("--momentum", {"help": "lsa-*: MoAttn beta in [0, 1) (default 0: plain block)"}),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the LSA options the parser does not have yet."""
    for flag, spec in OPTIONS:
        if flag not in parser._option_string_actions:  # noqa: SLF001 - only the lookup
            parser.add_argument(flag, **spec)  # type: ignore[arg-type]


def params_from_args(args: argparse.Namespace) -> dict[str, object]:
    get = lambda name: getattr(args, name, None)  # noqa: E731
    return {"d": get("d"), "n": get("n"), "eta": get("eta"), "steps": get("steps"),
            "gamma": get("gamma"), "Gamma": get("precond"), "Sigma": get("sigma"),
            "formula": get("formula"), "noise": get("noise_std"), "w0": get("w0"),
            "momentum": get("momentum")}


def resolve(name: str, args: argparse.Namespace):
    from construct.algorithms.linear_attention import get_lsa_algorithm

    algorithm = get_lsa_algorithm(name)
    given = {k: v for k, v in params_from_args(args).items()
             if v is not None and k in {p.name for p in algorithm.parameters}}
    return algorithm, algorithm.resolve(**given)


def describe(name: str, params: dict[str, object]) -> str:
    """The update the model runs, as text (the checkpoint's ``rawc.program``)."""
    d, steps = params["d"], params["steps"]
    lines = [f"# {name}: {steps} linear self-attention block(s), all equal; tokens [x, y], "
             "query [x_q, 0]; y-slot = label - w_k^T x; prediction = -(query y-slot)",
             f"embed: [x, y] -> [x, y - w0^T x], w0 = {params.get('w0', [0.0] * d)}"]
    if name == "lsa-gd":
        lines.append(f"block: y_t <- y_t - (eta/n) sum_i y_i x_i^T x_t, eta = {params['eta']:.17g}")
    elif name == "lsa-gd-plus-plus":
        lines += [f"block: y_t <- y_t - (eta/n) sum_i y_i x_i^T x_t, eta = {params['eta']:.17g}",
                  f"       x_t <- x_t - (gamma/n) sum_i x_i x_i^T x_t, gamma = "
                  f"{params['gamma']:.17g}"]
    else:
        lines.append(f"block: y_t <- y_t - (1/n) sum_i y_i x_i^T Gamma^T x_t, Gamma = "
                     f"{params['Gamma']}")
    if params["momentum"]:
        lines.append(f"momentum: + sum_(i<t) beta^(t-i) v_i, beta = {params['momentum']}")
    return "\n".join(lines) + "\n"


def compile_main(args: argparse.Namespace) -> int:
    from construct.targets.linear.block import save_lsa

    algorithm, params = resolve(args.name, args)
    model = algorithm.model(params)
    save_lsa(model, args.output, args.name, params, describe(args.name, params))
    shape = model.shape
    shown = {k: v for k, v in params.items() if k not in ("Sigma",) and v is not None}
    print(f"compiled {args.name} with " + ", ".join(f"{k}={_short(v)}" for k, v in shown.items()))
    print(f"  linear self-attention ({shape.attn_kind}, mask {shape.attn_mask}), width d_model = "
          f"{shape.d_model}, depth = {shape.n_layers} block(s) (one per step, all equal, each "
          f"stored), 1 head x d_head {shape.d_head}, no MLP, no LayerNorm")
    print("  exact: no approximation, only floating-point rounding (rawc verify checks 1e-12 "
          "relative in float64)")
    print(f"  wrote {args.output}")
    return 0


def _short(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list):
        return np.array2string(np.asarray(value), precision=4, separator=",").replace("\n", "")
    return str(value)


def list_lines() -> list[str]:
    from construct.algorithms.linear_attention import LSA_ALGORITHMS

    out = []
    for algorithm in LSA_ALGORITHMS.values():
        out.append(f"{algorithm.name}: {algorithm.summary}")
        flags = {"Gamma": "precond", "Sigma": "sigma", "noise": "noise-std"}
        for p in algorithm.parameters:
            default = "(see help)" if p.default is None else p.default
            out.append(f"    --{flags.get(p.name, p.name):<9} {p.help}; default {default}")
    return out


def explain_main(args: argparse.Namespace) -> int:
    from construct.teach.linear_attention import explain_page

    name, text = explain_page(args)
    out = getattr(args, "out", None)
    if not out:
        print(text, end="")
        return 0
    import os

    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, f"{name}.md")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    print(f"wrote {path}")
    return 0


def add_train_parser(sub) -> None:
    """The ``rawc train-lsa`` subcommand (run by ``verify.training.linear_attention.main``)."""
    p = sub.add_parser("train-lsa", help="train one linear self-attention layer; compare with "
                                         "the optimal lsa-precond-gd",
                       description="Train a one-layer linear self-attention model on in-context "
                                   "linear regression and compare it with the compiled "
                                   "lsa-precond-gd at the theoretical optimum (Mahankali et al.; "
                                   "Ahn et al.): learned effective matrix beside the predicted "
                                   "one, SPD relative to the task MSE. Exit 1 outside tolerance.")
    p.add_argument("--d", type=int, default=5, help="input dimension (default 5)")
    p.add_argument("--n", type=int, default=20, help="exemplars per prompt (default 20)")
    p.add_argument("--steps", type=int, default=3000, help="Adam steps (default 3000)")
    p.add_argument("--batch", type=int, default=512, help="prompts per step (default 512)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    p.add_argument("--noise", type=float, default=0.0, help="label noise std (default 0)")
    p.add_argument("--sigma", help="diagonal of the covariance of x, comma separated "
                                   "(default identity)")
    p.add_argument("--prior", choices=("identity", "inverse"), default="identity",
                   help="w ~ N(0, I) (optimum: Ahn's Gamma) or N(0, Sigma^-1) (eta* Sigma^-1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-tasks", type=int, default=20000, help="fresh prompts for the "
                                                                 "comparison (default 20000)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--spd-tol", type=float, default=1e-2, help="bound on SPD / MSE")
    p.add_argument("--g-tol", type=float, default=0.05, help="bound on max |G_eff - Gamma^T|")
    p.add_argument("-o", "--output", help="save the trained model as a checkpoint")

    def run(args: argparse.Namespace) -> int:
        from verify.training.linear_attention import main

        return main(args)

    p.set_defaults(run=run)
