"""Interval analysis: a proven floor for every undeclared divisor, and the range check.

A ``div`` divides by ``|den|``; the LayerNorm construction (Lemma 8) needs a lower bound
``m <= |den|`` (its error is ``E / (4 N^2 m^2)``, and ``m = 0`` makes it vacuous). A program
either *declares* ``m`` (``div NUM DEN min m``: an assumption ``rawc verify`` checks on every
task, as the Sherman–Morrison learners need, whose ``1 + u^T A u >= 1`` holds because ``A`` is
positive definite, which intervals cannot see) or leaves it to the compiler, which must
*prove* one here or refuse (``Refusal.DIVISOR_MAY_BE_ZERO``).

The proof is interval arithmetic, entry by entry, sound for every column and every input
with ``|x_k|, |y| <= B``:

- inputs are in ``[-B, B]``; a prior slot in the hull of its values and 0; others are 0;
- ``mov``: the hull of the source's entries (each column reads a convex combination of
  columns of the same slot version, and a point read is one of them);
- ``aff``: ``sum_j W_ij [lo_j, hi_j] + b_i`` (each term is monotone in its entry);
- ``mul``: ``sum_j L_ij R_jk`` in interval products; a dot of a slot with itself is a sum of
  squares, each in ``[0, max(lo^2, hi^2)]`` (or ``[min(lo^2, hi^2), ...]`` away from 0): the
  one correlation that proves ``1 + |s|^2 >= 1``;
- ``div``: ``num / |den|`` with ``|den|`` in ``[m, M]``;
- a declared bound ``|dst| <= A`` intersects with ``[-A, A]``.

Then ``den >= lo > 0`` or ``den <= hi < 0`` gives the floor ``min |den|`` (shrunk by a relative
``FLOOR_MARGIN`` for the floats the arithmetic runs in). A loop's iterations all take the
smallest floor of any of them, so the weight-shared form stays uniform.

*Range.* The lowering scales products by their magnitude bounds and squares them (the GeLU
product's weights grow like ``bound^2 / eps``), so a bound or a constant past
``MAX_MAGNITUDE`` is refused (``Refusal.OUT_OF_RANGE``) rather than overflowing mid-way.
"""
from __future__ import annotations

import dataclasses
import math
from fractions import Fraction

import numpy as np

from construct.compiler.refusal import CompileRefusal, Refusal
from construct.language.program import Aff, Div, Mov, Mul, Op, Program

FLOOR_MARGIN = 1e-9
MAX_MAGNITUDE = 1e100


def _name(index: int, op: Op) -> str:
    return f"op {index + 1} ({type(op).__name__.lower()} -> {op.dst})"


def _constants(program: Program) -> list[tuple[str, Fraction]]:
    out = [(f"prior {name}", v) for name, values in program.prior for v in values]
    for index, op in enumerate(program.ops):
        if isinstance(op, Aff):
            out += [(_name(index, op), v) for _, m in op.terms for row in m for v in row]
            out += [(_name(index, op), row[0]) for row in op.bias or ()]
        if isinstance(op, Div) and op.min_abs is not None:
            out.append((_name(index, op), op.min_abs))
    out += [(f"assume on op {index + 1}", bound) for index, bound in program.assumptions]
    return out


def check_constants(program: Program) -> None:
    """Refuse constants a float64 weight cannot carry (``1e300`` squared overflows)."""
    for where, value in _constants(program):
        if abs(value) > MAX_MAGNITUDE:
            raise CompileRefusal(Refusal.OUT_OF_RANGE,
                                 f"{where}: the constant {float(value):.3g} is beyond "
                                 f"{MAX_MAGNITUDE:.0e}, which the weights cannot carry "
                                 "(products square it)")


def check_magnitudes(program: Program, results: tuple[float, ...]) -> None:
    """Refuse a program whose magnitude bounds (``analysis.Bounds.results``) leave the range."""
    for index, (op, bound) in enumerate(zip(program.ops, results)):
        if not bound <= MAX_MAGNITUDE:
            raise CompileRefusal(Refusal.OUT_OF_RANGE,
                                 f"{_name(index, op)}: its result is bounded only by "
                                 f"{bound:.3g} (inputs |v| <= B), beyond {MAX_MAGNITUDE:.0e}, "
                                 "which the weights cannot carry; declare a tighter bound "
                                 "(assume) or a smaller input bound")


@dataclasses.dataclass(frozen=True)
class Box:
    """Entry-wise bounds ``lo <= v <= hi`` of one slot version."""

    lo: np.ndarray
    hi: np.ndarray

    @classmethod
    def constant(cls, values: np.ndarray) -> Box:
        return cls(values.copy(), values.copy())

    def hull(self) -> tuple[float, float]:
        return float(self.lo.min()), float(self.hi.max())


def _product(a_lo, a_hi, b_lo, b_hi):
    corners = np.stack([a_lo * b_lo, a_lo * b_hi, a_hi * b_lo, a_hi * b_hi])
    return corners.min(axis=0), corners.max(axis=0)


def _apply(op: Op, boxes: dict[str, Box], floor: float | None) -> Box:
    match op:
        case Mov(src=src):
            lo, hi = boxes[src].hull()
            size = boxes[src].lo.size
            return Box(np.full(size, lo), np.full(size, hi))
        case Aff(terms=terms, bias=bias):
            n = len(bias) if bias is not None else len(terms[0][1])
            lo = np.array([float(bias[i][0]) for i in range(n)]) if bias is not None \
                else np.zeros(n)
            hi = lo.copy()
            for name, matrix in terms:
                w = np.array([[float(v) for v in row] for row in matrix])
                lo = lo + np.minimum(w * boxes[name].lo, w * boxes[name].hi).sum(axis=1)
                hi = hi + np.maximum(w * boxes[name].lo, w * boxes[name].hi).sum(axis=1)
            return Box(lo, hi)
        case Mul(left=left, right=right, a=a, b=b, c=c):
            if left == right and a == 1 and c == 1:  # a sum of squares
                lo, hi = boxes[left].lo, boxes[left].hi
                squares_hi = np.maximum(lo * lo, hi * hi)
                squares_lo = np.where((lo > 0) | (hi < 0), np.minimum(lo * lo, hi * hi), 0.0)
                return Box(np.array([squares_lo.sum()]), np.array([squares_hi.sum()]))
            l_lo, l_hi = boxes[left].lo.reshape(a, b), boxes[left].hi.reshape(a, b)
            r_lo, r_hi = boxes[right].lo.reshape(b, c), boxes[right].hi.reshape(b, c)
            lo, hi = _product(l_lo[:, :, None], l_hi[:, :, None], r_lo[None], r_hi[None])
            return Box(lo.sum(axis=1).reshape(-1), hi.sum(axis=1).reshape(-1))
        case Div(num=num, den=den):
            d_lo, d_hi = boxes[den].hull()
            biggest = max(abs(d_lo), abs(d_hi), floor)
            lo, hi = _product(boxes[num].lo, boxes[num].hi, 1 / biggest, 1 / floor)
            return Box(lo, hi)
    raise TypeError(f"unknown operation {op!r}")


def divisor_floors(program: Program, input_bound: float) -> dict[int, float]:
    """``{op index: floor on |den|}`` for every div (declared or proven) of ``program`` (a loop
    unrolled); an undeclared divisor with no provable floor is refused."""
    boxes: dict[str, Box] = {s.name: Box.constant(np.zeros(s.size)) for s in program.slots}
    for name in (program.x_slot, program.y_slot):
        size = program.slot(name).size
        boxes[name] = Box(np.full(size, -input_bound), np.full(size, float(input_bound)))
    for name, values in program.prior:
        v = np.array([float(x) for x in values])
        boxes[name] = Box(np.minimum(v, 0.0), np.maximum(v, 0.0))
    declared: dict[int, float] = {}
    for index, bound in program.assumptions:
        declared[index] = min(float(bound), declared.get(index, math.inf))
    floors: dict[int, float] = {}
    for index, op in enumerate(program.ops):
        floor = None
        if isinstance(op, Div):
            lo, hi = boxes[op.den].hull()
            proven = lo if lo > 0 else (-hi if hi < 0 else 0.0)
            if op.min_abs is not None:
                floor = float(op.min_abs)
                if max(abs(lo), abs(hi)) < floor:
                    raise CompileRefusal(
                        Refusal.DIVISOR_BELOW_DECLARED,
                        f"{_name(index, op)}: declares |{op.den}| >= {op.min_abs}, but "
                        f"{op.den} lies in [{lo:.6g}, {hi:.6g}] for every input")
            elif proven > 0 and math.isfinite(proven):
                floor = proven * (1 - FLOOR_MARGIN)
            else:
                raise CompileRefusal(
                    Refusal.DIVISOR_MAY_BE_ZERO,
                    f"{_name(index, op)}: cannot prove |{op.den}| > 0 (interval analysis puts "
                    f"it in [{lo:.6g}, {hi:.6g}]); declare the floor the algorithm guarantees "
                    f"(`div {op.num} {op.den} min m`), which rawc verify then checks per task")
            floors[index] = floor
        with np.errstate(over="ignore", invalid="ignore"):
            box = _apply(op, boxes, floor)
        reach = float(max(np.abs(box.lo).max(initial=0.0), np.abs(box.hi).max(initial=0.0)))
        if not reach <= MAX_MAGNITUDE and index not in declared:
            raise CompileRefusal(Refusal.OUT_OF_RANGE,
                                 f"{_name(index, op)}: its values may reach {reach:.3g} "
                                 f"(inputs |v| <= B), beyond {MAX_MAGNITUDE:.0e}, which the "
                                 "weights cannot carry; declare a tighter bound (assume) or a "
                                 "smaller input bound")
        if index in declared:
            cap = declared[index]
            box = Box(np.clip(box.lo, -cap, cap), np.clip(box.hi, -cap, cap))
        boxes[op.dst] = box
    return floors


def resolve_divisors(source: Program, input_bound: float) -> Program:
    """``source`` with every div's floor filled in (declared ones kept): the smallest over a
    loop's iterations, so that each iteration lowers alike."""
    floors = divisor_floors(source.unrolled(), input_bound)
    if not floors:
        return source
    loop = source.loop
    by_source: dict[int, float] = {}
    for index, floor in floors.items():
        rolled = index if loop is None else loop.rolled(index)
        by_source[rolled] = min(floor, by_source.get(rolled, math.inf))
    ops = tuple(dataclasses.replace(op, min_abs=Fraction(by_source[i]))
                if isinstance(op, Div) and op.min_abs is None else op
                for i, op in enumerate(source.ops))
    return dataclasses.replace(source, ops=ops)
