"""Random RAW programs for differential testing: one Hypothesis strategy, ``programs()``.

Every draw is a valid program (``Program``'s checks pass by construction), built with
``ProgramBuilder`` step by step, so Hypothesis shrinks a failure to a short program with small
coefficients. What it reaches:

- every read map: ``prev``, ``self``, ``back k``, each ``on x``/``on y``, ``col c``,
  ``mean x``/``mean y``;
- ``mul`` of every shape: dot, outer, matrix-vector, matrix-matrix, and a slot by itself (the
  sum of squares that makes a divisor provably positive, a square matrix squared);
- ``div`` by a provably positive slot (``c0 + c1 |s|^2``, or a copy of one), with the floor
  left to the compiler's proof or declared (``min m <= c0``), and now and then by any scalar
  with no floor, which the compiler must refuse by name;
- ``aff`` of zero (a bias alone), one, two or three sources, with or without a bias;
- operands of any size, made by an ``aff`` when no slot has the size an op needs;
- prior slots, read and unread, scalar or vector; writes into inputs and priors;
- a ``repeat`` loop around any run of steps; explicit layer groups (``||``), legal for the
  program but chosen at random, so some a schedule cannot honour;
- slot names from the whole grammar (``mul``, ``prev``, ``repeat``, ``min``, ``I``, ...);
- short programs (1–8 steps) and deep chains (20–60), and fans of independent ops that a
  packed schedule puts side by side in one layer;
- one program in five restricted to what the paper's notation can say (no priors, loops or
  groups; reads ``back k on x|y``; at most two ``aff`` sources; one declared ``div`` floor),
  so the oracle can round-trip it through that front end too.
"""
from __future__ import annotations

import dataclasses
from fractions import Fraction

from hypothesis import strategies as st

from construct.language.builder import ProgramBuilder
from construct.language.check import is_mlp_op
from construct.language.program import Fixed, MeanOf, Prev, Program

# Words of the text grammar (statements, ops, read maps, aff and paper keywords) and
# expression names: each must work as a slot name wherever a name can stand.
KEYWORD_NAMES = ("mul", "div", "mov", "aff", "dot", "prev", "self", "back", "col", "mean", "on",
                 "min", "bias", "slot", "input", "output", "prior", "column", "repeat", "end",
                 "groups", "explicit", "assume", "program", "param", "same", "I", "W1", "W2",
                 "b", "d", "x", "y", "p", "lam", "alpha", "inf", "nan", "e", "pi", "div_min")

coefficients = st.integers(-4, 4).map(lambda k: Fraction(k, 4))
positive_coefficients = st.integers(1, 8).map(lambda k: Fraction(k, 4))

read_maps = st.one_of(
    st.builds(Prev, k=st.integers(0, 3), on=st.sampled_from([None, "x", "y"])),
    st.builds(Fixed, column=st.integers(0, 4)),
    st.builds(MeanOf, kind=st.sampled_from(["x", "y"])))
# What the paper's notation can say: `mov(; t, s, ...)` reads t - s back on one kind.
paper_read_maps = st.builds(Prev, k=st.integers(1, 3), on=st.sampled_from(["x", "y"]))
PAPER_FLOOR = Fraction(1, 4)  # every paper div declares the listing's one div_min


class _Draft:
    """The program under construction: the builder, the size of every slot, and which
    scalars hold a value provably >= a positive floor."""

    def __init__(self, draw, d: int, x: str, y: str, paper: bool = False) -> None:
        self.draw, self.d, self.paper = draw, d, paper
        self.reads = paper_read_maps if paper else read_maps
        self.b = ProgramBuilder("fuzz", d, x=x, y=y)
        self.sizes: dict[str, int] = {x: d, y: 1}
        self.positive: dict[str, Fraction] = {}  # slot -> its proven floor
        self.unused = [n for n in KEYWORD_NAMES if n not in (x, y)]
        self.counter = 0
        self.last = y

    # ------------------------------------------------------------ names and operands
    def fresh(self, size: int) -> str:
        if self.unused and self.draw(st.booleans()):
            name = self.unused.pop(self.draw(st.integers(0, len(self.unused) - 1)))
        else:
            self.counter += 1
            name = f"s{self.counter}"
            while name in self.sizes:
                self.counter += 1
                name = f"s{self.counter}"
        self.sizes[name] = size
        return name

    def destination(self, size: int) -> str:
        """A new slot, or (one time in three) an existing one of this size."""
        same = sorted(n for n, s in self.sizes.items() if s == size)
        if same and self.draw(st.integers(0, 2)) == 2:
            return self.draw(st.sampled_from(same))
        return self.fresh(size)

    def any_slot(self) -> str:
        return self.draw(st.sampled_from(sorted(self.sizes)))

    def operand(self, size: int) -> str:
        """A slot of ``size`` entries: an existing one, or a new ``aff`` of existing ones."""
        same = sorted(n for n, s in self.sizes.items() if s == size)
        if same and self.draw(st.integers(0, 3)) < 3:
            return self.draw(st.sampled_from(same))
        return self.aff(size, fresh=True)

    def matrix(self, rows: int, cols: int) -> list[list[Fraction]]:
        return [[self.draw(coefficients) for _ in range(cols)] for _ in range(rows)]

    def wrote(self, name: str) -> str:
        self.positive.pop(name, None)
        self.last = name
        return name

    # ------------------------------------------------------------ the four operations
    def mov(self) -> str:
        src = self.any_slot()
        dst = self.destination(self.sizes[src])
        floor = self.positive.get(src)
        self.wrote(self.b.mov(dst, src, self.draw(self.reads)))
        if floor is not None and self.sizes[dst] == 1:  # a convex combination keeps it
            self.positive[dst] = floor
        return dst

    def aff(self, size: int | None = None, fresh: bool = False) -> str:
        if size is None:
            size = self.draw(st.sampled_from(sorted({1, self.d, self.d * self.d})))
        names = sorted(self.sizes)
        n_terms = self.draw(st.integers(0, min(2 if self.paper else 3, len(names))))
        sources = self.draw(st.lists(st.sampled_from(names), min_size=n_terms,
                                     max_size=n_terms, unique=True))
        bias = None
        if not sources or self.draw(st.booleans()):
            bias = [self.draw(coefficients) for _ in range(size)]
        terms = {src: self.matrix(size, self.sizes[src]) for src in sources}
        dst = self.fresh(size) if fresh else self.destination(size)
        return self.wrote(self.b.aff(dst, terms, bias=bias, rows=size))

    def mul(self) -> str:
        d = self.d
        dims = st.sampled_from(sorted({1, 2, d}))
        shape = self.draw(st.sampled_from(["dot", "outer", "matvec", "matmat", "self"]))
        if shape == "self":
            left = self.any_slot()
            n = self.sizes[left]
            root = int(round(n ** 0.5))
            a, b, c = (1, n, 1) if root * root != n or self.draw(st.booleans()) \
                else (root, root, root)
            return self.wrote(self.b.mul(self.destination(a * c), left, left, a, b, c))
        a, b, c = {"dot": (1, self.draw(dims), 1), "outer": (self.draw(dims), 1, self.draw(dims)),
                   "matvec": (self.draw(dims), self.draw(dims), 1),
                   "matmat": (self.draw(dims), self.draw(dims), self.draw(dims))}[shape]
        left, right = self.operand(a * b), self.operand(b * c)
        return self.wrote(self.b.mul(self.destination(a * c), left, right, a, b, c))

    def positive_scalar(self) -> tuple[str, bool]:
        """A scalar with a proven floor, ``c0 + c1 |s|^2``, or one that exists already (then
        ``False``: inside a loop a later op of the body may overwrite it before the next
        iteration reads it, so its floor is the compiler's to prove, not ours to declare)."""
        if self.positive and self.draw(st.booleans()):
            return self.draw(st.sampled_from(sorted(self.positive))), False
        s = self.any_slot()
        square = self.b.mul(self.destination(1), s, s, 1, self.sizes[s], 1)
        self.wrote(square)
        c0, c1 = self.draw(positive_coefficients), self.draw(st.integers(0, 4)) / Fraction(2)
        den = self.wrote(self.b.aff(self.destination(1), {square: c1}, bias=[c0], rows=1))
        self.positive[den] = c0
        return den, True

    def div(self) -> str:
        num = self.any_slot()
        choice = self.draw(st.integers(0, 19))
        if self.paper:  # positive dens only (their floors are >= 1/4), the listing's floor
            den, floor = self.positive_scalar()[0], PAPER_FLOOR
        elif choice == 19:  # any scalar, no floor: the compiler must refuse unless it proves one
            den, floor = self.operand(1), None
        else:
            den, fresh = self.positive_scalar()
            floor = self.positive[den] / self.draw(st.integers(1, 3)) \
                if fresh and choice >= 12 else None  # 12..18: declared
        dst = self.destination(self.sizes[num])
        if dst == num:  # a div writing its numerator is refused: keep that rare
            dst = self.fresh(self.sizes[num]) if self.draw(st.integers(0, 9)) else dst
        return self.wrote(self.b.div(dst, num, den, min_abs=floor))

    def fan(self) -> None:
        """Several independent ops on what exists: one packed layer side by side."""
        existing = sorted(self.sizes)
        for _ in range(self.draw(st.integers(3, 8))):
            src = self.draw(st.sampled_from(existing))
            if self.draw(st.booleans()):
                self.wrote(self.b.mov(self.fresh(self.sizes[src]), src, self.draw(self.reads)))
            else:
                self.wrote(self.b.mul(self.fresh(1), src, src, 1, self.sizes[src], 1))

    def step(self) -> None:
        kind = self.draw(st.sampled_from(["mov", "aff", "mul", "div", "fan"]))
        if kind == "fan" and self.draw(st.integers(0, 3)) < 3:
            kind = "mov"  # fans are wide: one step in sixteen or so
        {"mov": self.mov, "aff": self.aff, "mul": self.mul, "div": self.div,
         "fan": self.fan}[kind]()


def _explicit_groups(draw, program: Program) -> tuple[tuple[int, ...], ...]:
    """Random layer groups the program's checks accept: a group never writes one slot twice,
    reads nothing its own earlier ops wrote (but an MLP op may read an attention op's write),
    and does not straddle the loop's boundary."""
    loop = program.loop
    edges = {loop.start, loop.stop} if loop is not None else set()
    groups: list[list[int]] = []
    writes: dict[str, int] = {}
    for i, op in enumerate(program.ops):
        clash = op.dst in writes or any(
            name in writes and not (is_mlp_op(op) and not is_mlp_op(program.ops[writes[name]]))
            for name in op.reads)
        if not groups or i in edges or clash or draw(st.booleans()):
            groups.append([])
            writes = {}
        groups[-1].append(i)
        writes[op.dst] = i
    return tuple(tuple(g) for g in groups)


@st.composite
def programs(draw, max_d: int = 3, deep: bool = True) -> Program:
    """A random valid program (see the module's docstring for what it covers)."""
    d = draw(st.integers(1, max_d), label="d")
    names = draw(st.sampled_from([("x", "y"), ("x", "y"), ("mul", "prev"), ("y", "x"),
                                  ("input", "output")]))
    # One program in five is sayable in the paper's notation (construct.language.paper_printer).
    paper = draw(st.integers(0, 4), label="paper") == 4
    draft = _Draft(draw, d, *names, paper=paper)
    for _ in range(0 if paper else draw(st.integers(0, 2), label="priors")):
        size = draw(st.sampled_from(sorted({1, d})))
        draft.b.prior(draft.fresh(size), [draw(coefficients) for _ in range(size)])
    # Every choice shrinks toward the simple side (Hypothesis shrinks integers toward 0).
    long = deep and draw(st.integers(0, 9), label="deep") == 9
    n_steps = draw(st.integers(20, 60) if long else st.integers(1, 8), label="steps")
    looped = not paper and draw(st.integers(0, 3), label="loop") == 3
    loop_at = draw(st.integers(0, n_steps - 1)) if looped else -1
    loop_end = draw(st.integers(loop_at + 1, min(n_steps, loop_at + 4))) if loop_at >= 0 else -1
    for k in range(n_steps):
        if k == loop_at:
            draft.b.repeat(draw(st.integers(2, 3)))
        draft.step()
        if k + 1 == loop_end:
            draft.b.end_repeat()
    scalars = sorted(n for n, s in draft.sizes.items() if s == 1)
    output = draft.last if draft.sizes[draft.last] == 1 and draw(st.integers(0, 3)) < 3 \
        else draw(st.sampled_from(scalars))
    program = draft.b.build(output=output)
    if not paper and draw(st.integers(0, 3), label="groups") == 3:
        program = dataclasses.replace(program, groups=_explicit_groups(draw, program))
    return program
