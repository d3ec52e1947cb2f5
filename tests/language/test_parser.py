"""Text form of programs: printer/parser round trip, the paper's listings, located errors."""
from __future__ import annotations

import dataclasses
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, strategies as st

from construct.language import interpreter
from construct.algorithms.theorems import sherman_morrison_program
from construct.language.builder import ProgramBuilder, column, mean_of, prev
from construct.language.parser import ParseError, parse_program
from construct.language.printer import op_text, program_text
from construct.language.program import Aff, Div, Fixed, MeanOf, Mov, Prev, ProgramError, identity

# Reference section 3.2, with its notation (λ, α, −), and step 6 corrected to W2 = +λ.
APPENDIX_A = """\
program appendix-a
d d
output (3+3d, 4+3d)          # w'^T x_2
1. mov(; 1, 0, (1,1+d), (1,1+d))
2. aff(; (1,1+d), (), (1+d,2+d), W1 = w)
3. aff(; (1+d,2+d), (0,1), (2+d,3+d), W1 = I, W2 = −I)
4. mul(; d, 1, 1, (1,1+d), (2+d,3+d), (3+d,3+2d))
5. aff(; (), (), (3+2d,3+3d), b = w)
6. aff(; (3+d,3+2d), (3+2d,3+3d), (3+3d,3+4d), W1 = I, W2 = +λ)
7. aff(; (3+2d,3+3d), (3+3d,3+4d), (3+2d,3+3d), W1 = I, W2 = −2α)
8. mov(; 2, 1, (3+2d,3+3d), (3+2d,3+3d))
9. mul(; 1, d, 1, (3+2d,3+3d), (1,1+d), (3+3d,4+3d))
"""

# Reference section 3.4, with step 14 corrected to the shape 1, d, 1 (and its comma).
APPENDIX_B = """\
program appendix-b
d d
output (2+5d+3d², 3+5d+3d²)
1. mov(; 1, 0, (1,1+d), (1,1+d))
2. mul(; d, 1, 1, (1,1+d), (0,1), (1+d,1+2d))
3. aff(; (), (), (1+2d, 1+2d+d²), b = I/λ)
4. mul(; d, d, 1, (1+2d,1+2d+d²), (1,1+d), (1+2d+d², 1+3d+d²))
5. mul(; 1, d, d, (1,1+d), (1+2d,1+2d+d²), (1+3d+d², 1+4d+d²))
6. mul(; d, 1, d, (1+2d+d²,1+3d+d²), (1+3d+d²,1+4d+d²), (1+4d+d², 1+4d+2d²))
7. mul(; 1, d, 1, (1+3d+d²,1+4d+d²), (1,1+d), (1+4d+2d², 2+4d+2d²))
8. aff(; (1+4d+2d²,2+4d+2d²), (), same, W1 = 1, b = 1)
9. div(; (1+4d+d², 1+4d+2d²), 1+4d+2d², (2+4d+2d², 2+4d+3d²))
10. aff(; (1+2d,1+2d+d²), (2+4d+2d²,2+4d+3d²), (1+2d,1+2d+d²), W1 = I, W2 = −I)
11. mul(; d, d, 1, (1+2d,1+2d+d²), (1,1+d), (2+4d+3d², 2+5d+3d²))
12. mul(; d, 1, 1, (2+4d+3d²,2+5d+3d²), (0,1), same)
13. mov(; 2, 1, (2+4d+3d², 2+5d+3d²), same)
14. mul(; 1, d, 1, (2+4d+3d², 2+5d+3d²), (1,1+d), (2+5d+3d², 3+5d+3d²))
"""

NATIVE = """\
program demo   # the native style
d 4
param alpha = 1/10
slot x 4
slot y 1
slot xy 4
slot p 1
slot c 1
slot r 1
slot e 1
input x y
output r
xy = mov x prev on y
p = dot xy x
c = aff y * 2 + bias [0.5]
r = div p c min alpha * 5
e = aff x * [[1, 1/2, 0, 0]] - y * 1 + bias [1e-3]
"""

ALPHA, LAM = Fraction(1, 10), Fraction(1, 100)
W = [Fraction(1, 2), Fraction(-1, 3)]


def _predict(program, d, seed=0):
    """The program's prediction at the query column of the 3-token input x1, y1, x2."""
    rng = np.random.default_rng(seed)
    x1, x2, y1 = rng.normal(size=d), rng.normal(size=d), rng.normal()
    tokens = np.zeros((3, d + 1))
    tokens[0, 1:], tokens[1, 0], tokens[2, 1:] = x1, y1, x2
    return interpreter.run(program, tokens).prediction()[-1], x1, y1, x2


# ---------------------------------------------------------------- round trip
NAMES = ["a", "bias", "min", "prev", "on", "mov", "d", "slot", "program", "groups", "I",
         "same", "λ", "w_0", "param", "self", "assume"] + [f"s{i}" for i in range(40)]
bounds = st.fractions(min_value=Fraction(1, 12), max_value=100, max_denominator=12)
small = st.fractions(min_value=-3, max_value=3, max_denominator=12)
read_maps = st.one_of(
    st.builds(prev, k=st.integers(0, 4), on=st.sampled_from([None, "x", "y"])),
    st.builds(column, st.integers(0, 3)),
    st.builds(mean_of, st.sampled_from(["x", "y"])))


@st.composite
def programs(draw):
    """A random valid program built op by op with ProgramBuilder."""
    d = draw(st.integers(1, 6))
    x, y = draw(st.sampled_from([("x", "y"), ("input", "output"), ("xs", "ys")]))
    name = draw(st.sampled_from(["p", "gd-2", "2step", "my prog", 'q"uote #1', "λ-test"]))
    b = ProgramBuilder(name, d, x=x, y=y)
    shapes = {x: (d, 1), y: (1, 1)}
    fresh = iter(n for n in NAMES if n not in (x, y))
    written = []  # slots some op wrote, in order of their first write

    def size(slot):
        return shapes[slot][0] * shapes[slot][1]

    def matrix(rows, cols):
        return [[draw(small) for _ in range(cols)] for _ in range(rows)]

    for _ in range(draw(st.integers(0, 7))):
        kind = draw(st.sampled_from(["mov", "dot", "mul", "aff", "div"]))
        src = draw(st.sampled_from(sorted(shapes)))
        dst = next(fresh)
        if kind == "mov":
            dst = draw(st.sampled_from([dst, src]))
            shapes[dst] = shapes[src]
            b.mov(dst, src, draw(read_maps))
        elif kind == "dot":
            right = draw(st.sampled_from(sorted(n for n in shapes if size(n) == size(src))))
            shapes[dst] = (1, 1)
            b.dot(dst, src, right)
        elif kind == "mul":
            a = draw(st.sampled_from([k for k in range(1, size(src) + 1) if size(src) % k == 0]))
            inner = size(src) // a
            right = draw(st.sampled_from(sorted(n for n in shapes if size(n) % inner == 0)))
            shapes[dst] = (a, size(right) // inner)
            b.mul(dst, src, right, a, inner, size(right) // inner)
        elif kind == "div":
            den = draw(st.sampled_from(sorted(n for n in shapes if size(n) == 1)))
            shapes[dst] = shapes[src]
            b.div(dst, src, den, min_abs=draw(small.filter(lambda v: v > 0)))
        else:
            rows, cols = draw(st.integers(1, 3)), draw(st.integers(1, 2))
            sources = draw(st.lists(st.sampled_from(sorted(shapes)), max_size=3, unique=True))
            terms = {s: (draw(small) if size(s) == rows * cols and draw(st.booleans())
                         else matrix(rows * cols, size(s))) for s in sources}
            bias_vector = st.lists(small, min_size=rows * cols, max_size=rows * cols)
            # An aff needs a source or a bias: with no sources the bias is not optional.
            bias = draw(st.one_of(st.none(), bias_vector) if sources else bias_vector)
            shapes[dst] = (rows, cols)
            b.aff(dst, terms, bias=bias, rows=rows, cols=cols)
        written += [dst] if dst not in written else []
        # Declared bounds: mostly on the op just added, sometimes on an earlier op's slot
        # (then the builder's order is not the canonical one the text gives back).
        for _ in range(draw(st.integers(0, 2))):
            b.assume(draw(st.sampled_from([dst, dst, *written])), draw(bounds))
    scalar = draw(st.sampled_from(sorted(n for n in shapes if size(n) == 1)))
    program = b.build(output=scalar)
    cuts = draw(st.lists(st.booleans(), min_size=len(program.ops), max_size=len(program.ops)))
    if draw(st.booleans()):  # explicit layer groups: cut wherever drawn, if the check allows
        groups, current = [], []
        for i, cut in enumerate(cuts):
            if cut and current:
                groups.append(tuple(current))
                current = []
            current.append(i)
        groups += [tuple(current)] if current else []
        try:
            program = dataclasses.replace(program, groups=tuple(groups))
        except ProgramError:
            program = dataclasses.replace(program,
                                          groups=tuple((i,) for i in range(len(program.ops))))
    return program


def _canonical(program):
    """``program`` with its declared bounds in the printed order: by op index, stable."""
    return dataclasses.replace(program, assumptions=tuple(
        sorted(program.assumptions, key=lambda pair: pair[0])))


@given(programs())
def test_round_trip(program):
    text = program_text(program)
    parsed = parse_program(text)
    assert parsed == _canonical(program)
    if list(program.assumptions) == sorted(program.assumptions, key=lambda pair: pair[0]):
        assert parsed == program
    assert program_text(parsed) == text


def test_round_trip_declared_bounds():
    program = sherman_morrison_program(3)
    assert len(program.assumptions) == 5
    text = program_text(program)
    assert parse_program(text) == program
    lines = text.splitlines()
    assert lines[lines.index("right = div outer den min 1") + 1] == "assume |right| <= 2"
    assert lines[-1] == f"assume |pred| <= {program.assumptions[-1][1]}"


def test_assume_statements():
    text = NATIVE + ("assume |r| ≤ 1/alpha   # op 4, attached to the last writer of r\n"
                     "assume |xy| <= 2d\n"
                     "xy = mov xy self\n"
                     "assume |xy| <= 3\n"
                     "assume |r| <= 1\n"
                     "assume|xy|<=1/2\n")
    program = parse_program(text)
    # In op order; the two bounds on op 4 (r) keep their file order.
    assert program.assumptions == ((0, Fraction(8)), (3, Fraction(10)), (3, Fraction(1)),
                                   (5, Fraction(3)), (5, Fraction(1, 2)))
    assert parse_program(program_text(program)) == program
    grouped = parse_program(text.replace("p = dot xy x\nc = aff", "p = dot xy x || c = aff")
                            .replace("r = div p c min alpha * 5\n",
                                     "r = div p c min alpha * 5\nassume |c| <= 5\n"))
    assert grouped.groups == ((0,), (1, 2), (3,), (4,), (5,))
    assert grouped.assumptions == ((0, Fraction(8)), (2, Fraction(5)), (3, Fraction(10)),
                                   (3, Fraction(1)), (5, Fraction(3)), (5, Fraction(1, 2)))
    printed = program_text(grouped)
    assert "p = mul xy x 1x4x1 || c = aff y * 2 + bias [1/2]\nassume |c| <= 5\n" in printed
    assert parse_program(printed) == grouped
    named = ("program n\nd 1\nslot x 1\nslot y 1\nslot assume 1\ninput x y\noutput assume\n"
             "assume = aff y * 1\nassume |assume| <= 2\n")
    assert parse_program(named).assumptions == ((0, Fraction(2)),)


def test_empty_layer_group_is_rejected():
    program = parse_program(NATIVE)
    with pytest.raises(ProgramError, match="layer group 2 is empty"):
        dataclasses.replace(program, groups=((0,), (), (1, 2), (3,), (4,)))
    with pytest.raises(ProgramError, match="layer group 5 is empty"):
        dataclasses.replace(program, groups=((0,), (1, 2), (3,), (4,), ()))


def test_native_example():
    program = parse_program(NATIVE)
    assert [op_text(op) for op in program.ops] == [
        "xy = mov x prev on y",
        "p = mul xy x 1x4x1",
        "c = aff y * 2 + bias [1/2]",
        "r = div p c min 1/2",
        "e = aff x * [[1, 1/2, 0, 0]] + y * -1 + bias [1/1000]"]
    assert program.groups is None and program.output == "r"
    assert parse_program(NATIVE, {"alpha": 1}).ops[3].min_abs == 5  # given params win


@pytest.mark.parametrize("spelling, read", [
    ("prev", Prev()), ("self", Prev(0)), ("back 3", Prev(3)), ("back(3)", Prev(3)),
    ("back(2) on y", Prev(2, "y")), ("self on x", Prev(0, "x")), ("col 0", Fixed(0)),
    ("col(2)", Fixed(2)), ("mean y", MeanOf("y")), ("mean(x)", MeanOf("x"))])
def test_read_map_spellings(spelling, read):
    text = NATIVE.replace("mov x prev on y", f"mov x {spelling}")
    assert parse_program(text).ops[0] == Mov("xy", "x", read)


def test_groups_and_exact_numbers():
    text = NATIVE.replace("p = dot xy x\nc = aff", "p = dot xy x || c = aff")
    program = parse_program(text.replace("bias [0.5]", "bias [(1 + 2) / 30 - 0.1e1]"))
    assert program.groups == ((0,), (1, 2), (3,), (4,))
    assert program.ops[2] == Aff("c", (("y", ((Fraction(2),),)),), ((Fraction(-9, 10),),))


# ---------------------------------------------------------------- the paper's listings
def test_appendix_a():
    program = parse_program(APPENDIX_A, {"d": 2, "alpha": ALPHA, "lam": LAM, "w": W})
    assert len(program.ops) == 9
    # Row map of reference 3.2 at d = 2: w^T x at row 3, w^T x - y at 4, x(w^T x - y) at 5..6,
    # w then w' at 7..8, x(..) + lam w at 9..10, the prediction at row 9.
    assert [op.dst for op in program.ops] == ["x", "r3_4", "r4_5", "r5_7", "r7_9", "r9_11",
                                              "r7_9", "r7_9", "r9_10"]
    assert program.output == "r9_10"
    assert program.ops[0] == Mov("x", "x", Prev(1, "y"))
    assert program.ops[1].terms == (("x", (tuple(W),)),)
    assert program.ops[5].terms[1] == ("r7_9", identity(2, LAM))
    assert program.ops[6].terms[1] == ("r9_11", identity(2, -2 * ALPHA))
    assert program.ops[7].read == Prev(1, "x")
    got, x1, y1, x2 = _predict(program, 2)
    w = np.array([float(v) for v in W])
    w_new = w - 2 * float(ALPHA) * (x1 * (x1 @ w - y1) + float(LAM) * w)
    assert got == pytest.approx(w_new @ x2, rel=1e-12)


@pytest.mark.parametrize("d", [1, 2, 3, 4])
def test_appendix_b(d):
    program = parse_program(APPENDIX_B, {"d": d, "lam": Fraction(1, 2)})
    assert len(program.ops) == 14
    size = {s.name: s.size for s in program.slots}
    assert size[program.ops[2].dst] == d * d and size[program.ops[8].dst] == d * d
    assert program.ops[8] == Div(f"r{2 + 4 * d + 2 * d * d}_{2 + 4 * d + 3 * d * d}",
                                 f"r{1 + 4 * d + d * d}_{1 + 4 * d + 2 * d * d}",
                                 f"r{1 + 4 * d + 2 * d * d}_{2 + 4 * d + 2 * d * d}",
                                 Fraction(1))  # the paper style declares div_min, default 1
    got, x1, y1, x2 = _predict(program, d, seed=d)
    w_new = np.linalg.solve(0.5 * np.eye(d) + np.outer(x1, x1), x1 * y1)
    assert got == pytest.approx(w_new @ x2, rel=1e-9)


def test_paper_spellings():
    """ASCII spellings (d^2, d**2, lam, -2*alpha) and `mov(H; ...)` parse to the same program."""
    ascii_b = (APPENDIX_B.replace("d²", "d^2").replace("3d^2", "3*d**2").replace("λ", "lam")
               .replace("−", "-").replace("mov(;", "mov(H;"))
    assert parse_program(ascii_b, {"d": 3, "lam": 2}) == parse_program(APPENDIX_B,
                                                                        {"d": 3, "λ": 2})
    declared = "d 2\nparam w = [1/2, -1/3]\nparam α = 0.1\nparam λ = 1/100"
    text = APPENDIX_A.replace("d d", declared)
    assert parse_program(text) == parse_program(APPENDIX_A, {"d": 2, "alpha": ALPHA,
                                                             "lam": LAM, "w": W})


# ---------------------------------------------------------------- errors
def _line(text, number, new):
    lines = text.split("\n")
    lines[number - 1] = new
    return "\n".join(lines)


A_PARAMS = {"d": 2, "alpha": ALPHA, "lam": LAM, "w": W}
ERRORS = [
    # (text, params, line, column, message fragment)
    (_line(NATIVE, 17, "e = aff x * [[1, 1.2.3, 0, 0]]"), None, 17, 18, "bad number '1.2.3'"),
    (_line(NATIVE, 14, "p = dot xy foo"), None, 14, 12, "unknown slot 'foo'"),
    (_line(NATIVE, 17, "e = aff x * [[1, 0, 0, 0]"), None, 17, 13, "unbalanced '['"),
    (_line(NATIVE, 17, "e = aff (x * 1]"), None, 17, 15, "unbalanced ']'"),
    (_line(NATIVE, 14, "p = mul xy x 1x3x1"), None, 14, 5, "shape mismatch: mul 1x3x1"),
    (_line(NATIVE, 14, "1. mov(; 1, 0, (1,1+d), (1,1+d))"), None, 14, 1, "cannot mix styles"),
    (_line(NATIVE, 13, "xy = mov x next on y"), None, 13, 12, "unknown read map 'next'"),
    (_line(NATIVE, 13, "xy = mov x back 2 on z"), None, 13, 22, "unknown column kind 'z'"),
    (_line(NATIVE, 15, "c = aff y * 2 + bias [beta]"), None, 15, 23, "unknown param 'beta'"),
    (_line(NATIVE, 15, "c = aff y * 2 + bias [0, 1]"), None, 15, 22, "bias must be a flat"),
    (_line(NATIVE, 17, "e = aff x * 2"), None, 17, 13, "means s*I"),
    (_line(NATIVE, 17, "e = aff x * [[1, 2]]"), None, 17, 13, "is 1x2, needs 1x4"),
    (_line(NATIVE, 16, "r = div xy c"), None, 16, 5, "div writes 'xy' (4x1) / |c| into 'r'"),
    (_line(NATIVE, 7, "slot p 1\nslot x 2"), None, 8, 6, "already declared on line 4"),
    (_line(NATIVE, 12, "# no output"), None, 1, 1, "missing `output` statement"),
    (_line(NATIVE, 11, ""), None, 1, 1, "missing `input` statement"),
    (_line(NATIVE, 1, "d 4"), None, 1, 1, "first statement must be `program NAME`"),
    (_line(NATIVE, 15, "c = aff y * 2 + bias [0.5] ||"), None, 15, 28,
     "expected an op after '||'"),
    (_line(NATIVE, 14, "p = dot xy x x"), None, 14, 14, "unexpected 'x' after the dot op"),
    (_line(NATIVE, 14, "p = mov r prev"), None, 14, 9, "slot 'r' is read before"),
    (_line(NATIVE, 14, "p = dot xy x || c = aff y * 2 || p = mov c prev"), None, 14, 38,
     "ops 2 and 4 both write 'p'"),
    (_line(APPENDIX_A, 12, "9. mul(; d, 1, 1, (3+2d,3+3d), (1,1+d), (3+3d,4+3d))"), A_PARAMS,
     12, 4, "shape mismatch: mul 2x1x1 needs its right operand rows (1, 3)"),
    (_line(APPENDIX_A, 12, "9. mul(; 1, d, (3+2d,3+3d), (1,1+d), (3+3d,4+3d))"), A_PARAMS,
     12, 4, "mul takes 6 arguments"),
    (_line(APPENDIX_A, 4, "1. mov(; 0, 1, (1,1+d), (1,1+d))"), A_PARAMS, 4, 10,
     "must come after source column"),
    (_line(APPENDIX_A, 6, "3. aff(; (1+d,2+d), (0,1), (2+d,3+d), W1 = I, W2 = -J)"), A_PARAMS,
     6, 53, "unknown param 'J'"),
    (_line(APPENDIX_A, 7, "4. mul(; d, 1, 1, (1,1+d), (2+d,3+d), (3+d,3+2d)"), A_PARAMS,
     7, 7, "unbalanced '(': it is never closed"),
    (_line(APPENDIX_A, 7, "4. mul(; d, 1, 1, (1,1+d), (2+d,3+d d), (3+d,3+2d))"), A_PARAMS,
     7, 37, "expected ')' after row range"),
    (_line(APPENDIX_A, 5, "2. aff(; (1,1+d), (), (1+d,2+d), W1 = w, W2 = I)"), A_PARAMS,
     5, 42, "W2 is given but its source range is ()"),
    (_line(APPENDIX_A, 12, "9. mul(; 1, d, 1, (3+2d,3+3d), (1,1+d), (3+3d,4+3d))\n"
                           "10. mov(; 2, 1, (3+3d,3+4d), (3+3d,3+4d))"), A_PARAMS, 13, 17,
     "rows (9, 11) are read after op 9 (line 12) wrote the overlapping rows (9, 10)"),
    (_line(APPENDIX_A, 3, "output (3+3d, 5+3d)"), A_PARAMS, 3, 8, "must be one row"),
    (APPENDIX_A + "slot q 1\n", A_PARAMS, 13, 1, "cannot mix styles: this native-style"),
    (_line(APPENDIX_A, 3, "# no output"), A_PARAMS, 1, 1, "missing `output (i, j)`"),
    (APPENDIX_A, {"d": 2, "alpha": ALPHA, "lam": LAM}, 5, 39, "unknown param 'w'"),
    # declared bounds
    (NATIVE + "assume |foo| <= 1\n", None, 18, 9, "unknown slot 'foo'"),
    (_line(NATIVE, 13, "assume |xy| <= 1\nxy = mov x prev on y"), None, 13, 9,
     "assume: no op has written slot 'xy' yet"),
    (NATIVE + "assume |x| <= 1\n", None, 18, 9, "assume: no op has written slot 'x' yet"),
    (NATIVE + "assume |r| <= 1 - alpha * 10\n", None, 18, 15, "the bound on |r| must be > 0, "
                                                            "got 0"),
    (NATIVE + "assume |r| ≤ -1/2\n", None, 18, 14, "the bound on |r| must be > 0, got -1/2"),
    (NATIVE + "assume |r| <= beta\n", None, 18, 15, "unknown param 'beta'"),
    (NATIVE + "assume |r| <= [1]\n", None, 18, 15, "expected a number, found '['"),
    (NATIVE + "assume r <= 1\n", None, 18, 8, "expected '|' before the slot"),
    (NATIVE + "assume |r <= 1\n", None, 18, 11, "expected '|' after the slot 'r'"),
    (NATIVE + "assume |r| < 1\n", None, 18, 12, "unexpected character '<'"),
    (NATIVE + "assume |r| = 1\n", None, 18, 12, "expected '<=' after |r|"),
    (NATIVE + "assume |r| <= 1 2\n", None, 18, 17, "unexpected '2' after the bound"),
    (APPENDIX_A + "assume |x| <= 1\n", A_PARAMS, 13, 1, "cannot mix styles: this native-style"),
]


@pytest.mark.parametrize("text, params, line, column, fragment", ERRORS)
def test_errors_are_located(text, params, line, column, fragment):
    with pytest.raises(ParseError) as caught:
        parse_program(text, params)
    error = caught.value
    assert (error.line, error.column) == (line, column), str(error)
    assert fragment in str(error)
    assert str(error).startswith(f"line {line}, column {column}: ")


def test_misprinted_step_14():
    """The paper's own step 14 (shape d, 1, 1) is a shape error at its line for d >= 2."""
    text = APPENDIX_B.replace("14. mul(; 1, d, 1,", "14. mul(; d, 1, 1,")
    with pytest.raises(ParseError, match="shape mismatch: mul 2x1x1") as caught:
        parse_program(text, {"d": 2, "lam": 1})
    assert (caught.value.line, caught.value.column) == (17, 5)
    assert isinstance(caught.value, ProgramError)


def test_empty_text():
    with pytest.raises(ParseError, match="line 1, column 1: empty program text"):
        parse_program("# nothing\n")
