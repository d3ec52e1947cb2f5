"""The RAW operation language: slots, read maps, the four operations, programs.

A program works on the residual stream of a transformer one token column at a time. Values
live in *slots*: named groups of rows with a shape (scalar ``1x1``, vector ``n x 1`` or a
matrix ``r x c`` flattened row-major). Every operation is applied in **every** column at
once (Akyurek et al., Lemma 1); only ``mov`` looks at other columns.

Operations (reference ``raw-constructions.md`` section 1.2, with one fixed convention):

- ``mov(dst, src, read)``: ``dst[t] = sum_j R[t, j] src[j]`` where ``R`` is the row-stochastic
  matrix of a read map (previous column, ``k`` columns back, a fixed column, the mean over
  columns of one kind). Destination first, always.
- ``mul(dst, left, right, a, b, c)``: ``left`` read as an ``a x b`` matrix, ``right`` as
  ``b x c``; ``dst = left @ right`` (``a x c``). ``dot`` is ``a = c = 1``.
- ``div(dst, num, den, min_abs)``: ``dst = num / |den|`` with a scalar ``den``; ``min_abs`` is
  the declared lower bound on ``|den|`` that the LayerNorm construction relies on (``None``:
  undeclared, the compiler must prove one, ``construct.compiler.intervals``).
- ``aff(dst, terms, bias)``: ``dst = sum_k W_k src_k + bias``.

Coefficients are exact ``Fraction`` values, so the same program runs on floats and on sympy.
"""
from __future__ import annotations

import dataclasses
import functools
from fractions import Fraction
from typing import Literal, Union

Kind = Literal["x", "y"]
KINDS: tuple[str, ...] = ("x", "y")
PRIOR_KIND = "p"  # the kind of the optional prior column 0; no read map selects it
Matrix = tuple[tuple[Fraction, ...], ...]


class ProgramError(ValueError):
    """A program is malformed: unknown slot, shape mismatch, bad argument."""


def to_fraction(value: object) -> Fraction:
    """Exact rational for a coefficient; floats go through their shortest repr (0.1 -> 1/10)."""
    if isinstance(value, Fraction):
        return value
    if isinstance(value, bool):
        raise ProgramError(f"coefficient must be a number, got {value!r}")
    if isinstance(value, int):
        return Fraction(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ProgramError(f"coefficient must be finite, got {value!r}")
        return Fraction(repr(value))
    try:
        return Fraction(str(value))
    except (ValueError, ZeroDivisionError) as exc:
        raise ProgramError(f"coefficient {value!r} is not a number") from exc


def to_matrix(rows: object) -> Matrix:
    """Coefficient matrix from nested sequences, a 2-D array, or a scalar (a 1x1 matrix)."""
    if hasattr(rows, "tolist"):
        rows = rows.tolist()
    if not isinstance(rows, (list, tuple)):
        return ((to_fraction(rows),),)
    matrix = tuple(tuple(to_fraction(v) for v in row) for row in rows)
    if not matrix or len({len(r) for r in matrix}) != 1 or not matrix[0]:
        raise ProgramError("coefficient matrix must be a non-empty rectangle")
    return matrix


def identity(n: int, scale: object = 1) -> Matrix:
    s = to_fraction(scale)
    return tuple(tuple(s if i == j else Fraction(0) for j in range(n)) for i in range(n))


@dataclasses.dataclass(frozen=True)
class Slot:
    """A named group of residual rows holding an ``rows x cols`` matrix, row-major."""

    name: str
    rows: int
    cols: int = 1

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ProgramError(f"slot name {self.name!r} is not an identifier")
        if self.rows < 1 or self.cols < 1:
            raise ProgramError(f"slot {self.name!r} has empty shape {self.rows}x{self.cols}")

    @property
    def size(self) -> int:
        return self.rows * self.cols

    @property
    def shape_text(self) -> str:
        return f"{self.rows}x{self.cols}"


# ---------------------------------------------------------------- read maps (mov)
@dataclasses.dataclass(frozen=True)
class Prev:
    """Columns of kind ``on`` (every column when ``None``) read ``k`` columns back.

    Columns of another kind read their own column, so an in-place ``mov`` leaves them
    unchanged. Reads before the first column clamp to column 0 (causal attention cannot look
    further back; the quadratic position code gives exactly this clamp).
    """

    k: int = 1
    on: Kind | None = None

    def __post_init__(self) -> None:
        if self.k < 0:
            raise ProgramError(f"mov reads k={self.k} columns back; k must be >= 0")
        if self.on is not None and self.on not in KINDS:
            raise ProgramError(f"unknown column kind {self.on!r}; kinds are {KINDS}")

    def text(self) -> str:
        base = "prev" if self.k == 1 else ("self" if self.k == 0 else f"back({self.k})")
        return base if self.on is None else f"{base} on {self.on}"


@dataclasses.dataclass(frozen=True)
class Fixed:
    """Every column reads column ``column`` (columns before it read themselves: clamp)."""

    column: int

    def __post_init__(self) -> None:
        if self.column < 0:
            raise ProgramError(f"fixed column must be >= 0, got {self.column}")

    def text(self) -> str:
        return f"col({self.column})"


@dataclasses.dataclass(frozen=True)
class MeanOf:
    """Column ``t`` reads the mean over columns ``j <= t`` of kind ``kind`` (all ``j <= t`` if none)."""

    kind: Kind

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ProgramError(f"unknown column kind {self.kind!r}; kinds are {KINDS}")

    def text(self) -> str:
        return f"mean({self.kind})"


ReadMap = Union[Prev, Fixed, MeanOf]


def column_kinds(n_tokens: int, prior_column: bool = False) -> tuple[str, ...]:
    """Kinds of the interleaved layout ``[p] x1 y1 x2 y2 ... x_q`` (``p``: the prior column)."""
    offset = 1 if prior_column else 0
    return tuple(PRIOR_KIND if t < offset else ("x" if (t - offset) % 2 == 0 else "y")
                 for t in range(n_tokens))


# ---------------------------------------------------------------- operations
@dataclasses.dataclass(frozen=True)
class Mov:
    dst: str
    src: str
    read: ReadMap

    @property
    def reads(self) -> tuple[str, ...]:
        return (self.src,)


@dataclasses.dataclass(frozen=True)
class Mul:
    dst: str
    left: str
    right: str
    a: int
    b: int
    c: int

    @property
    def reads(self) -> tuple[str, ...]:
        return (self.left, self.right)


@dataclasses.dataclass(frozen=True)
class Div:
    dst: str
    num: str
    den: str
    min_abs: Fraction | None = None  # declared |den| floor; None: the compiler proves one

    @property
    def reads(self) -> tuple[str, ...]:
        return (self.num, self.den)


@dataclasses.dataclass(frozen=True)
class Aff:
    dst: str
    terms: tuple[tuple[str, Matrix], ...]
    bias: Matrix | None = None  # a column vector (n x 1) or None

    @property
    def reads(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.terms)


@dataclasses.dataclass(frozen=True)
class Hinge:
    """``dst = bias + value * sum_k w_k relu(s_k src + o_k)`` for a scalar ``src`` (``value``
    ``None``: the constant 1; ``terms``: the ``(w_k, s_k, o_k)``): a piecewise-linear function
    of one scalar, times a slot. It is no part of the surface language: the gated target lowers
    a ``div`` into hinges and products (``construct.compiler.newton_division``), which its
    gated units compute exactly. ``domain``: the interval ``src`` is declared to lie in (the
    divisor's floor and bound), checked on every task like a ``div``'s floor. ``truncation``:
    the relative error by which the division this hinge seeds misses ``n / |c|`` in exact
    arithmetic (Newton's, ``eps0^(2^k)``): the lowering charges it to this op."""

    dst: str
    src: str
    value: str | None
    terms: tuple[tuple[Fraction, Fraction, Fraction], ...]
    bias: Fraction = Fraction(0)
    domain: tuple[Fraction, Fraction] | None = None
    truncation: float = 0.0

    @property
    def reads(self) -> tuple[str, ...]:
        return (self.src,) if self.value in (None, self.src) else (self.src, self.value)

    @functools.cached_property
    def knot_rows(self) -> tuple[Matrix, Matrix, Matrix]:
        """``([s_k]), ([o_k]), [[w_k]]``: the slopes and offsets as ``1 x K`` rows and the
        weights as a ``K x 1`` column (the interpreter's ``relu(x S + O) W``)."""
        slopes = (tuple(s for _, s, _ in self.terms),)
        offsets = (tuple(o for _, _, o in self.terms),)
        weights = tuple((w,) for w, _, _ in self.terms)
        return slopes, offsets, weights


Op = Union[Mov, Mul, Div, Aff, Hinge]


@dataclasses.dataclass(frozen=True)
class Loop:
    """Ops ``start .. stop - 1`` run ``times`` times in a row (the body of a weight-shared stage).

    The meaning is the unrolled program (``Program.unrolled``); the loop only records that the
    stages are identical, so a compiler may store one stage's weights and run them ``times``
    times (``CompileConfig.form == "shared"``).
    """

    start: int
    stop: int
    times: int

    def __post_init__(self) -> None:
        if not 0 <= self.start < self.stop:
            raise ProgramError(f"loop must hold at least one op, got ops {self.start + 1}.."
                               f"{self.stop}")
        if self.times < 1:
            raise ProgramError(f"a loop runs at least once, got {self.times} times")

    @property
    def length(self) -> int:
        return self.stop - self.start

    def rolled(self, index: int) -> int:
        """The op of the program as written that op ``index`` of the unrolled one repeats."""
        if index < self.start:
            return index
        if index < self.start + self.times * self.length:
            return self.start + (index - self.start) % self.length
        return index - (self.times - 1) * self.length

    def text(self) -> str:
        return f"repeat {self.times}"


@dataclasses.dataclass(frozen=True)
class Program:
    """A checked RAW program.

    ``x_slot``/``y_slot`` receive the token's ``x`` rows and its label row from the embedding
    (x-token ``[0, x]``, y-token ``[y, 0]``). ``output`` is a scalar slot: the prediction read
    at x-token columns. ``groups`` optionally fixes which consecutive ops share one layer.
    ``assumptions`` are declared bounds ``(op index, b)``: every entry of that op's result is at
    most ``b`` in magnitude. They tighten the interval bounds the lowering scales by (a theorem
    about the algorithm that intervals cannot see, e.g. ``||(lam I + x x^T)^-1|| <= 1/lam``);
    the verifier checks each one on every task and fails when one is broken.

    ``prior_column``: the sequence starts with a prior column (column 0, kind ``p``) whose
    token is all zeros; ``prior`` gives slots their value in that column (``A0^-1 = I/lam``,
    ``w0``): in the compiled model these come from ``W_pos[0]``, never from the data. Every
    other column starts with those slots at zero. ``loop`` marks a repeated stage.
    """

    name: str
    d: int
    slots: tuple[Slot, ...]
    ops: tuple[Op, ...]
    x_slot: str
    y_slot: str
    output: str
    groups: tuple[tuple[int, ...], ...] | None = None
    assumptions: tuple[tuple[int, Fraction], ...] = ()
    prior_column: bool = False
    prior: tuple[tuple[str, tuple[Fraction, ...]], ...] = ()
    loop: Loop | None = None

    def __post_init__(self) -> None:
        from construct.language import check  # local: check imports this module

        check.check_program(self)

    @property
    def slot_map(self) -> dict[str, Slot]:
        return {s.name: s for s in self.slots}

    def slot(self, name: str) -> Slot:
        try:
            return self.slot_map[name]
        except KeyError:
            raise ProgramError(f"unknown slot {name!r}") from None

    def text(self) -> str:
        from construct.language import printer

        return printer.program_text(self)

    @property
    def first_x_column(self) -> int:
        """Column of the first x-token: 1 after a prior column, else 0."""
        return 1 if self.prior_column else 0

    def column_kinds(self, n_tokens: int) -> tuple[str, ...]:
        """Kind of every column: ``[p] x y x y ... x``."""
        return column_kinds(n_tokens, self.prior_column)

    def unrolled(self) -> Program:
        """The same program with its loop written out (ops, groups and bounds repeated)."""
        if self.loop is None:
            return self
        start, stop, times = self.loop.start, self.loop.stop, self.loop.times
        length = stop - start
        ops = self.ops[:start] + self.ops[start:stop] * times + self.ops[stop:]

        def copy(i: int, j: int) -> int:
            """Index of op ``i`` of the rolled program in iteration ``j`` of the unrolled one."""
            if i < start:
                return i
            return start + j * length + (i - start) if i < stop else i + (times - 1) * length

        def iterations(i: int) -> range:
            return range(times) if start <= i < stop else range(1)

        assumptions = tuple(sorted(((copy(i, j), b) for i, b in self.assumptions
                                    for j in iterations(i)), key=lambda pair: pair[0]))
        groups = None
        if self.groups is not None:
            # Iteration-major: every group of iteration j before any of iteration j + 1 (written
            # group-major, a body of two groups came out of order and was refused).
            groups = tuple(sorted((tuple(copy(i, j) for i in group)
                                   for group in self.groups for j in iterations(group[0])),
                                  key=lambda group: group[0]))
        return dataclasses.replace(self, ops=ops, groups=groups, assumptions=assumptions,
                                   loop=None)
