"""``rawc prove``: the program proof, then the lemmas its lowering rests on, for a classroom.

``rawc prove NAME`` proves the named algorithm's program (``--listing``: the paper's own
listing) equal to its closed form (``verify.proofs.programs``) and derives every lowering trick that
program uses (``verify.proofs.lemmas``); ``rawc prove lemmas`` derives all of them, with the tanh
GeLU variants. Exit status 0 when everything is proved, 1 otherwise. ``report`` gives the
same text without timings for the docs, which must not change from run to run.
"""
from __future__ import annotations

import argparse
import time

from construct.algorithms.family import Family
from construct.algorithms.registry import algorithm_params, get_algorithm, get_program_algorithm
from verify.proofs import lemmas
from verify.proofs.programs import STATEMENTS, prove_program

PROVABLE = (*STATEMENTS, "lemmas")


def report(name: str, params: dict[str, object], *, listing: bool = False,
           times: bool = True, gated: bool = False) -> tuple[str, bool]:
    """``(printout, proved)`` of ``rawc prove name``."""
    started = time.perf_counter()
    parts: list[str] = []
    if name == "lemmas":
        derivations = lemmas.all_derivations()
        proved = True
    else:
        if name not in STATEMENTS:
            raise ValueError(f"no proof for {name!r}; provable: {', '.join(PROVABLE)}")
        algorithm = get_program_algorithm(name)
        resolved = algorithm.resolve(**params)
        program = algorithm.program(resolved, listing=listing)
        proof = prove_program(name, resolved, program)
        parts.append(proof.render(times))
        derivations = lemmas.derivations_for({type(op).__name__.lower() for op in program.ops},
                                             gated)
        proved = proof.proved
    parts += [derivation.render(times) for derivation in derivations]
    proved = proved and all(d.holds for d in derivations)
    verdict = "all proved" if proved else "NOT PROVED"
    took = f" in {time.perf_counter() - started:.2f} s" if times else ""
    return "\n\n".join(parts) + f"\n\n{verdict}{took}\n", proved


def main(args: argparse.Namespace) -> int:
    if args.name == "lemmas":
        text, proved = report("lemmas", {})
    else:
        algorithm = get_algorithm(args.name)
        if algorithm.family is Family.LINEAR_ATTENTION:
            from verify.proofs.linear_attention import main as linear_main
            return linear_main(args, algorithm.resolve(**algorithm_params(args)))
        text, proved = report(args.name, algorithm_params(args), listing=args.listing,
                              gated=args.target == "gated")
    print(text, end="")
    return 0 if proved else 1
