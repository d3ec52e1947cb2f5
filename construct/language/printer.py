"""Printer: a ``Program`` as native-style text, the inverse of ``construct.language.parser``.

``parse_program(program_text(p)) == p`` for every program whose declared bounds are in
canonical order (``p.assumptions`` sorted by op index; several on one op keep their order):
slots are printed in declaration order with their exact shapes, coefficients as exact
fractions (``1/10``), a coefficient equal to ``s * I`` as the number ``s`` (which the parser
reads back as ``s * I``), explicit layer groups as ``||``-joined lines under a
``groups explicit`` statement (so that one-op groups survive too; the program check rejects
empty groups), and each declared bound as ``assume |slot| <= b`` on the line after its op (or
after its op's group line). Bounds out of canonical order come back sorted by op index.

Example::

    program dot-demo
    d 2
    slot x 2
    slot y 1
    slot xy 2
    slot p 1
    input x y
    output p
    xy = mov x prev on y
    p = mul xy x 1x2x1
    assume |p| <= 8

A prior column is ``prior column``, a slot's value there ``prior SLOT [v, ...]``; a loop body
sits between ``repeat N`` and ``end repeat``.
"""
from __future__ import annotations

import json
from fractions import Fraction

from construct.language.parser import PLAIN_NAME
from construct.language.program import (Aff, Div, Hinge, Matrix, Mov, Mul, Op, Program, Slot,
                                        to_fraction)


def program_text(program: Program) -> str:
    """The whole program, one statement a line, ending in a newline."""
    lines = [f"program {_name_text(program.name)}", f"d {program.d}"]
    lines += [f"slot {slot.name} {_shape_text(slot)}" for slot in program.slots]
    lines += [f"input {program.x_slot} {program.y_slot}", f"output {program.output}"]
    if program.prior_column:
        lines.append("prior column")
    lines += [f"prior {name} [{', '.join(number_text(v) for v in values)}]"
              for name, values in program.prior]
    bounds: dict[int, list[str]] = {}
    for index, bound in program.assumptions:
        bounds.setdefault(index, []).append(assumption_text(program.ops[index], bound))
    loop = program.loop
    if program.groups is None:
        units = [(index,) for index in range(len(program.ops))]
    else:
        lines.append("groups explicit")
        units = list(program.groups)
    for unit in units:
        if loop is not None and unit[0] == loop.start:
            lines.append(loop.text())
        # No two ops of one group write one slot, so each bound still names its own op.
        lines.append(" || ".join(op_text(program.ops[i]) for i in unit))
        lines += [text for i in unit for text in bounds.get(i, ())]
        if loop is not None and unit[-1] == loop.stop - 1:
            lines.append("end repeat")
    return "\n".join(lines) + "\n"


def op_text(op: Op) -> str:
    """One op in native syntax, e.g. ``xy = mov x prev on y``."""
    match op:
        case Mov(dst=dst, src=src, read=read):
            return f"{dst} = mov {src} {read.text()}"
        case Mul(dst=dst, left=left, right=right, a=a, b=b, c=c):
            return f"{dst} = mul {left} {right} {a}x{b}x{c}"
        case Div(dst=dst, num=num, den=den, min_abs=min_abs):
            bound = "" if min_abs is None else f" min {number_text(min_abs)}"
            return f"{dst} = div {num} {den}{bound}"
        case Aff(dst=dst, terms=terms, bias=bias):
            parts = [f"{src} * {coefficient_text(matrix)}" for src, matrix in terms]
            if bias is not None:
                parts.append(f"bias [{', '.join(number_text(row[0]) for row in bias)}]")
            return f"{dst} = aff {' + '.join(parts)}".rstrip()
        case Hinge(dst=dst, src=src, value=value, terms=terms, bias=bias, domain=domain):
            # a compiler-made op (the gated division), listed but not parsed back
            times = "" if value is None else f" * {value}"
            where = "" if domain is None else (f" on [{float(domain[0]):.6g}, "
                                               f"{float(domain[1]):.6g}]")
            offset = f"{number_text(bias)} + " if bias else ""
            return f"{dst} = hinge {offset}{len(terms)} relu terms of {src}{where}{times}"
    raise TypeError(f"unknown operation {op!r}")


def assumption_text(op: Op, bound: Fraction) -> str:
    """A declared bound on ``op``'s result, e.g. ``assume |w| <= 2``."""
    return f"assume |{op.dst}| <= {number_text(bound)}"


def coefficient_text(matrix: Matrix) -> str:
    """``s`` for ``s * I`` (square), else the rows ``[[a, b], [c, d]]``."""
    n = len(matrix)
    scale = matrix[0][0]
    if all(len(row) == n for row in matrix) and all(
            matrix[i][j] == (scale if i == j else 0) for i in range(n) for j in range(n)):
        return number_text(scale)
    rows = (", ".join(number_text(v) for v in row) for row in matrix)
    return "[" + ", ".join(f"[{row}]" for row in rows) + "]"


def number_text(value: object) -> str:
    """Exact: ``3``, ``-1/10``."""
    return str(to_fraction(value) if not isinstance(value, Fraction) else value)


def _shape_text(slot: Slot) -> str:
    return str(slot.rows) if slot.cols == 1 else slot.shape_text


def _name_text(name: str) -> str:
    # Names outside [letters digits _ -] (spaces, quotes, ...) are written as JSON strings.
    return name if PLAIN_NAME.fullmatch(name) else json.dumps(name)
