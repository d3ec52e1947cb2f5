"""What both styles of the program text share (internal to ``construct.language.parser``).

``Context`` reads the header statements (``program NAME``, ``d EXPR``, ``param NAME = VALUE``),
resolves names in expressions (params given by the caller win over the text's), and builds
the final ``Program``, turning a late ``ProgramError`` into a located ``ParseError``.
``wrap`` and ``shape_problem`` check one op as it is read, in either style.
"""
from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from fractions import Fraction
from typing import TypeVar

from construct.language.syntax.tokens import (Cursor, Ident, ParseError, Scope, Token, Value, describe,
                                    entry_word, error, param_value, parse_sum)
from construct.language.program import Div, Matrix, Mov, Mul, Op, Program, ProgramError, Slot

PLAIN_NAME = re.compile(r"[\w-]+")  # program names printed without quotes
_PROGRAM = re.compile(r"(\s*)program(?=[\s#]|$)")
_PROGRAM_NAME = re.compile(r"\s*(\"(?:[^\"\\]|\\.)*\"|[\w-]+)\s*(?:#.*)?$")
ALIASES = {"λ": "lam", "α": "alpha"}
_T = TypeVar("_T")


class Context:
    """What both styles share: the program statement, d, params and expression scopes."""

    def __init__(self, given: dict[str, object]) -> None:
        self.given = {ALIASES.get(k, k): v for k, v in given.items()}
        self.params: dict[str, Value] = {}
        self.param_lines: dict[str, int] = {}
        self.head: Token | None = None  # the `program` keyword; missing statements point here
        self.name = ""
        self.d: int | None = None
        self.d_line = 0

    def program_statement(self, raw: str, line: int) -> bool:
        """Handle a `program NAME` line (raw text: names may hold `-` and digits first)."""
        match = _PROGRAM.match(raw)
        if match is None or raw[match.end():].lstrip().startswith("="):  # a slot named program
            return False
        head = Token("name", "program", line, match.end(1) + 1, match.end() + 1)
        if self.head is not None:
            raise error(head, f"duplicate `program` statement (first on line {self.head.line})")
        name = _PROGRAM_NAME.match(raw, match.end())
        column = len(raw) - len(raw[match.end():].lstrip()) + 1
        if name is None:
            raise ParseError(line, column, "expected a program name (letters, digits, _ and -, "
                                           "or a quoted string) after `program`")
        try:
            self.name = json.loads(name[1]) if name[1].startswith('"') else name[1]
        except json.JSONDecodeError as exc:
            raise ParseError(line, column, f"bad quoted program name: {exc.msg}") from None
        self.head = head
        return True

    def header(self, cur: Cursor) -> None:
        tok = cur.next()
        if tok.text == "d" and tok.kind == "name":
            if self.d is not None:
                raise error(tok, f"duplicate `d` statement (first on line {self.d_line})")
            self.d, self.d_line = self.integer(cur, "d", 1), tok.line
            cur.finish("the dimension")
        elif tok.text == "param" and tok.kind == "name":
            self.param(cur)
        else:
            raise error(tok, f"unknown statement {describe(tok)}")

    def param(self, cur: Cursor) -> None:
        name_tok = cur.name("a param name")
        cur.expect("=", "after the param name")
        name = ALIASES.get(name_tok.text, name_tok.text)
        if name in self.param_lines:
            raise error(name_tok, f"param {name_tok.text!r} is already declared on line "
                                  f"{self.param_lines[name]}")
        self.param_lines[name] = name_tok.line
        if name in self.given:  # the caller's value wins; the text's is not even evaluated
            return
        self.params[name] = (self.literal(cur) if cur.peek().text == "["
                             else parse_sum(cur, self.coefficient))
        cur.finish("the param value")

    def lookup(self, tok: Token) -> Value:
        name = ALIASES.get(tok.text, tok.text)
        if name == "d" and self.d is not None:
            return Fraction(self.d)
        if name in self.given:
            return param_value(self.given[name], tok)
        if name in self.params:
            return self.params[name]
        raise error(tok, f"unknown param {tok.text!r}")

    def named(self, name: str, default: Value, tok: Token) -> Value:
        """The param ``name`` (errors at ``tok``), or ``default`` when nobody set it."""
        known = name in self.given or name in self.params
        return self.lookup(dataclasses.replace(tok, text=name)) if known else default

    def coefficient(self, tok: Token) -> Value:
        """Paper coefficients (and params) may also name the identity ``I``."""
        return Ident(Fraction(1)) if tok.text == "I" else self.lookup(tok)

    def number(self, cur: Cursor,
               parse: Callable[[Cursor, Scope], Value] = parse_sum) -> Fraction:
        tok = cur.peek()
        value = parse(cur, self.lookup)
        if not isinstance(value, Fraction):
            raise error(tok, "expected a number here, not a matrix or vector")
        return value

    def integer(self, cur: Cursor, what: str, minimum: int,
                parse: Callable[[Cursor, Scope], Value] = parse_sum) -> int:
        tok = cur.peek()
        value = self.number(cur, parse)
        if value.denominator != 1 or value < minimum:
            raise error(tok, f"{what} must be an integer >= {minimum}, got {value}")
        return int(value)

    def literal(self, cur: Cursor) -> Matrix:
        """``[a, b]`` (a column) or ``[[a, b], [c, e]]`` (rows); entries are expressions."""
        open_ = cur.expect("[", "to start a list")
        if cur.peek().text == "[":
            rows = [self._entries(cur)]
            while cur.accept(","):
                rows.append(self._entries(cur))
        else:
            rows = [[value] for value in self._entries(cur, opened=True)]
        cur.expect("]", "after the list entries")
        if len({len(row) for row in rows}) != 1:
            raise error(open_, "matrix rows have different lengths")
        return tuple(tuple(row) for row in rows)

    def _entries(self, cur: Cursor, opened: bool = False) -> list[Fraction]:
        if not opened:
            cur.expect("[", "to start a matrix row")
        values = [self.number(cur)]
        while cur.accept(","):
            values.append(self.number(cur))
        if not opened:
            cur.expect("]", "after the row entries")
        return values

    def program(self, slots: dict[str, Slot], ops: list[Op], op_tokens: list[Token], x: str,
                y: str, output: str, groups: tuple[tuple[int, ...], ...] | None,
                assumptions: tuple[tuple[int, Fraction], ...] = (),
                **extra: object) -> Program:
        try:
            return Program(name=self.name, d=self.d, slots=tuple(slots.values()),
                           ops=tuple(ops), x_slot=x, y_slot=y, output=output, groups=groups,
                           assumptions=assumptions, **extra)
        except ProgramError as exc:
            # The program check found what the parser does not test itself (layer groups):
            # point at the op it names, else at the program statement.
            found = re.search(r"\bops? (\d+)(?: and (\d+))?", str(exc))
            index = int(found[2] or found[1]) - 1 if found else -1
            raise error(op_tokens[index] if 0 <= index < len(op_tokens) else self.head,
                        str(exc)) from None


def wrap(tok: Token, build: Callable[[], _T]) -> _T:
    """Build an op; a ProgramError from the op classes becomes a ParseError at ``tok``."""
    try:
        return build()
    except ParseError:
        raise
    except ProgramError as exc:
        raise error(tok, str(exc)) from None


def shape_problem(op: Op, size: Callable[[str], int], show: Callable[[str], str]) -> str | None:
    """Why ``op``'s slots do not fit its shape, or None (aff coefficients are checked as read)."""
    match op:
        case Mov(dst=dst, src=src) if size(src) != size(dst):
            return f"shape mismatch: mov copies {show(src)} into {show(dst)}"
        case Mul(dst=dst, left=left, right=right, a=a, b=b, c=c):
            for role, name, rows, cols in (("left operand", left, a, b),
                                           ("right operand", right, b, c),
                                           ("destination", dst, a, c)):
                if size(name) != rows * cols:
                    return (f"shape mismatch: mul {a}x{b}x{c} needs its {role} {show(name)} "
                            f"to hold {rows}x{cols} = {rows * cols} {entry_word(rows * cols)}, "
                            f"it holds {size(name)}")
        case Div(dst=dst, num=num, den=den):
            if size(den) != 1:
                return f"the divisor {show(den)} must be a single entry"
            if size(num) != size(dst):
                return f"shape mismatch: div writes {show(num)} / |{den}| into {show(dst)}"
    return None
