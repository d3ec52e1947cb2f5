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
    checkpoint = load_checkpoint(args.path)
    if checkpoint.shape.attn_kind.is_linear:
        return linear_attention.main(args, checkpoint)
    return runner.main(args, checkpoint)
