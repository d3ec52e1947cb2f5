"""What every named algorithm shares: its parameters, exact coefficients, fixed defaults.

A ``Parameter`` names one value an algorithm takes, its default and the command-line flag
that sets it (``rawc compile NAME --flag VALUE``); text from the command line is parsed by the
algorithm's own ``resolve``, so one flag serves every algorithm that takes the parameter.
"""
from __future__ import annotations

import dataclasses
from fractions import Fraction

from construct.language.program import ProgramError, to_fraction


@dataclasses.dataclass(frozen=True)
class Parameter:
    name: str
    kind: type
    default: object
    help: str
    flag: str | None = None  # the command-line flag, when it is not ``--name``

    @property
    def option(self) -> str:
        return "--" + (self.flag or self.name)


def default_w0(d: int) -> list[Fraction]:
    """A fixed, data-independent start ``w0`` (alternating signs, shrinking): ``(-1)^k / (k+1)``."""
    return [Fraction((-1) ** k, k + 1) for k in range(d)]


def start_weights(d: int, w0: object) -> list[Fraction]:
    """``w0`` as ``d`` exact values: None gives ``default_w0``; a scalar repeats; text is
    comma separated (``"1/2,-1"``)."""
    if w0 is None:
        return default_w0(d)
    if isinstance(w0, str):
        w0 = [v for v in w0.split(",")]
    values = [to_fraction(v) for v in (w0 if isinstance(w0, (list, tuple)) else [w0] * d)]
    if len(values) != d:
        raise ProgramError(f"w0 has {len(values)} entries, d = {d}")
    return values


def upper_fraction(value: float) -> Fraction:
    """A short fraction no smaller than ``value`` (declared bounds must not undercut)."""
    guess = Fraction(value * (1 + 1e-12)).limit_denominator(10 ** 6)
    return guess if guess >= value else guess + Fraction(1, 10 ** 6)


def given_or_default(algorithm: str, parameters: tuple[Parameter, ...],
                     given: dict[str, object], flags: dict[str, str] | None = None
                     ) -> dict[str, object]:
    """Every parameter's value, unparsed: the given one, else its default. A given name the
    algorithm does not take is an error that names its option (``flags``: the options of
    other algorithms' parameters, by name) and lists the options it takes (None means not
    given)."""
    known = {p.name for p in parameters}
    unknown = sorted(k for k, v in given.items() if k not in known and v is not None)
    if unknown:
        flags = flags or {}
        named = [flags.get(k, "--" + k.replace("_", "-")) for k in unknown]
        raise ProgramError(f"{algorithm} does not take {', '.join(named)}; it takes "
                           f"{', '.join(sorted(p.option for p in parameters))}")
    return {p.name: given[p.name] if given.get(p.name) is not None else p.default
            for p in parameters}
