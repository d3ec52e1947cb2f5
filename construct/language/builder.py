"""Python front end: build a ``Program`` operation by operation.

>>> b = ProgramBuilder("dot-demo", d=2)
>>> xy = b.mov("x_at_y", b.x, prev(on="y"))
>>> p = b.mul("p", xy, b.x, 1, 2, 1)
>>> program = b.build(output=p)

Slots are declared on first write, with the shape the operation implies; writing a slot again
must keep its shape.
"""
from __future__ import annotations

from fractions import Fraction

from construct.language.program import (Aff, Div, Fixed, Loop, MeanOf, Mov, Mul, Op, Prev, Program,
                               ProgramError, ReadMap, Slot, to_fraction, to_matrix)


def prev(k: int = 1, on: str | None = None) -> Prev:
    """Read ``k`` columns back (at columns of kind ``on``; others read themselves)."""
    return Prev(k=k, on=on)


def column(index: int) -> Fixed:
    return Fixed(column=index)


def mean_of(kind: str) -> MeanOf:
    return MeanOf(kind=kind)


class ProgramBuilder:
    """Collects slots and ops; ``build`` returns the checked, immutable ``Program``."""

    def __init__(self, name: str, d: int, x: str = "x", y: str = "y") -> None:
        self.name = name
        self.d = d
        self._slots: dict[str, Slot] = {}
        self._ops: list[Op] = []
        self._groups: list[list[int]] | None = None
        self._assumptions: list[tuple[int, Fraction]] = []
        self._prior_column = False
        self._prior: dict[str, tuple[Fraction, ...]] = {}
        self._loop_start: int | None = None
        self._loop: Loop | None = None
        self.x = self._declare(x, d, 1)
        self.y = self._declare(y, 1, 1)

    def _declare(self, name: str, rows: int, cols: int) -> str:
        slot = Slot(name, rows, cols)
        old = self._slots.get(name)
        if old is not None and old.size != slot.size:
            raise ProgramError(f"slot {name!r} is {old.shape_text}; cannot write "
                               f"{slot.shape_text} into it")
        self._slots.setdefault(name, slot)
        return name

    def _size(self, name: str) -> int:
        if name not in self._slots:
            raise ProgramError(f"unknown slot {name!r}")
        return self._slots[name].size

    def _add(self, op: Op) -> str:
        self._ops.append(op)
        if self._groups is not None:
            self._groups[-1].append(len(self._ops) - 1)
        return op.dst

    def layer(self) -> None:
        """Start a new explicit layer group; later ops join it until the next call."""
        if self._groups is None:
            self._groups = [[i] for i in range(len(self._ops))]
        self._groups.append([])

    def mov(self, dst: str, src: str, read: ReadMap) -> str:
        self._declare(dst, self._slots[src].rows if src in self._slots else 1,
                      self._slots[src].cols if src in self._slots else 1)
        return self._add(Mov(dst, src, read))

    def mul(self, dst: str, left: str, right: str, a: int, b: int, c: int) -> str:
        self._declare(dst, a, c)
        return self._add(Mul(dst, left, right, a, b, c))

    def dot(self, dst: str, left: str, right: str) -> str:
        return self.mul(dst, left, right, 1, self._size(left), 1)

    def div(self, dst: str, num: str, den: str, min_abs: object = None) -> str:
        """``dst = num / |den|``; ``min_abs`` declares ``|den| >= min_abs`` (checked by
        ``rawc verify`` on every task); without it the compiler must prove a floor."""
        n = self._slots[num] if num in self._slots else Slot(num, 1)
        self._declare(dst, n.rows, n.cols)
        floor = None if min_abs is None else to_fraction(min_abs)
        return self._add(Div(dst, num, den, floor))

    def aff(self, dst: str, terms: dict[str, object] | None = None, bias: object = None,
            rows: int | None = None, cols: int = 1) -> str:
        """``dst = sum W_k src_k + bias``; a scalar coefficient ``s`` means ``s * I``."""
        terms = terms or {}
        if bias is not None:
            flat = [to_fraction(v) for v in _flatten(bias)]
            size = len(flat)
        else:
            flat, size = None, None
        if rows is None:
            if size is not None:
                rows = size // cols
            elif terms:
                shaped = [to_matrix(c) for c in terms.values()]
                full = [m for m in shaped if (len(m), len(m[0])) != (1, 1)]
                if full:
                    rows = len(full[0])
                else:
                    first = next(iter(terms))
                    rows, cols = self._slots[first].rows, self._slots[first].cols
            else:
                raise ProgramError(f"aff -> {dst!r}: give a bias or a source to fix its shape")
        self._declare(dst, rows, cols)
        out = rows * cols
        coefficient_terms = []
        for src, coefficient in terms.items():
            matrix = to_matrix(coefficient)
            if len(matrix) == 1 and len(matrix[0]) == 1 and (out, self._size(src)) != (1, 1):
                s = matrix[0][0]
                n = self._size(src)
                matrix = tuple(tuple(s if i == j else Fraction(0) for j in range(n))
                               for i in range(n))
            coefficient_terms.append((src, matrix))
        bias_matrix = None if flat is None else tuple((v,) for v in flat)
        return self._add(Aff(dst, tuple(coefficient_terms), bias_matrix))

    def prior_column(self) -> None:
        """The sequence starts with a prior column (column 0, zero token)."""
        self._prior_column = True

    def prior(self, name: str, values: object, rows: int | None = None, cols: int = 1) -> str:
        """Declare slot ``name`` with ``values`` in the prior column (zero in every other)."""
        flat = tuple(to_fraction(v) for v in _flatten(values))
        self._declare(name, rows if rows is not None else len(flat) // cols, cols)
        self._prior_column = True
        self._prior[name] = flat
        return name

    def repeat(self, times: int) -> None:
        """Ops from here to ``end_repeat`` form the loop body, run ``times`` times."""
        if self._loop_start is not None or self._loop is not None:
            raise ProgramError("a program holds at most one loop")
        self._loop_start = len(self._ops)
        self._loop_times = times

    def end_repeat(self) -> None:
        if self._loop_start is None:
            raise ProgramError("end_repeat without repeat")
        self._loop = Loop(self._loop_start, len(self._ops), self._loop_times)
        self._loop_start = None

    def assume(self, slot: str, bound: object) -> None:
        """Declare ``|entries of slot| <= bound`` for the value the last op wrote into it."""
        writers = [i for i, op in enumerate(self._ops) if op.dst == slot]
        if not writers:
            raise ProgramError(f"assume: no op has written slot {slot!r} yet")
        self._assumptions.append((writers[-1], to_fraction(bound)))

    def build(self, output: str) -> Program:
        if self._loop_start is not None:
            raise ProgramError("repeat without end_repeat")
        groups = None if self._groups is None else tuple(tuple(g) for g in self._groups if g)
        return Program(name=self.name, d=self.d, slots=tuple(self._slots.values()),
                       ops=tuple(self._ops), x_slot=self.x, y_slot=self.y, output=output,
                       groups=groups, assumptions=tuple(self._assumptions),
                       prior_column=self._prior_column, prior=tuple(self._prior.items()),
                       loop=self._loop)


def _flatten(value: object) -> list:
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return [v for item in value for v in _flatten(item)]
    return [value]
