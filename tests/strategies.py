"""Random programs for the passes' property tests: the fuzz generator's
(``verify.fuzz.generator.programs``), narrowed to what the passes promise things about."""
from __future__ import annotations

import dataclasses

from construct.compiler.refusal import CompileRefusal
from construct.compiler.schedule import build_schedule
from construct.language.program import Program
from construct.model.assemble import compile_program
from verify.fuzz.generator import programs

MODES = ("packed", "sequential")


def _accepted(program: Program) -> bool:
    """The promises are about what the compiler accepts: drop a program a schedule refuses (a
    div into its numerator) or whose divisor floor cannot be proven."""
    try:
        for mode in MODES:
            build_schedule(program, mode)
        compile_program(program)
    except CompileRefusal:
        return False
    return True


def random_programs():
    """Short programs, loop written out and layer groups left to the schedule (explicit groups
    are the fuzz oracle's concern), minus the ones the compiler refuses."""
    return programs(deep=False).map(
        lambda p: dataclasses.replace(p.unrolled(), groups=None)).filter(_accepted)
