"""Static checks of a program: every slot known, every shape consistent, reads after writes.

Each failure raises ``ProgramError`` naming the operation (its index and text) and the
problem, so a malformed program never reaches the compiler.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from construct.language.program import Aff, Div, Hinge, Mov, Mul, ProgramError

if TYPE_CHECKING:
    from construct.language.program import Op, Program


def _fail(index: int, op: Op, message: str) -> ProgramError:
    return ProgramError(f"op {index + 1} ({type(op).__name__.lower()} -> {op.dst}): {message}")


def check_program(program: Program) -> None:
    names = [s.name for s in program.slots]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ProgramError(f"slot(s) declared twice: {', '.join(duplicates)}")
    slots = {s.name: s for s in program.slots}
    if program.d < 1:
        raise ProgramError(f"dimension d must be >= 1, got {program.d}")
    for role, name, rows in (("x", program.x_slot, program.d), ("y", program.y_slot, 1)):
        if name not in slots:
            raise ProgramError(f"input slot {name!r} (token {role}) is not declared")
        if slots[name].size != rows:
            raise ProgramError(
                f"input slot {name!r} must hold {rows} rows (token {role}), "
                f"declared {slots[name].shape_text}")
    if program.x_slot == program.y_slot:
        raise ProgramError("the x and y inputs must be different slots")
    if program.output not in slots:
        raise ProgramError(f"output slot {program.output!r} is not declared")
    if slots[program.output].size != 1:
        raise ProgramError(f"output slot {program.output!r} must be a scalar")
    _check_prior(program, slots)
    written = {program.x_slot, program.y_slot, *(name for name, _ in program.prior)}
    for index, op in enumerate(program.ops):
        for name in (op.dst, *op.reads):
            if name not in slots:
                raise _fail(index, op, f"unknown slot {name!r}")
        for name in op.reads:
            if name not in written:
                raise _fail(index, op, f"reads slot {name!r} before anything writes it")
        _check_shapes(index, op, slots)
        written.add(op.dst)
    if program.output not in written:
        raise ProgramError(f"output slot {program.output!r} is never written")
    if program.groups is not None:
        _check_groups(program)
    if program.loop is not None:
        _check_loop(program)
    for index, bound in program.assumptions:
        if not 0 <= index < len(program.ops):
            raise ProgramError(f"assumption names op {index + 1}, the program has "
                               f"{len(program.ops)} ops")
        if bound <= 0:
            raise ProgramError(f"op {index + 1}: declared bound |{program.ops[index].dst}| <= "
                               f"{bound} must be > 0")


def _check_prior(program: Program, slots: dict) -> None:
    if program.prior and not program.prior_column:
        raise ProgramError("prior values need a prior column (prior_column = True)")
    seen: set[str] = set()
    for name, values in program.prior:
        if name not in slots:
            raise ProgramError(f"prior value for unknown slot {name!r}")
        if name in seen:
            raise ProgramError(f"slot {name!r} has two prior values")
        if name in (program.x_slot, program.y_slot):
            raise ProgramError(f"the token input slot {name!r} cannot have a prior value (the "
                               "prior column's token is zero)")
        if len(values) != slots[name].size:
            raise ProgramError(f"prior value for {name!r} has {len(values)} entries, the slot "
                               f"holds {slots[name].size}")
        seen.add(name)


def _check_loop(program: Program) -> None:
    loop = program.loop
    if loop.stop > len(program.ops):
        raise ProgramError(f"loop ends after op {loop.stop}, the program has "
                           f"{len(program.ops)} ops")
    for group in program.groups or ():
        inside = [loop.start <= i < loop.stop for i in group]
        if any(inside) and not all(inside):
            raise ProgramError(f"layer group of ops {group[0] + 1}..{group[-1] + 1} straddles "
                               "the loop's boundary")


def _check_shapes(index: int, op: Op, slots: dict) -> None:
    dst = slots[op.dst]
    match op:
        case Mov(src=src):
            if slots[src].size != dst.size:
                raise _fail(index, op, f"shape mismatch: moves {slots[src].shape_text} "
                                        f"{src!r} into {dst.shape_text} {op.dst!r}")
        case Mul(left=left, right=right, a=a, b=b, c=c):
            if min(a, b, c) < 1:
                raise _fail(index, op, f"mul shape {a}x{b}x{c} has an empty side")
            for name, need, what in ((left, a * b, f"{a}x{b}"), (right, b * c, f"{b}x{c}"),
                                     (op.dst, a * c, f"{a}x{c}")):
                if slots[name].size != need:
                    raise _fail(index, op, f"shape mismatch: {name!r} is "
                                            f"{slots[name].shape_text}, mul needs {what}")
        case Div(num=num, den=den, min_abs=min_abs):
            if slots[den].size != 1:
                raise _fail(index, op, f"divisor {den!r} must be a scalar, is "
                                        f"{slots[den].shape_text}")
            if slots[num].size != dst.size:
                raise _fail(index, op, f"shape mismatch: {num!r} is {slots[num].shape_text}, "
                                        f"{op.dst!r} is {dst.shape_text}")
            if min_abs is not None and min_abs <= 0:
                raise _fail(index, op, f"declared |{den}| lower bound must be > 0, got {min_abs}")
        case Aff(terms=terms, bias=bias):
            if not terms and bias is None:
                raise _fail(index, op, "aff has neither a source nor a bias")
            srcs = [name for name, _ in terms]
            if len(set(srcs)) != len(srcs):
                raise _fail(index, op, "aff names the same source slot twice")
            for name, matrix in terms:
                shape = (len(matrix), len(matrix[0]))
                if shape != (dst.size, slots[name].size):
                    raise _fail(index, op, f"shape mismatch: coefficient for {name!r} is "
                                            f"{shape[0]}x{shape[1]}, needs "
                                            f"{dst.size}x{slots[name].size}")
            if bias is not None and (len(bias) != dst.size or len(bias[0]) != 1):
                raise _fail(index, op, f"shape mismatch: bias has {len(bias)}x{len(bias[0])} "
                                        f"entries, {op.dst!r} needs {dst.size}x1")
        case Hinge(src=src, value=value, terms=terms, domain=domain):
            if slots[src].size != 1:
                raise _fail(index, op, f"hinge input {src!r} must be a scalar, is "
                                        f"{slots[src].shape_text}")
            size = 1 if value is None else slots[value].size
            if dst.size != size or op.dst == src:
                raise _fail(index, op, f"hinge writes {size} entries into {op.dst!r} "
                                        f"({dst.shape_text}), apart from its input")
            if not terms:
                raise _fail(index, op, "hinge has no terms")
            if domain is not None and not domain[0] <= domain[1]:
                raise _fail(index, op, f"hinge domain [{domain[0]}, {domain[1]}] is empty")
        case _:
            raise ProgramError(f"op {index + 1}: unknown operation {op!r}")


def _check_groups(program: Program) -> None:
    for number, group in enumerate(program.groups, start=1):
        if not group:  # the text form cannot write an empty layer, so it would not round-trip
            raise ProgramError(f"layer group {number} is empty")
    flat = [i for group in program.groups for i in group]
    if flat != list(range(len(program.ops))):
        raise ProgramError("layer groups must list every op once, in program order")
    for group in program.groups:
        writes: dict[str, int] = {}
        for i in group:
            op = program.ops[i]
            if op.dst in writes:
                raise ProgramError(
                    f"ops {writes[op.dst] + 1} and {i + 1} both write {op.dst!r} in one layer")
            writes[op.dst] = i
        for i in group:
            reader = program.ops[i]
            for name in reader.reads:
                j = writes.get(name)
                if j is None or j >= i:
                    continue
                if not (is_mlp_op(reader) and not is_mlp_op(program.ops[j])):
                    raise ProgramError(
                        f"op {i + 1} reads {name!r}, which op {j + 1} writes in the same layer; "
                        "only an MLP op (mul, div) may use what the layer's attention "
                        "(mov, aff) wrote")


def is_mlp_op(op: Op) -> bool:
    """mul, div and hinge need the MLP's nonlinearity; mov and aff are done by attention
    heads."""
    return isinstance(op, (Mul, Div, Hinge))
