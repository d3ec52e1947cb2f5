"""Why the compiler refuses a program: one named reason per refusal, never a bare message.

Every refusal is a ``CompileRefusal`` (a ``ProgramError``, so the command line prints it as one
line and exits 2) carrying a ``Refusal``. ``rawc fuzz`` counts refusals by reason and checks
that the reason given is true of the program (``verify.fuzz.oracle``).
"""
from __future__ import annotations

import enum

from construct.language.program import ProgramError


class Refusal(enum.Enum):
    """The named reasons a valid program may still not compile."""

    NO_OPERATIONS = "the program has no operations"
    DIV_OVERWRITES_NUMERATOR = "a div writes its own numerator"
    SEQUENTIAL_GROUPS = "the sequential schedule cannot hold an explicit group of several ops"
    GROUP_NOT_READY = "an explicit group needs a value before it is ready"
    GROUP_LAYERNORM_CONFLICT = "an explicit group needs two LayerNorm scales in one MLP"
    DIVISOR_MAY_BE_ZERO = "a divisor's distance from zero is neither declared nor provable"
    DIVISOR_BELOW_DECLARED = "a divisor provably falls below its declared bound"
    OUT_OF_RANGE = "a constant or a magnitude bound is beyond what the weights can carry"
    LOOP_NOT_UNIFORM = "the loop's iterations do not lower to the same weights"
    GROUPED_GATED_DIVISION = "an explicit group holds a div, which the gated target spreads over layers"


class CompileRefusal(ProgramError):
    """A well-formed program this compiler does not compile, for ``reason``."""

    def __init__(self, reason: Refusal, message: str) -> None:
        super().__init__(message)
        self.reason = reason
