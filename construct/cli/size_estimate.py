"""The size of a compile, estimated before it starts, from a quick model.

A large ``--d`` or ``--n`` can take minutes and more memory than the machine has (``rawc
compile gd --d 10000`` ran 278 s, then died of a MemoryError). Before such a compile, rawc
compiles the same algorithm at a few small sizes (pilots), fits ``log y = c + sum_p a_p log
v_p`` to the dense parameter count and the time (``v_p``: the size parameters ``d``, ``n``
that are large) through the largest pilots it can afford, and extrapolates: a guide to the
order of magnitude (gd at d = 2000: 3.3e8 parameters and 51 s measured). A compile
whose estimated working memory exceeds what the machine has free is refused, naming the size.
"""
from __future__ import annotations

import dataclasses
import math
import time

# A size parameter is "large" past these; its pilots start at these bases and double.
THRESHOLDS = {"d": 16, "n": 64}
BASES = {"d": 4, "n": 16}
PILOT_SECONDS = 0.3  # a pilot sweep stops growing once a pilot takes this long
# Bytes held per dense parameter while compiling (measured: gd at d = 1000 peaks at 1.4 GB for
# 8.3e7 parameters, at d = 2000 at 4.8 GB): the float64 build, its torch copy, the file buffer.
WORKING_BYTES = 16


@dataclasses.dataclass(frozen=True)
class SizeEstimate:
    parameters: float
    seconds: float
    pilots: tuple[dict[str, int], ...]

    @property
    def working_bytes(self) -> float:
        return self.parameters * WORKING_BYTES

    def line(self) -> str:
        largest = {k: max(p[k] for p in self.pilots) for k in self.pilots[0]}
        sizes = ", ".join(f"{k} <= {v}" for k, v in largest.items())
        return (f"estimate: about {self.parameters:.2g} dense parameters "
                f"({_bytes(self.working_bytes)} while compiling) and {_seconds(self.seconds)} "
                f"(power laws through {len(self.pilots)} pilot compiles at {sizes})")


def _bytes(count: float) -> str:
    for unit, size in (("TB", 2 ** 40), ("GB", 2 ** 30), ("MB", 2 ** 20)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count / 2 ** 10:.0f} kB"


def _seconds(value: float) -> str:
    return f"{value / 60:.0f} min" if value >= 120 else f"{value:.0f} s"


def available_bytes() -> float | None:
    """Free memory as the kernel reports it (``MemAvailable``), or None where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def large_sizes(params: dict[str, object]) -> dict[str, int]:
    return {name: int(params[name]) for name, threshold in THRESHOLDS.items()
            if name in params and int(params[name]) > threshold}


def _exponent(points: list[tuple[int, tuple[float, float]]], k: int) -> float:
    """The local power of measure ``k`` between two pilots."""
    (v0, y0), (v1, y1) = points
    return math.log(y1[k] / y0[k]) / math.log(v1 / v0)


def estimate(build, params: dict[str, object]) -> SizeEstimate | None:
    """``build(params) -> (dense parameter count)``, timed at the pilots; None when no size
    parameter is large (small compiles are not worth the pilots).

    Each large parameter is swept on its own (the others at their bases), doubling from its
    base while a pilot takes under ``PILOT_SECONDS`` and stays under half the request; the
    last two pilots give its exponent (the largest carry the growth: at the smallest the fixed
    rows dominate), the parameter count's rounded up to the degree it is rising to, and the
    growths multiply."""
    large = large_sizes(params)
    if not large:
        return None
    base = {name: min(BASES[name], value) for name, value in large.items()}

    def run(pilot: dict[str, int]) -> tuple[float, float]:
        started = time.perf_counter()
        count = build({**params, **pilot})
        return float(count), max(time.perf_counter() - started, 1e-3)

    at_base = run(base)
    pilots = [dict(base)]
    growth = [1.0, 1.0]
    for name, wanted in large.items():
        points = [(base[name], at_base)]
        while points[-1][1][1] < PILOT_SECONDS and 2 * points[-1][0] <= wanted / 2:
            value = 2 * points[-1][0]
            pilot = {**base, name: value}
            pilots.append(pilot)
            points.append((value, run(pilot)))
        if len(points) < 2:
            continue
        v1, y1 = points[-1]
        for k in range(2):
            exponent = _exponent(points[-2:], k)
            if k == 0 and len(points) > 2 and exponent > _exponent(points[-3:-1], 0):
                # A parameter count is a polynomial in the sizes (dense blocks of polynomial
                # widths), so its local exponent rises to an integer degree: the last one
                # alone underestimates (gd d = 512 from pilots to 64: 1.81, 24 % short).
                exponent = math.ceil(exponent - 1e-9)
            growth[k] *= y1[k] / at_base[k] * (wanted / v1) ** max(exponent, 0.0)
    return SizeEstimate(at_base[0] * growth[0], at_base[1] * growth[1], tuple(pilots))


class TooLarge(ValueError):
    """A compile that cannot fit: a usage error (exit 2), not Python's MemoryError."""


def check_fits(name: str, result: SizeEstimate | None, available: float | None) -> None:
    """Refuse a compile whose working memory would exceed ``available``."""
    if result is None or available is None or result.working_bytes <= available:
        return
    raise TooLarge(f"{name} would hold about {result.parameters:.2g} dense parameters "
                   f"({_bytes(result.working_bytes)} while compiling), more than the "
                   f"{_bytes(available)} of memory available; try a smaller size")
