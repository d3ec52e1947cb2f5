"""``rawc verify PATH``: load the checkpoint once, check the options, run its family's checks.

A compiled program's checkpoint (softmax attention) is checked op by op and layer by layer
against the interpreter and the closed form (``runner``); a linear-attention checkpoint
against its block definition, the closed form, the dual form and the momentum recurrence
(``linear_attention``). The choice follows the checkpoint's ``attn_kind``, a typed field of
its config.
"""
from __future__ import annotations

import argparse

from construct.model.checkpoint import load_checkpoint
from verify.check import linear_attention, runner


def main(args: argparse.Namespace) -> int:
    if args.trials < 1:
        raise ValueError(f"--trials must be >= 1, got {args.trials}")
    if args.batch is not None and args.batch < 1:
        raise ValueError(f"--batch must be >= 1, got {args.batch}")
    if args.metric_tasks < 1:
        raise ValueError(f"--metric-tasks must be >= 1, got {args.metric_tasks}")
    if args.tol is not None and not 0 < args.tol < float("inf"):
        raise ValueError(f"--tol must be a positive finite number, got {args.tol}")
    if args.seed < 0:
        raise ValueError(f"--seed must be >= 0, got {args.seed}")
    if not 0 <= args.noise < float("inf"):
        raise ValueError(f"--noise (a standard deviation) must be a finite number >= 0, got "
                         f"{args.noise}")
    if not 0 < args.scale < float("inf"):
        raise ValueError(f"--scale must be a finite number > 0, got {args.scale}")
    checkpoint = load_checkpoint(args.path)
    if checkpoint.trained and not checkpoint.claim:
        raise ValueError(f"{args.path} holds trained weights "
                         f"({checkpoint.algorithm.get('name')}) that claim no algorithm, so "
                         "there is nothing to verify them against; compare them with the "
                         f"reference learners: rawc compare {args.path}")
    if checkpoint.shape.attn_kind.is_linear:
        return linear_attention.main(args, checkpoint)
    return runner.main(args, checkpoint)
