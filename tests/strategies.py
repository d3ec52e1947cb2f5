"""Hypothesis strategies shared by the tests: random valid RAW programs, built by construction.

``random_programs()`` draws ``d`` (1..3) and a number of steps (1..8) first, then builds the
program step by step with ``ProgramBuilder``; every step is one of

- ``mov``: any slot, read through one of ``READ_MAPS``;
- ``aff``: of one or two distinct slots, into a slot of size ``d`` or 1, weights and an
  optional bias in ``{-1, -3/4, ..., 1}``;
- ``mul``: the dot of two size-``d`` slots, or a size-``d`` slot times a scalar;
- ``div``: ``sq = s . s; den = 1 + sq; q = num / |den|`` with ``min_abs = 1`` (so ``|den| >= 1``
  holds for every input); ``q`` is never ``num`` (the compiler refuses that, see
  ``test_fusion.test_div_cannot_overwrite_its_numerator``).

Every slot has size ``d`` or 1. A destination is a new slot or, sometimes, an existing slot of
the same size (the inputs ``x`` and ``y`` included), so writes after reads and the reuse of rows
are exercised. The output is the last result if it is a scalar, else its dot with itself.
"""
from __future__ import annotations

from fractions import Fraction

from hypothesis import strategies as st

from construct.language.builder import ProgramBuilder, column, mean_of, prev
from construct.language.program import Program

READ_MAPS = (prev(), prev(k=2), prev(on="y"), prev(on="x"), column(0), mean_of("x"))
KINDS = ("mov", "aff", "mul", "div")

coefficients = st.integers(-4, 4).map(lambda k: Fraction(k, 4))


@st.composite
def random_programs(draw, max_d: int = 3, max_steps: int = 8) -> Program:
    d = draw(st.integers(1, max_d), label="d")
    n_steps = draw(st.integers(1, max_steps), label="steps")
    b = ProgramBuilder("random", d)
    sizes: dict[str, int] = {b.x: d, b.y: 1}
    counter = [0]

    def destination(size: int, reuse_weight: int = 1) -> str:
        """A new slot, or (about one time in three) an existing one of this size."""
        same = sorted(name for name, s in sizes.items() if s == size)
        if draw(st.integers(0, 2)) < reuse_weight:
            return draw(st.sampled_from(same))
        counter[0] += 1
        name = f"s{counter[0]}"
        sizes[name] = size
        return name

    def any_slot() -> str:
        return draw(st.sampled_from(sorted(sizes)))

    def slot_of(size: int) -> str:
        return draw(st.sampled_from(sorted(n for n, s in sizes.items() if s == size)))

    def matrix(rows: int, cols: int) -> list[list[Fraction]]:
        return [[draw(coefficients) for _ in range(cols)] for _ in range(rows)]

    last = b.y
    for _ in range(n_steps):
        kind = draw(st.sampled_from(KINDS))
        if kind == "mov":
            src = any_slot()
            read = draw(st.sampled_from(READ_MAPS))
            last = b.mov(destination(sizes[src]), src, read)
        elif kind == "aff":
            names = sorted(sizes)
            n_terms = draw(st.integers(1, min(2, len(names))))
            srcs = draw(st.lists(st.sampled_from(names), min_size=n_terms, max_size=n_terms,
                                 unique=True))
            out = draw(st.sampled_from(sorted({d, 1})))
            terms = {src: matrix(out, sizes[src]) for src in srcs}
            bias = [draw(coefficients) for _ in range(out)] if draw(st.booleans()) else None
            last = b.aff(destination(out), terms, bias=bias, rows=out)
        elif kind == "mul":
            if draw(st.booleans()):  # dot of two vectors
                left, right = slot_of(d), slot_of(d)
                last = b.mul(destination(1), left, right, 1, d, 1)
            else:  # vector times scalar
                left, right = slot_of(d), slot_of(1)
                last = b.mul(destination(d), left, right, d, 1, 1)
        else:
            num, s = any_slot(), any_slot()
            sq = b.mul(destination(1), s, s, 1, sizes[s], 1)
            den = b.aff(destination(1), {sq: 1}, bias=[1], rows=1)
            quotient = destination(sizes[num])
            if quotient == num:  # a div cannot overwrite its numerator (ScheduleError)
                counter[0] += 1
                quotient = f"s{counter[0]}"
                sizes[quotient] = sizes[num]
            last = b.div(quotient, num, den, min_abs=1)
    if sizes[last] != 1:
        last = b.mul(destination(1, reuse_weight=0), last, last, 1, sizes[last], 1)
    return b.build(output=last)
