"""``rawc train-lsa``: train one linear self-attention layer (``verify.training``)."""
from __future__ import annotations

import argparse


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
        for option in ("d", "n", "steps", "batch", "eval_tasks"):
            if getattr(args, option) < 1:
                raise ValueError(f"--{option.replace('_', '-')} must be >= 1, got "
                                 f"{getattr(args, option)}")
        if not args.lr > 0:
            raise ValueError(f"--lr must be > 0, got {args.lr}")
        if args.seed < 0:
            raise ValueError(f"--seed must be >= 0, got {args.seed}")
        if not 0 <= args.noise < float("inf"):
            raise ValueError(f"--noise (a standard deviation) must be a finite number >= 0, "
                             f"got {args.noise}")
        for option in ("spd_tol", "g_tol"):
            if not 0 < getattr(args, option) < float("inf"):
                raise ValueError(f"--{option.replace('_', '-')} must be a finite number > 0, "
                                 f"got {getattr(args, option)}")
        from verify.training.linear_attention import main

        return main(args)

    p.set_defaults(run=run)
