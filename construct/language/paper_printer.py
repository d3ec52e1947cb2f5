"""Printer: a ``Program`` in the paper's notation (Appendix A/B listings), where it can be said.

The paper's notation names residual rows, not slots: row 0 is ``y``, rows ``1..d`` are ``x``,
and here every other slot gets the next free rows, in declaration order. It has fewer words
than the native form, so a program is expressible only if

- it has no prior column, loop, explicit groups or declared bounds (``assume``);
- every ``mov`` reads ``prev``/``back k`` *on* one kind (``mov(; t, s, ...)`` is
  ``Prev(t - s, on=x if t is even else y)``);
- every ``aff`` has at most two sources;
- every ``div`` declares the same floor (the listing's ``param div_min``).

``paper_text`` raises ``NotExpressible`` naming the first thing that is not. Parsing the text
back gives the same program up to the slots' names (``r{lo}_{hi}``), shapes (vectors) and
order: ``as_parsed`` writes the program that way, ``same_up_to_slot_order`` compares.
"""
from __future__ import annotations

from construct.language.printer import number_text
from construct.language.program import (Aff, Div, Matrix, Mov, Mul, Prev, Program, ProgramError,
                                        Slot)


class NotExpressible(ProgramError):
    """The program uses something the paper's notation has no words for."""


def paper_rows(program: Program) -> dict[str, tuple[int, int]]:
    """Each slot's half-open row range: ``y`` at 0, ``x`` at ``1..d``, the rest in order."""
    rows = {program.y_slot: (0, 1), program.x_slot: (1, 1 + program.d)}
    top = 1 + program.d
    for slot in program.slots:
        if slot.name not in rows:
            rows[slot.name] = (top, top + slot.size)
            top += slot.size
    return rows


def paper_names(program: Program) -> dict[str, str]:
    """The name each slot gets when the paper text is parsed back."""
    return {name: "y" if lo == 0 else "x" if (lo, hi) == (1, 1 + program.d) else f"r{lo}_{hi}"
            for name, (lo, hi) in paper_rows(program).items()}


def paper_text(program: Program) -> str:
    _check_expressible(program)
    rows = paper_rows(program)

    def at(name: str) -> str:
        lo, hi = rows[name]
        return f"({lo}, {hi})"

    floors = {op.min_abs for op in program.ops if isinstance(op, Div)}
    lines = [f"program {program.name}" if program.name.replace("-", "").replace("_", "")
             .isalnum() else "program paper", f"d {program.d}"]
    floors_line = bool(floors)
    if floors:
        lines.append(f"param div_min = {number_text(floors.pop())}")
    lines.append(f"output {at(program.output)}")
    params: list[str] = []  # op arguments take names, not bracketed lists
    for number, op in enumerate(program.ops, start=1):
        match op:
            case Mov(dst=dst, src=src, read=Prev(k=k, on=on)):
                even = on == "x"
                t = k + (k % 2 != (0 if even else 1))  # the smallest t >= k of the kind
                body = f"mov(; {t}, {t - k}, {at(src)}, {at(dst)})"
            case Mul(dst=dst, left=left, right=right, a=a, b=b, c=c):
                body = f"mul(; {a}, {b}, {c}, {at(left)}, {at(right)}, {at(dst)})"
            case Div(dst=dst, num=num, den=den):
                body = f"div(; {at(num)}, {rows[den][0]}, {at(dst)})"
            case Aff(dst=dst, terms=terms, bias=bias):
                sources = [at(name) for name, _ in terms] + ["()"] * (2 - len(terms))
                args = []
                for k, (_, matrix) in enumerate(terms, 1):
                    params.append(f"param w{number}_{k} = {_matrix(matrix)}")
                    args.append(f"W{k} = w{number}_{k}")
                if bias is not None:
                    params.append(f"param b{number} = "
                                  f"[{', '.join(number_text(row[0]) for row in bias)}]")
                    args.append(f"b = b{number}")
                body = f"aff(; {', '.join(sources)}, {at(dst)}" + "".join(
                    f", {arg}" for arg in args) + ")"
        lines.append(f"{number}. {body}")
    header = 3 if floors_line else 2
    return "\n".join(lines[:header] + params + lines[header:]) + "\n"


def _matrix(matrix: Matrix) -> str:
    return "[" + ", ".join("[" + ", ".join(number_text(v) for v in row) + "]"
                           for row in matrix) + "]"


def _check_expressible(program: Program) -> None:
    for what, present in (("a prior column", program.prior_column),
                          ("a loop", program.loop is not None),
                          ("explicit layer groups", program.groups is not None),
                          ("declared bounds (assume)", bool(program.assumptions))):
        if present:
            raise NotExpressible(f"the paper's notation has no words for {what}")
    floors = set()
    for index, op in enumerate(program.ops, start=1):
        if isinstance(op, Mov) and not (isinstance(op.read, Prev) and op.read.k >= 1
                                        and op.read.on is not None):
            raise NotExpressible(f"op {index}: `{op.read.text()}` is not a paper mov "
                                 "(prev or back k, on x or on y)")
        if isinstance(op, Aff) and len(op.terms) > 2:
            raise NotExpressible(f"op {index}: a paper aff has at most two sources")
        if isinstance(op, Div):
            if op.min_abs is None:
                raise NotExpressible(f"op {index}: a paper div declares its floor (div_min)")
            floors.add(op.min_abs)
    if len(floors) > 1:
        raise NotExpressible("the paper's divs share one floor (div_min); this program has "
                             f"{len(floors)}")


def as_parsed(program: Program) -> Program:
    """``program`` as parsing its paper text gives it: slots renamed and made vectors."""
    names = paper_names(program)
    rename = names.__getitem__
    ops = []
    for op in program.ops:
        match op:
            case Mov():
                ops.append(Mov(rename(op.dst), rename(op.src), op.read))
            case Mul():
                ops.append(Mul(rename(op.dst), rename(op.left), rename(op.right), op.a, op.b,
                               op.c))
            case Div():
                ops.append(Div(rename(op.dst), rename(op.num), rename(op.den), op.min_abs))
            case Aff():
                ops.append(Aff(rename(op.dst), tuple((rename(n), m) for n, m in op.terms),
                               op.bias))
    used = {program.x_slot, program.y_slot, program.output,
            *(name for op in program.ops for name in (op.dst, *op.reads))}
    sizes = program.slot_map
    return Program(name=program.name, d=program.d,
                   slots=tuple(sorted((Slot(rename(n), sizes[n].size) for n in used),
                                      key=lambda slot: slot.name)),
                   ops=tuple(ops), x_slot="x", y_slot="y", output=rename(program.output))


def same_up_to_slot_order(parsed: Program, expected: Program) -> bool:
    """``parsed`` (from paper text) equals ``as_parsed(...)`` but for the slots' order (the
    paper parser declares a slot where its rows first appear)."""
    ordered = tuple(sorted(parsed.slots, key=lambda slot: slot.name))
    return Program(name=parsed.name, d=parsed.d, slots=ordered, ops=parsed.ops,
                   x_slot=parsed.x_slot, y_slot=parsed.y_slot,
                   output=parsed.output) == expected
