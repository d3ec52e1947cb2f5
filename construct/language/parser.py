"""Parser for the text form of RAW programs, in the native or the paper style.

One statement per line; ``#`` starts a comment; blank lines are ignored. A file uses one op
style throughout. Header statements (both styles)::

    program NAME                  first statement; NAME is [letters digits _ -]+ or "json string"
    d EXPR                        the dimension, an integer >= 1 (``d d`` reads the param d)
    param NAME = VALUE            VALUE: an expression, a list [a, b] (a column) or [[a, b], ..];
                                  params given to ``parse_program`` override these

Native style (what ``construct.language.printer`` writes)::

    slot NAME SHAPE               SHAPE: n (an n x 1 vector) or RxC (a matrix, row-major)
    input XSLOT YSLOT             the slots the embedding fills with the token's x and y
    output SLOT                   the scalar prediction
    groups explicit               every op line is one layer group, even without ||
    DST = mov SRC READ            READ: prev | self | back K | col K | mean KIND, where prev,
                                  self and back K may end in `on KIND` (KIND: x or y); back(K),
                                  col(K), mean(KIND) are accepted too
    DST = mul LEFT RIGHT AxBxC    LEFT read as A x B, RIGHT as B x C
    DST = dot LEFT RIGHT          mul with shape 1 x size(LEFT) x 1
    DST = div NUM DEN [min EXPR]  NUM / |DEN|, declaring |DEN| >= EXPR (checked per task by
                                  verify); without it the compiler proves a floor or refuses
    DST = aff [±] SRC * COEF ± ... [± bias [v, ...]]
                                  COEF: a matrix [[..], ..] or a product-level expression s
                                  meaning s * I (put sums in parentheses: + separates terms)
    OP || OP || ...               ops on one line form one layer group (Program.groups)
    prior column                  the sequence starts with a prior column (zero token)
    prior SLOT [v, ...]           SLOT's value in the prior column (implies `prior column`)
    repeat N ... end repeat       the ops between form a loop body run N times
    assume |SLOT| <= EXPR         a declared bound (Program.assumptions): every entry of what
                                  the last op so far (in file order) wrote into SLOT is at most
                                  EXPR > 0 in magnitude; `≤` is accepted for `<=`

Paper style (Appendix A/B listings). Rows are half-open ranges; row 0 is y, rows 1..d are x;
(0, 1) becomes the slot ``y``, (1, 1+d) the slot ``x``, any other (i, j) the slot ``r{i}_{j}``::

    output (i, j)                           the one-row prediction range
    [n.] mov(; t, s, SRC, DST)              Mov(DST, SRC, Prev(t - s, on=x if t even else y))
    [n.] mul(; a, b, c, LEFT, RIGHT, DST)
    [n.] div(; NUM, ROW, DST)               divisor rows (ROW, ROW + 1), bound = param div_min (1)
    [n.] aff(; SRC1, SRC2, DST, W1 = E, W2 = E, b = E)
    RANGE: (i, j) | () for an absent aff source | same (the op's first range)

In W1/W2 a number or s*I is s * I, a vector v for a one-row destination is the row v^T, and a
missing W for a present source is I. As b, a number fills every row, s*I on n*n rows is the
flattened n x n matrix s*I, a vector is a column.

Expressions: numbers (exact: 0.1 is 1/10), param names, ``d``, ``I`` (paper coefficients), + -
* / ^ ** and unary signs, parentheses, implicit products ``2d``, ``3d^2``, ``2α``; ``d²``, ``λ``
(lam), ``α`` (alpha) and ``−`` (minus) as printed in the paper.

The work is split by concern: ``parse_tokens`` (tokens, exact expressions, ``ParseError``),
``parse_context`` (header statements, params, building the ``Program``), ``parse_native`` and
``parse_paper`` (the two op styles); this module picks the style of each statement.
"""
from __future__ import annotations

from construct.language.syntax.context import PLAIN_NAME, Context
from construct.language.syntax.native import Native
from construct.language.syntax.paper import Paper
from construct.language.syntax.tokens import Cursor, ParseError, Token, error, tokenize
from construct.language.program import Program

__all__ = ["PLAIN_NAME", "ParseError", "parse_program"]


def parse_program(text: str, params: dict[str, object] | None = None) -> Program:
    """Parse ``text`` (native or paper style) into a checked ``Program``.

    ``params`` supply or override ``param`` values; a list is a column vector. Every problem is
    a ``ParseError`` at the line and column of the offending token.
    """
    ctx = Context(params or {})
    style: Native | Paper | None = None
    for number, raw in enumerate(text.split("\n"), start=1):
        raw = raw.removesuffix("\r")
        if ctx.program_statement(raw, number):
            continue
        tokens = tokenize(raw, number)
        if tokens[0].kind == "end":
            continue
        if ctx.head is None:
            raise error(tokens[0], "the first statement must be `program NAME`")
        kind = statement_style(tokens)
        if kind is None:
            ctx.header(Cursor(tokens))
            continue
        if style is None:
            style = Native(ctx, tokens[0]) if kind == "native" else Paper(ctx, tokens[0])
        elif style.kind != kind:
            raise error(tokens[0], f"cannot mix styles: this {kind}-style statement follows "
                                   f"{style.kind}-style ones (line {style.first.line})")
        style.statement(Cursor(tokens))
    if ctx.head is None:
        raise ParseError(1, 1, "empty program text: expected `program NAME`")
    if ctx.d is None:
        raise error(ctx.head, "missing `d` statement")
    return (style or Native(ctx, ctx.head)).build()


def statement_style(tokens: list[Token]) -> str | None:
    """``native``, ``paper``, or None for a header statement (program, d, param)."""
    first, second = tokens[0], tokens[1]
    if first.kind == "name" and second.kind == "op" and second.text == "=":
        return "native"
    if first.kind == "number" or (first.text in ("mov", "mul", "div", "aff")
                                  and second.text == "("):
        return "paper"
    if first.text == "output":
        return "paper" if second.text == "(" else "native"
    return ("native" if first.text in ("slot", "input", "groups", "assume", "prior", "repeat",
                                       "end") else None)

