"""Tokens and exact expressions of the RAW program text (internal to ``construct.language.parser``).

A line becomes ``Token``s (names, numbers, shapes such as ``4x4``, punctuation, and an ``end``
token); ``Cursor`` reads one statement's tokens left to right; ``parse_sum`` and its helpers
evaluate expressions exactly (``Fraction``), with matrices and ``s * I`` (``Ident``) where the
paper's coefficients need them. Every problem is a ``ParseError`` at the offending token.
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from fractions import Fraction

from construct.language.program import Matrix, ProgramError, identity, to_fraction, to_matrix

_NUMBER = re.compile(r"(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_SHAPE = re.compile(r"[0-9]+(?:x[0-9]+)+(?![\w.])")
_PUNCTUATION = ("||", "|", "<=", "**", "(", ")", "[", "]", ",", "=", "+", "-", "*", "/", "^",
                ";")
_UNICODE = {"−": "-", "≤": "<="}  # U+2212 (the paper's minus sign) and U+2264
_SUPERSCRIPTS = {"²": "2", "³": "3"}
_CLOSERS = {")": "(", "]": "["}


class ParseError(ProgramError):
    """Bad program text; ``line`` and ``column`` (1-based) locate the offending token."""

    def __init__(self, line: int, column: int, message: str) -> None:
        super().__init__(f"line {line}, column {column}: {message}")
        self.line = line
        self.column = column
        self.detail = message

    def __reduce__(self) -> tuple:  # the default would call __init__ with the whole message
        return type(self), (self.line, self.column, self.detail)


@dataclasses.dataclass(frozen=True)
class Token:
    kind: str  # name, number, shape (4x4), op (punctuation), end (of a statement or argument)
    text: str
    line: int
    column: int
    end: int  # the column just after the token: `2d` is an implicit product only when adjacent


def error(tok: Token, message: str) -> ParseError:
    return ParseError(tok.line, tok.column, message)


def describe(tok: Token) -> str:
    return "end of line" if tok.kind == "end" and not tok.text else repr(tok.text)


def tokenize(text: str, line: int) -> list[Token]:
    tokens: list[Token] = []
    i = 0
    while i < len(text) and text[i] != "#":
        ch, column = text[i], i + 1
        if ch.isspace():
            i += 1
        elif ch in _SUPERSCRIPTS:  # d² is d ^ 2
            tokens += [Token("op", "^", line, column, column),
                       Token("number", _SUPERSCRIPTS[ch], line, column, column + 1)]
            i += 1
        else:
            kind, size = _scan(text, i, line)
            word = _UNICODE.get(ch) or text[i:i + size]
            tokens.append(Token(kind, word, line, column, column + size))
            i += size
    tokens.append(Token("end", "", line, i + 1, i + 1))
    _check_brackets(tokens)
    return tokens


def _scan(text: str, i: int, line: int) -> tuple[str, int]:
    """Kind and length of the token that starts at ``text[i]``."""
    ch = text[i]
    if ch in _UNICODE:
        return "op", 1
    if match := _SHAPE.match(text, i):
        return "shape", match.end() - i
    if match := _NUMBER.match(text, i):
        end = match.end()
        if end < len(text) and text[end] == ".":  # 1.2.3, 1..5
            bad = re.compile(r"[\w.]*").match(text, end).end()
            raise ParseError(line, i + 1, f"bad number {text[i:bad]!r}")
        return "number", end - i
    if ch.isidentifier():
        end = i + 1
        while end < len(text) and ("a" + text[end]).isidentifier():
            end += 1
        return "name", end - i
    for punctuation in _PUNCTUATION:
        if text.startswith(punctuation, i):
            return "op", len(punctuation)
    raise ParseError(line, i + 1, f"unexpected character {ch!r}")


def _check_brackets(tokens: list[Token]) -> None:
    """Unbalanced brackets are reported where they are, before any parsing guesses around them."""
    open_: list[Token] = []
    for tok in tokens:
        if tok.kind == "op" and tok.text in "([":
            open_.append(tok)
        elif tok.kind == "op" and tok.text in _CLOSERS:
            if not open_:
                raise error(tok, f"unbalanced {tok.text!r}: no {_CLOSERS[tok.text]!r} is open")
            if open_[-1].text != _CLOSERS[tok.text]:
                raise error(tok, f"unbalanced {tok.text!r}: the {open_[-1].text!r} at column "
                                 f"{open_[-1].column} is still open")
            open_.pop()
    if open_:
        raise error(open_[-1], f"unbalanced {open_[-1].text!r}: it is never closed")


class Cursor:
    """The tokens of one statement (or one argument), read left to right."""

    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.pos = 0

    def peek(self, ahead: int = 0) -> Token:
        return self.tokens[min(self.pos + ahead, len(self.tokens) - 1)]

    @property
    def last(self) -> Token:
        return self.tokens[max(self.pos - 1, 0)]

    def next(self) -> Token:
        tok = self.peek()
        self.pos += tok.kind != "end"
        return tok

    def accept(self, *texts: str) -> Token | None:
        tok = self.peek()
        return self.next() if tok.kind in ("op", "name") and tok.text in texts else None

    def expect(self, text: str, context: str) -> Token:
        tok = self.accept(text)
        if tok is None:
            raise error(self.peek(), f"expected {text!r} {context}")
        return tok

    def name(self, what: str) -> Token:
        tok = self.peek()
        if tok.kind != "name":
            raise error(tok, f"expected {what}, found {describe(tok)}")
        return self.next()

    def finish(self, what: str) -> None:
        tok = self.peek()
        if tok.kind != "end":
            raise error(tok, f"unexpected {describe(tok)} after {what}")


# ---------------------------------------------------------------- expressions
@dataclasses.dataclass(frozen=True)
class Ident:
    """``scale * I``; its size is fixed only where the coefficient is used."""

    scale: Fraction


Value = Fraction | Ident | Matrix
Scope = Callable[[Token], Value]


def parse_sum(cur: Cursor, scope: Scope) -> Value:
    value = parse_product(cur, scope)
    while (tok := cur.accept("+", "-")) is not None:
        value = combine(tok.text, value, parse_product(cur, scope), tok)
    return value


def parse_product(cur: Cursor, scope: Scope) -> Value:
    """A product: what a native aff coefficient may be, since ``+`` separates its terms."""
    value = parse_unary(cur, scope)
    while True:
        if (tok := cur.accept("*", "/")) is not None:
            value = combine(tok.text, value, parse_unary(cur, scope), tok)
        elif _implicit(cur):
            value = combine("*", value, _power(cur, scope), cur.peek())
        else:
            return value


def _implicit(cur: Cursor) -> bool:
    """``2d``, ``3d^2``, ``2(d+1)``: a number directly followed by a name or a parenthesis."""
    last, tok = cur.last, cur.peek()
    return (last.kind == "number" and tok.column == last.end
            and (tok.kind == "name" or tok.text == "("))


def parse_unary(cur: Cursor, scope: Scope) -> Value:
    if (tok := cur.accept("-", "+")) is not None:
        value = parse_unary(cur, scope)
        return scaled(value, Fraction(-1)) if tok.text == "-" else value
    return _power(cur, scope)


def _power(cur: Cursor, scope: Scope) -> Value:
    base = _atom(cur, scope)
    if (tok := cur.accept("^", "**")) is None:
        return base
    exponent = parse_unary(cur, scope)
    if not isinstance(base, Fraction) or not isinstance(exponent, Fraction):
        raise error(tok, "only numbers can be raised to a power")
    if exponent.denominator != 1 or (base == 0 and exponent < 0):
        raise error(tok, f"cannot raise {base} to the power {exponent}")
    return base ** int(exponent)


def _atom(cur: Cursor, scope: Scope) -> Value:
    tok = cur.next()
    if tok.kind == "number":
        try:
            return Fraction(tok.text)
        except ValueError:
            raise error(tok, f"bad number {tok.text!r}") from None
    if tok.kind == "name":
        return scope(tok)
    if tok.text == "(":
        value = parse_sum(cur, scope)
        cur.expect(")", "to close '('")
        return value
    raise error(tok, f"expected a number, found {describe(tok)}")


def scaled(value: Value, factor: Fraction) -> Value:
    if isinstance(value, Fraction):
        return value * factor
    if isinstance(value, Ident):
        return Ident(value.scale * factor)
    return tuple(tuple(v * factor for v in row) for row in value)


def combine(op: str, left: Value, right: Value, at: Token) -> Value:
    """``left op right``: numbers exactly; matrices only where the meaning is unambiguous."""
    if op in "*/":
        if isinstance(right, Fraction):
            if op == "/" and right == 0:
                raise error(at, "division by zero")
            return scaled(left, right if op == "*" else 1 / right)
        if op == "*" and isinstance(left, Fraction):
            return scaled(right, left)
        raise error(at, f"{op!r} needs a number on one side (no matrix products)")
    if op == "-":
        right = scaled(right, Fraction(-1))
    if isinstance(left, Fraction) and isinstance(right, Fraction):
        return left + right
    if isinstance(left, Ident) and isinstance(right, Ident):
        return Ident(left.scale + right.scale)
    if isinstance(left, Fraction) or isinstance(right, Fraction):
        raise error(at, "cannot add a number and a matrix (write s*I for a multiple of I)")
    left, right = _sized(left, right, at), _sized(right, left, at)
    if (len(left), len(left[0])) != (len(right), len(right[0])):
        raise error(at, f"cannot add a {dims_text(left)} and a {dims_text(right)} matrix")
    return tuple(tuple(a + b for a, b in zip(ra, rb)) for ra, rb in zip(left, right))


def _sized(value: Ident | Matrix, other: Matrix, at: Token) -> Matrix:
    if not isinstance(value, Ident):
        return value
    if len(other) != len(other[0]):
        raise error(at, f"cannot add I and a {dims_text(other)} matrix")
    return identity(len(other), value.scale)


def entry_word(count: int) -> str:
    return "entry" if count == 1 else "entries"


def dims_text(matrix: Matrix) -> str:
    return f"{len(matrix)}x{len(matrix[0])}"


def param_value(raw: object, tok: Token) -> Value:
    """A given param: a number, a list (a column vector) or a list of rows."""
    if hasattr(raw, "tolist"):
        raw = raw.tolist()
    try:
        if isinstance(raw, (list, tuple)):
            return to_matrix([row if isinstance(row, (list, tuple)) else [row] for row in raw])
        return to_fraction(raw)
    except ProgramError as exc:
        raise error(tok, f"param {tok.text!r}: {exc}") from None

