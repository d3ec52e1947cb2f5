"""What ``rawc compile`` accepts beyond an algorithm's parameters: the lowering choices, each
refused where it does not apply, and the size check before a large compile."""
from __future__ import annotations

import argparse
import sys

import numpy as np

from construct.algorithms.family import Family

LOWERING_OPTIONS = {"schedule": "packed", "form": "stacked", "target": "paper",
                    "gelu_product": "polarized",
                    "position_code": None}  # None: the one the context length calls for


def check_size(algorithm, params: dict[str, object], config, args: argparse.Namespace) -> None:
    """Before a compile at a large ``--d`` or ``--n``: its estimated size and time, refused
    when it cannot fit in the memory available (``construct.cli.size_estimate``)."""
    from construct.cli import size_estimate

    def build(pilot: dict[str, object]) -> int:
        given = {k: v for k, v in pilot.items() if k != "w0"}
        resolved = algorithm.resolve(**given)
        if hasattr(algorithm, "effective"):
            resolved = algorithm.effective(resolved, config.input_bound)
        built = algorithm.construct(resolved, config.replace(n_ctx=max(
            config.n_ctx, 2 * int(resolved.get("n", 1)) + 2)))
        return sum(int(np.asarray(w).size) for w in built.weights.values())

    result = size_estimate.estimate(build, params)
    if result is None:
        return
    if result.seconds >= 2 or result.working_bytes >= 2 ** 28:  # a long or large compile
        print(f"rawc compile: {result.line()}", file=sys.stderr, flush=True)
    size_estimate.check_fits(f"{args.name} at " + ", ".join(
        f"{k} = {v}" for k, v in size_estimate.large_sizes(params).items()),
        result, size_estimate.available_bytes())


def lowering_choices(args: argparse.Namespace, name: str, family: Family) -> dict[str, str]:
    """``--schedule``, ``--form``, ``--target``, ``--gelu-product``, ``--position-code``,
    defaulted; one given where
    it does not apply is refused, not ignored."""
    given = {option: value for option in LOWERING_OPTIONS
             if (value := getattr(args, option, None)) is not None}
    if family is Family.LINEAR_ATTENTION and given:
        option = next(iter(given)).replace("_", "-")
        raise ValueError(f"--{option} does not apply to {name}: a linear-attention "
                         "construction has no MLP, position code, schedule or repeated stage "
                         "to lower")
    if given.get("target") == "gated" and "gelu_product" in given:
        raise ValueError(f"--gelu-product {given['gelu_product']} does not apply to --target "
                         "gated: its products are exact (the rule is the paper target's)")
    return {**LOWERING_OPTIONS, **given}


def refuse_shared_without_loop(args: argparse.Namespace, name: str, program) -> None:
    if getattr(args, "form", None) == "shared" and program.loop is None:
        raise ValueError(f"--form shared does not apply to {name}: it has no repeated stage "
                         "to store once (sgd, ridge and programs with `repeat` do)")
