"""The program generator reaches every feature issue 16 names, and every draw is valid."""
from __future__ import annotations

import collections

from hypothesis import HealthCheck, given, seed, settings

from construct.language.parser import parse_program
from construct.language.program import Aff, Div, Fixed, MeanOf, Mov, Mul, Prev
from verify.fuzz.generator import KEYWORD_NAMES, programs


def _features(program) -> set[str]:
    out = set()
    ops = program.ops
    for op in ops:
        match op:
            case Mov(read=Prev(k=k, on=on)):
                out.add(f"prev k={min(k, 2)} on={on}")
            case Mov(read=Fixed()):
                out.add("col")
            case Mov(read=MeanOf(kind=kind)):
                out.add(f"mean {kind}")
            case Mul(left=left, right=right, a=a, b=b, c=c):
                shape = ("dot" if a == c == 1 else "outer" if b == 1 else
                         "matvec" if c == 1 else "matmat")
                out.add(f"mul {shape}" + (" self" if left == right else ""))
            case Div(min_abs=floor):
                out.add("div declared" if floor is not None else "div undeclared")
            case Aff(terms=terms, bias=bias):
                out.add(f"aff {len(terms)} terms" + (" bias" if bias is not None else ""))
    read = {name for op in ops for name in op.reads}
    for name, _ in program.prior:
        out.add("prior read" if name in read else "prior unread")
    if program.loop is not None:
        out.add("loop")
    if program.groups is not None and any(len(g) > 1 for g in program.groups):
        out.add("explicit groups")
    if len(program.unrolled().ops) >= 20:
        out.add("deep")
    names = {s.name for s in program.slots} & set(KEYWORD_NAMES) - {"x", "y"}
    if names:
        out.add("keyword names")
    return out


EXPECTED = ({f"prev k={k} on={on}" for k in range(3) for on in (None, "x", "y")}
            | {"col", "mean x", "mean y", "mul dot", "mul outer", "mul matvec", "mul matmat",
               "mul dot self", "div declared", "div undeclared", "aff 0 terms bias",
               "aff 1 terms", "aff 1 terms bias", "aff 2 terms", "aff 2 terms bias",
               "aff 3 terms", "prior read", "prior unread", "loop", "explicit groups", "deep",
               "keyword names"})


def test_the_generator_reaches_every_feature():
    seen: collections.Counter = collections.Counter()

    @seed(0)
    @settings(max_examples=500, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(programs())
    def draw(program):
        seen.update(_features(program))

    draw()
    assert EXPECTED - set(seen) == set(), sorted(EXPECTED - set(seen))


@settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
@given(programs())
def test_every_program_round_trips_through_the_text(program):
    assert parse_program(program.text()) == program


def test_one_program_in_five_speaks_the_papers_notation():
    from construct.language.paper_printer import NotExpressible, paper_text

    sayable = []

    @seed(1)
    @settings(max_examples=100, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(programs())
    def draw(program):
        try:
            paper_text(program)
            sayable.append(program)
        except NotExpressible:
            pass

    draw()
    assert len(sayable) >= 10
    assert any(isinstance(op, Div) for p in sayable for op in p.ops)
