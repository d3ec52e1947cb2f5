"""``rawc prove``: the program proof, then the lemmas its lowering rests on, for a classroom.

``rawc prove NAME`` proves the named algorithm's program (``--listing``: the paper's own
listing) equal to its closed form (``verify.proofs``) and derives every lowering trick that
program uses (``verify.lemmas``); ``rawc prove lemmas`` derives all of them, with the tanh
GeLU variants. Exit status 0 when everything is proved, 1 otherwise.
"""
from __future__ import annotations

import argparse
import time

from construct.algorithms import get_algorithm
from verify import lemmas
from verify.proofs import STATEMENTS, prove_program


def _op_kinds(program: object) -> set[str]:
    return {type(op).__name__.lower() for op in program.ops}


def main(args: argparse.Namespace, params: dict[str, object]) -> int:
    started = time.perf_counter()
    if args.name == "lemmas":
        derivations = lemmas.all_derivations()
        proved = True
    else:
        if args.name not in STATEMENTS:
            raise ValueError(f"no proof for {args.name!r}; provable: "
                             f"{', '.join([*STATEMENTS, 'lemmas'])}")
        algorithm = get_algorithm(args.name)
        resolved = algorithm.resolve(**params)
        program = algorithm.program(resolved, listing=args.listing)
        proof = prove_program(args.name, resolved, program)
        print(proof.render())
        print()
        derivations = lemmas.derivations_for(_op_kinds(program))
        proved = proof.proved
    for derivation in derivations:
        print(derivation.render())
        print()
    proved = proved and all(d.holds for d in derivations)
    print(f"{'all proved' if proved else 'NOT PROVED'} in {time.perf_counter() - started:.2f} s")
    return 0 if proved else 1
