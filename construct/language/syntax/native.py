"""The native style of the program text (internal to ``construct.language.parser``).

Declared slots (``slot NAME SHAPE``), ``input``/``output``, ``DST = op ...`` lines joined by
``||`` into layer groups, and declared bounds ``assume |SLOT| <= EXPR``, which attach to the
last op (in file order) that wrote SLOT. This is what ``construct.language.printer`` writes.
"""
from __future__ import annotations

from fractions import Fraction

from construct.language.syntax.context import Context, shape_problem, wrap
from construct.language.syntax.tokens import (Cursor, Token, describe, dims_text, entry_word, error,
                                    parse_product, parse_unary, scaled)
from construct.language.program import (KINDS, Aff, Div, Fixed, Loop, Matrix, MeanOf, Mov, Mul, Op,
                               Prev, Program, ProgramError, ReadMap, Slot, identity)


class Native:
    """Declared slots, `DST = op ...` lines and `||` layer groups."""

    kind = "native"

    def __init__(self, ctx: Context, first: Token) -> None:
        self.ctx, self.first = ctx, first
        self.slots: dict[str, Slot] = {}
        self.slot_lines: dict[str, int] = {}
        self.ops: list[Op] = []
        self.op_tokens: list[Token] = []
        self.reads: list[tuple[Token, ...]] = []
        self.groups: list[tuple[int, ...]] = []
        self.grouped = False  # set by a `||` or by `groups explicit`
        self.once: dict[str, tuple[Token, ...]] = {}  # input, output, groups: their tokens
        self.assumptions: list[tuple[int, Fraction]] = []  # (op index, bound), in file order
        self.prior_column = False
        self.prior: dict[str, tuple[Fraction, ...]] = {}
        self.loop_open: tuple[Token, int, int] | None = None  # (repeat token, first op, times)
        self.loop: Loop | None = None

    def statement(self, cur: Cursor) -> None:
        if cur.peek(1).text == "=":
            return self.op_line(cur.tokens)
        tok = cur.next()
        if tok.text in self.once:
            raise error(tok, f"duplicate `{tok.text}` statement (first on line "
                             f"{self.once[tok.text][0].line})")
        if tok.text == "slot":
            return self.slot_statement(cur)
        if tok.text == "assume":
            return self.assume(cur)
        if tok.text == "prior":
            return self.prior_statement(cur)
        if tok.text == "repeat":
            return self.repeat(tok, cur)
        if tok.text == "end":
            return self.end_repeat(tok, cur)
        if tok.text == "groups":
            cur.expect("explicit", "after `groups`")
            self.grouped = True
            args: tuple[Token, ...] = ()
        else:
            args = tuple(self.slot(cur.name("a slot name"))
                         for _ in range(2 if tok.text == "input" else 1))
        cur.finish(f"the {tok.text} statement")
        self.once[tok.text] = (tok, *args)

    def slot_statement(self, cur: Cursor) -> None:
        name = cur.name("a slot name")
        if name.text in self.slots:
            raise error(name, f"slot {name.text!r} is already declared on line "
                              f"{self.slot_lines[name.text]}")
        tok = cur.peek()
        if tok.kind == "shape":
            dims = [int(v) for v in cur.next().text.split("x")]
            if len(dims) != 2:
                raise error(tok, f"a slot shape is n or RxC, got {tok.text!r}")
        else:
            dims = [self.ctx.integer(cur, "a slot size", 1), 1]
        cur.finish("the slot shape")
        try:
            self.slots[name.text] = Slot(name.text, *dims)
        except ProgramError as exc:
            raise error(tok, str(exc)) from None
        self.slot_lines[name.text] = name.line

    def prior_statement(self, cur: Cursor) -> None:
        """``prior column`` or ``prior SLOT [v, ...]`` (the slot's value in the prior column)."""
        if cur.peek().text == "column" and cur.peek(1).kind == "end":  # else a slot `column`
            cur.next()
            self.prior_column = True
            return
        slot = self.slot(cur.name("`column` or a slot name"))
        if slot.text in self.prior:
            raise error(slot, f"slot {slot.text!r} already has a prior value")
        tok = cur.peek()
        matrix = self.ctx.literal(cur)
        cur.finish("the prior value")
        if len(matrix[0]) != 1 or len(matrix) != self.size(slot.text):
            raise error(tok, f"prior value must be a flat list of {self.size(slot.text)} "
                             f"entries for {self.show(slot.text)}, got {dims_text(matrix)}")
        self.prior_column = True
        self.prior[slot.text] = tuple(row[0] for row in matrix)

    def repeat(self, tok: Token, cur: Cursor) -> None:
        if self.loop_open is not None or self.loop is not None:
            raise error(tok, "a program holds at most one `repeat` block")
        times = self.ctx.integer(cur, "the repeat count", 1)
        cur.finish("`repeat N`")
        self.loop_open = (tok, len(self.ops), times)

    def end_repeat(self, tok: Token, cur: Cursor) -> None:
        cur.expect("repeat", "after `end`")
        cur.finish("`end repeat`")
        if self.loop_open is None:
            raise error(tok, "`end repeat` without `repeat`")
        start_tok, start, times = self.loop_open
        if start == len(self.ops):
            raise error(start_tok, "the repeat block holds no op")
        self.loop, self.loop_open = Loop(start, len(self.ops), times), None

    def assume(self, cur: Cursor) -> None:
        """``assume |SLOT| <= EXPR``: a bound on what the last op so far wrote into SLOT."""
        cur.expect("|", "before the slot (assume |SLOT| <= BOUND)")
        slot = self.slot(cur.name("a slot name"))
        cur.expect("|", f"after the slot {slot.text!r}")
        cur.expect("<=", f"after |{slot.text}|")
        tok = cur.peek()
        bound = self.ctx.number(cur)
        cur.finish("the bound")
        writers = [index for index, op in enumerate(self.ops) if op.dst == slot.text]
        if not writers:
            raise error(slot, f"assume: no op has written slot {slot.text!r} yet")
        if bound <= 0:
            raise error(tok, f"the bound on |{slot.text}| must be > 0, got {bound}")
        self.assumptions.append((writers[-1], bound))

    def slot(self, tok: Token) -> Token:
        if tok.text not in self.slots:
            raise error(tok, f"unknown slot {tok.text!r}")
        return tok

    def size(self, name: str) -> int:
        return self.slots[name].size

    def show(self, name: str) -> str:
        return f"{name!r} ({self.slots[name].shape_text})"

    def op_line(self, tokens: list[Token]) -> None:
        segments, start = [], 0
        for index, tok in enumerate(tokens):
            if tok.kind == "end" or (tok.kind == "op" and tok.text == "||"):
                if index == start:  # `|| a = ...` or `a = ... ||`: point at the `||`
                    bars, side = (tok, "before") if tok.kind == "op" else (tokens[-2], "after")
                    raise error(bars, f"expected an op {side} '||'")
                segments.append(tokens[start:index] + [Token("end", tok.text, tok.line,
                                                             tok.column, tok.column)])
                start = index + 1
        self.grouped |= len(segments) > 1
        first = len(self.ops)
        for segment in segments:
            self.op(Cursor(segment))
        self.groups.append(tuple(range(first, len(self.ops))))

    def op(self, cur: Cursor) -> None:
        dst = self.slot(cur.name("a destination slot")).text
        cur.expect("=", "after the destination slot")
        op_tok = cur.name("an operation")
        build = {"mov": self.mov, "mul": self.mul, "dot": self.dot, "div": self.div,
                 "aff": self.aff}.get(op_tok.text)
        if build is None:
            raise error(op_tok, f"unknown operation {op_tok.text!r} (expected mov, mul, dot, "
                                f"div or aff)")
        reads: list[Token] = []
        op = wrap(op_tok, lambda: build(cur, dst, reads))
        cur.finish(f"the {op_tok.text} op")
        if problem := shape_problem(op, self.size, self.show):
            raise error(op_tok, problem)
        self.ops.append(op)
        self.op_tokens.append(op_tok)
        self.reads.append(tuple(reads))

    def read(self, cur: Cursor, reads: list[Token], what: str = "a source slot") -> str:
        tok = self.slot(cur.name(what))
        reads.append(tok)
        return tok.text

    def mov(self, cur: Cursor, dst: str, reads: list[Token]) -> Op:
        return Mov(dst, self.read(cur, reads), _read_map(cur, self.ctx))

    def mul(self, cur: Cursor, dst: str, reads: list[Token]) -> Op:
        left, right = self.read(cur, reads), self.read(cur, reads)
        tok = cur.next()
        if tok.kind != "shape" or tok.text.count("x") != 2:
            raise error(tok, f"expected a mul shape AxBxC, found {describe(tok)}")
        a, b, c = (int(v) for v in tok.text.split("x"))
        if min(a, b, c) < 1:
            raise error(tok, f"mul shape {tok.text} has an empty side")
        return Mul(dst, left, right, a, b, c)

    def dot(self, cur: Cursor, dst: str, reads: list[Token]) -> Op:
        left, right = self.read(cur, reads), self.read(cur, reads)
        return Mul(dst, left, right, 1, self.size(left), 1)

    def div(self, cur: Cursor, dst: str, reads: list[Token]) -> Op:
        num, den = self.read(cur, reads), self.read(cur, reads)
        bound = None  # the compiler proves a floor, or refuses (construct.compiler.intervals)
        if cur.accept("min"):
            tok = cur.peek()
            if (bound := self.ctx.number(cur)) <= 0:
                raise error(tok, f"the bound on |{den}| must be > 0, got {bound}")
        return Div(dst, num, den, bound)

    def aff(self, cur: Cursor, dst: str, reads: list[Token]) -> Op:
        terms: dict[str, Matrix] = {}
        bias: Matrix | None = None
        while cur.peek().kind != "end":
            sign = cur.accept("+", "-")
            if sign is None and (terms or bias is not None):
                raise error(cur.peek(), "expected '+' or '-' between aff terms")
            factor = Fraction(-1 if sign is not None and sign.text == "-" else 1)
            if cur.peek().text == "bias" and cur.peek(1).text == "[":  # else a slot named bias
                if bias is not None:
                    raise error(cur.peek(), "aff has two biases")
                cur.next()
                bias = scaled(self.bias(cur, dst), factor)
                continue
            src = self.read(cur, reads, "a source slot or bias [...]")
            if src in terms:
                raise error(reads[-1], f"aff names slot {src!r} twice")
            cur.expect("*", f"after source slot {src!r}")
            terms[src] = scaled(self.coefficient(cur, dst, src), factor)
        return Aff(dst, tuple(terms.items()), bias)

    def coefficient(self, cur: Cursor, dst: str, src: str) -> Matrix:
        tok, need = cur.peek(), (self.size(dst), self.size(src))
        if tok.text == "[":
            matrix = self.ctx.literal(cur)
            if (len(matrix), len(matrix[0])) != need:
                raise error(tok, f"coefficient for {src!r} is {dims_text(matrix)}, needs "
                                 f"{need[0]}x{need[1]} (size of {dst!r} x size of {src!r})")
            return matrix
        scale = self.ctx.number(cur, parse_product)  # a product: `+` and `-` separate the terms
        if need[0] != need[1]:
            raise error(tok, f"a number coefficient s means s*I and needs {dst!r} and {src!r} "
                             f"of one size, not {need[0]} and {need[1]}; write [[...]]")
        return identity(need[0], scale)

    def bias(self, cur: Cursor, dst: str) -> Matrix:
        tok = cur.peek()
        matrix = self.ctx.literal(cur)
        if len(matrix[0]) != 1 or len(matrix) != self.size(dst):
            raise error(tok, f"bias must be a flat list of {self.size(dst)} entries for "
                             f"{dst!r}, got {dims_text(matrix)}")
        return matrix

    def build(self) -> Program:
        ctx = self.ctx
        if self.loop_open is not None:
            raise error(self.loop_open[0], "`repeat` without `end repeat`")
        for statement in ("input", "output"):
            if statement not in self.once:
                raise error(ctx.head, f"missing `{statement}` statement")
        _, x, y = self.once["input"]
        _, output = self.once["output"]
        for tok, rows, role in ((x, ctx.d, "x"), (y, 1, "y")):
            if self.size(tok.text) != rows:
                raise error(tok, f"input slot {self.show(tok.text)} receives the token's "
                                 f"{role} and must hold {rows} {entry_word(rows)}")
        if x.text == y.text:
            raise error(y, "the x and y inputs must be different slots")
        if self.size(output.text) != 1:
            raise error(output, f"output slot {self.show(output.text)} must be a scalar")
        written = {x.text, y.text, *self.prior}
        for op, reads in zip(self.ops, self.reads):
            for tok in reads:
                if tok.text not in written:
                    raise error(tok, f"slot {tok.text!r} is read before anything writes it")
            written.add(op.dst)
        if output.text not in written:
            raise error(output, f"output slot {output.text!r} is never written")
        groups = tuple(self.groups) if self.grouped else None
        # Canonical order, as the printer writes them: by op index, file order within an op.
        assumptions = tuple(sorted(self.assumptions, key=lambda pair: pair[0]))
        return ctx.program(self.slots, self.ops, self.op_tokens, x.text, y.text, output.text,
                           groups, assumptions, prior_column=self.prior_column,
                           prior=tuple(self.prior.items()), loop=self.loop)


_READ_MAPS = "prev, self, back K, col K or mean x|y"


def _read_map(cur: Cursor, ctx: Context) -> ReadMap:
    """The spellings of ``ReadMap.text()`` (back(3), col(0), mean(y)) and their bare forms."""
    tok = cur.next()
    if tok.kind != "name":
        raise error(tok, f"expected a read map ({_READ_MAPS}), found {describe(tok)}")
    if tok.text in ("prev", "self"):
        return Prev(1 if tok.text == "prev" else 0, _on(cur))
    if tok.text == "back":
        return Prev(ctx.integer(cur, "the back distance", 0, parse_unary), _on(cur))
    if tok.text == "col":
        return Fixed(ctx.integer(cur, "the column", 0, parse_unary))
    if tok.text == "mean":
        return MeanOf(_kind(cur))
    raise error(tok, f"unknown read map {tok.text!r} (expected {_READ_MAPS})")


def _on(cur: Cursor) -> str | None:
    return _kind(cur) if cur.accept("on") else None


def _kind(cur: Cursor) -> str:
    paren = cur.accept("(")
    tok = cur.name("a column kind (x or y)")
    if tok.text not in KINDS:
        raise error(tok, f"unknown column kind {tok.text!r} (expected x or y)")
    if paren:
        cur.expect(")", "after the column kind")
    return tok.text
