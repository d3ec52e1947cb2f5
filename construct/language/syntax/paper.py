"""The paper's style of the program text, Appendix A/B listings (internal to ``construct.language.parser``).

Numbered ``op(; ...)`` lines over half-open row ranges of the residual column: row 0 is y, rows
1..d are x, and every other distinct range becomes one slot ``r{i}_{j}``. A read range must
have been written as a whole last, so that one slot per range is faithful. The notation is
described in the ``construct.language.parser`` docstring.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from fractions import Fraction
from typing import TypeVar

from construct.language.syntax.context import Context, shape_problem, wrap
from construct.language.syntax.tokens import (Cursor, Ident, Token, Value, combine, dims_text, error,
                                    parse_sum)
from construct.language.program import (Aff, Div, Matrix, Mov, Mul, Op, Prev, Program, Slot,
                               identity)

_T = TypeVar("_T")


@dataclasses.dataclass(frozen=True)
class _Range:
    """Half-open rows ``lo..hi-1`` of the residual column; ``token`` is where it was written."""

    lo: int
    hi: int
    token: Token

    @property
    def size(self) -> int:
        return self.hi - self.lo

    @property
    def text(self) -> str:
        return f"({self.lo}, {self.hi})"


class Paper:
    """Numbered `op(; ...)` lines over row ranges; each distinct range becomes one slot."""

    kind = "paper"

    def __init__(self, ctx: Context, first: Token) -> None:
        self.ctx, self.first = ctx, first
        self.slots: dict[str, Slot] = {}
        self.rows: dict[str, _Range] = {}
        self.ops: list[Op] = []
        self.op_tokens: list[Token] = []
        self.ranges: list[tuple[_Range, tuple[_Range, ...]]] = []  # per op: written, read
        self.output: _Range | None = None

    def statement(self, cur: Cursor) -> None:
        d = self.ctx.d
        if d is None:
            raise error(cur.peek(), "paper-style statements need the `d` statement first")
        if not self.slots:  # the embedding's slots come first, as in every program
            self.slot(_Range(1, 1 + d, cur.peek()))
            self.slot(_Range(0, 1, cur.peek()))
        if (tok := cur.accept("output")) is not None:
            self.output_statement(cur, tok)
        else:
            self.op(cur)

    def output_statement(self, cur: Cursor, tok: Token) -> None:
        if self.output is not None:
            raise error(tok, f"duplicate `output` statement (first on line "
                             f"{self.output.token.line})")
        self.output = self.range(cur)
        cur.finish("the output range")
        if self.output.size != 1:
            raise error(self.output.token, f"the output must be one row, {self.output.text} "
                                           f"has {self.output.size}")

    def op(self, cur: Cursor) -> None:
        if cur.peek().kind == "number":
            cur.next()  # the listing's step number `7.`: decoration only
        op_tok = cur.name("an operation (mov, mul, div or aff)")
        build = {"mov": self.mov, "mul": self.mul, "div": self.div, "aff": self.aff}.get(
            op_tok.text)
        if build is None:
            raise error(op_tok, f"unknown operation {op_tok.text!r} (expected mov, mul, div "
                                f"or aff)")
        args = _arguments(cur, op_tok)
        op, written, read = wrap(op_tok, lambda: build(op_tok, args))
        if problem := shape_problem(op, self.size, self.show):
            raise error(op_tok, problem)
        self.ops.append(op)
        self.op_tokens.append(op_tok)
        self.ranges.append((written, read))

    def slot(self, rows: _Range) -> str:
        d = self.ctx.d
        key = (rows.lo, rows.hi)
        name = "y" if key == (0, 1) else "x" if key == (1, 1 + d) else f"r{rows.lo}_{rows.hi}"
        if name not in self.slots:
            self.slots[name] = Slot(name, rows.size)
            self.rows[name] = rows
        return name

    def size(self, name: str) -> int:
        return self.slots[name].size

    def show(self, name: str) -> str:
        return f"rows {self.rows[name].text}"

    def range(self, cur: Cursor, first: _Range | None = None,
              empty: bool = False) -> _Range | None:
        tok = cur.peek()
        if cur.accept("same"):
            if first is None:
                raise error(tok, "'same' repeats the op's first row range, which is absent")
            return _Range(first.lo, first.hi, tok)
        cur.expect("(", "to start a row range")
        if cur.accept(")"):
            if empty:
                return None
            raise error(tok, "the empty row range () is only allowed as an aff source")
        lo = self.ctx.integer(cur, "a row index", 0)
        cur.expect(",", "between the ends of a row range")
        hi = self.ctx.integer(cur, "a row index", 0)
        cur.expect(")", "after row range")
        if hi <= lo:
            raise error(tok, f"row range ({lo}, {hi}) is empty")
        return _Range(lo, hi, tok)

    def mov(self, op_tok: Token, args: list[Cursor]) -> tuple[Op, _Range, tuple[_Range, ...]]:
        _arity(op_tok, args, 4, "t, s, (i,j), (i',j')")
        t = _whole(args[0], lambda c: self.ctx.integer(c, "the destination column", 0))
        s = _whole(args[1], lambda c: self.ctx.integer(c, "the source column", 0))
        src = _whole(args[2], self.range)
        dst = _whole(args[3], lambda c: self.range(c, src))
        if t <= s:
            raise error(args[0].tokens[0], f"mov reads an earlier column: destination column "
                                           f"t = {t} must come after source column s = {s}")
        # Columns are x1, y1, x2, ...: column t is an x column when t is even.
        read = Prev(k=t - s, on="x" if t % 2 == 0 else "y")
        return Mov(self.slot(dst), self.slot(src), read), dst, (src,)

    def mul(self, op_tok: Token, args: list[Cursor]) -> tuple[Op, _Range, tuple[_Range, ...]]:
        _arity(op_tok, args, 6, "a, b, c, (i,j), (i',j'), (i'',j'')")
        a, b, c = (_whole(arg, lambda cur, n=n: self.ctx.integer(cur, n, 1))
                   for arg, n in zip(args, "abc"))
        left, right = _whole(args[3], self.range), _whole(args[4], self.range)
        dst = _whole(args[5], lambda cur: self.range(cur, left))
        return (Mul(self.slot(dst), self.slot(left), self.slot(right), a, b, c), dst,
                (left, right))

    def div(self, op_tok: Token, args: list[Cursor]) -> tuple[Op, _Range, tuple[_Range, ...]]:
        _arity(op_tok, args, 3, "(i,j), i', (i'',j'')")
        num = _whole(args[0], self.range)
        row = _whole(args[1], lambda cur: self.ctx.integer(cur, "the divisor row", 0))
        den = _Range(row, row + 1, args[1].tokens[0])
        dst = _whole(args[2], lambda cur: self.range(cur, num))
        bound = self.ctx.named("div_min", Fraction(1), op_tok)
        if not isinstance(bound, Fraction) or bound <= 0:
            raise error(op_tok, f"param div_min must be a number > 0, got {bound}")
        return Div(self.slot(dst), self.slot(num), self.slot(den), bound), dst, (num, den)

    def aff(self, op_tok: Token, args: list[Cursor]) -> tuple[Op, _Range, tuple[_Range, ...]]:
        positional = [arg for arg in args if arg.peek(1).text != "="]
        if len(positional) != 3 or args[:3] != positional:
            order = "" if len(positional) != 3 else ", with a keyword argument before them"
            raise error(op_tok, f"aff takes 3 row ranges, then optional W1 =, W2 =, b = "
                                f"arguments; got {len(positional)} ranges{order}")
        first = _whole(args[0], lambda cur: self.range(cur, empty=True))
        second = _whole(args[1], lambda cur: self.range(cur, first, empty=True))
        dst = _whole(args[2], lambda cur: self.range(cur, first))
        given: dict[str, tuple[Value, Token]] = {}
        for arg in args[3:]:
            key = arg.name("W1, W2 or b")
            if key.text not in ("W1", "W2", "b") or key.text in given:
                raise error(key, f"unknown or repeated aff argument {key.text!r} (expected "
                                 f"W1, W2 and b, each at most once)")
            arg.next()  # the `=`
            given[key.text] = (_whole(arg, lambda cur: parse_sum(cur, self.ctx.coefficient)), key)
        terms: dict[str, Matrix] = {}
        for source, key in ((first, "W1"), (second, "W2")):
            value, tok = given.get(key, (Fraction(1), op_tok))  # a missing W is the identity
            if source is None:
                if key in given:
                    raise error(tok, f"{key} is given but its source range is ()")
                continue
            matrix, name = _weight(value, tok, key, dst.size, source.size), self.slot(source)
            terms[name] = combine("+", terms[name], matrix, tok) if name in terms else matrix
        bias = _bias(*given["b"], dst.size) if "b" in given else None
        reads = tuple(source for source in (first, second) if source is not None)
        return Aff(self.slot(dst), tuple(terms.items()), bias), dst, reads

    def build(self) -> Program:
        if self.output is None:
            raise error(self.ctx.head, "missing `output (i, j)` statement")
        # The embedding writes y and x before op 1.
        writes = [(rows, 0) for rows in (self.rows["y"], self.rows["x"])]
        for index, (written, read) in enumerate(self.ranges, start=1):
            for rows in read:
                self.check_read(rows, writes)
            writes.append((written, index))
        self.check_read(self.output, writes)
        return self.ctx.program(self.slots, self.ops, self.op_tokens, "x", "y",
                                self.slot(self.output), None)

    def check_read(self, rows: _Range, writes: list[tuple[_Range, int]]) -> None:
        """One slot per range is faithful only if a read range was last written as a whole."""
        overlapping = [(w, i) for w, i in writes if w.lo < rows.hi and rows.lo < w.hi]
        if not overlapping:
            raise error(rows.token, f"rows {rows.text} are read before anything writes them")
        last, index = overlapping[-1]
        if (last.lo, last.hi) != (rows.lo, rows.hi):
            writer = ("the input embedding" if index == 0
                      else f"op {index} (line {last.token.line})")
            raise error(rows.token, f"rows {rows.text} are read after {writer} wrote the "
                                    f"overlapping rows {last.text}; a slot cannot follow a "
                                    f"partial overwrite")


def _arguments(cur: Cursor, op_tok: Token) -> list[Cursor]:
    """The comma-separated arguments of ``op(; ...)``, each on its own cursor."""
    cur.expect("(", f"after {op_tok.text!r}")
    if cur.peek().kind == "name" and cur.peek(1).text == ";":
        cur.next()  # `mov(H; ...)`: the hidden-state name of the paper's signature
    cur.accept(";")
    args: list[Cursor] = []
    current: list[Token] = []
    depth = 0  # brackets are balanced on every line, so the op's `)` is at depth 0
    while True:
        tok = cur.next()
        if tok.kind == "op" and depth == 0 and tok.text in (",", ")"):
            if current or tok.text == "," or args:
                if not current:
                    raise error(tok, f"empty argument before {tok.text!r}")
                args.append(Cursor(current + [Token("end", tok.text, tok.line, tok.column,
                                                    tok.column)]))
            current = []
            if tok.text == ")":
                break
            continue
        if tok.kind == "op" and tok.text in "([":
            depth += 1
        elif tok.kind == "op" and tok.text in ")]":
            depth -= 1
        current.append(tok)
    cur.finish(f"the {op_tok.text} op")
    return args


def _arity(op_tok: Token, args: list[Cursor], count: int, signature: str) -> None:
    if len(args) != count:
        raise error(op_tok, f"{op_tok.text} takes {count} arguments ({signature}), "
                            f"got {len(args)}")


def _whole(cur: Cursor, parse: Callable[[Cursor], _T]) -> _T:
    value = parse(cur)
    cur.finish("the argument")
    return value


def _weight(value: Value, tok: Token, key: str, rows: int, cols: int) -> Matrix:
    """W1/W2 for a ``rows x cols`` block: s or s*I is s*I; a vector for one row is its row."""
    if isinstance(value, (Fraction, Ident)):
        if rows != cols:
            raise error(tok, f"{key} = s*I needs as many destination as source rows, not "
                             f"{rows} and {cols}")
        return identity(rows, value if isinstance(value, Fraction) else value.scale)
    if (len(value), len(value[0])) == (rows, cols):
        return value
    if rows == 1 and (len(value), len(value[0])) == (cols, 1):
        return (tuple(row[0] for row in value),)  # W1 = w gives w^T x
    raise error(tok, f"{key} is {dims_text(value)}, needs {rows}x{cols}")


def _bias(value: Value, tok: Token, rows: int) -> Matrix:
    """b for ``rows`` rows: a number in every row, s*I flattened on n*n rows, a vector as is."""
    if isinstance(value, Fraction):
        return tuple((value,) for _ in range(rows))
    if isinstance(value, Ident):
        n = math.isqrt(rows)
        if n * n != rows:
            raise error(tok, f"b = s*I needs a square number of rows (n x n flattened), "
                             f"not {rows}")
        return tuple((v,) for row in identity(n, value.scale) for v in row)
    flat = [v for row in value for v in row]  # a vector, or a matrix flattened row-major
    if len(flat) != rows:
        raise error(tok, f"b has {len(flat)} entries, the destination has {rows} rows")
    return tuple((v,) for v in flat)
