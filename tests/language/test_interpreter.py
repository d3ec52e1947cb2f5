"""The reference interpreter: exact on sympy, consistent across numpy and torch, exact reads.

The interpreter is the ground truth everything else is measured against, so it is checked on
its own: symbolically against the closed forms of the two named algorithms, numerically
against itself on three array families, and through its read matrices.
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import sympy
import torch
from hypothesis import given, strategies as st

from construct.language import interpreter
from construct.algorithms.theorems import gd_program, sherman_morrison_program
from construct.algorithms.parameters import default_w0
from construct.language.builder import ProgramBuilder, column, mean_of, prev
from construct.language.program import Fixed, MeanOf, Prev, Program, ReadMap


def symbols(prefix: str, d: int) -> sympy.Matrix:
    """The column vector of ``symbolic_tokens``' symbols for one example (``x1_1 .. x1_d``)."""
    return sympy.Matrix([sympy.Symbol(f"{prefix}_{k + 1}", real=True) for k in range(d)])


# ---------------------------------------------------------------- exact closed forms
@pytest.mark.parametrize("d", [1, 2, 3, 4])
def test_gd_program_is_one_gradient_step(d: int) -> None:
    alpha, lam = sympy.Rational(1, 10), sympy.Rational(1, 100)  # gd_program's defaults
    trace = interpreter.run(gd_program(d), interpreter.symbolic_tokens(d, 3))
    x1, x2, y1 = symbols("x1", d), symbols("x2", d), sympy.Symbol("y1", real=True)
    w0 = sympy.Matrix([sympy.Rational(v.numerator, v.denominator) for v in default_w0(d)])
    w1 = w0 - 2 * alpha * (x1 * x1.T * w0 - y1 * x1 + lam * w0)
    expected = (w1.T * x2)[0, 0]
    assert sympy.expand(trace.final["pred"][2, 0] - expected) == 0


@pytest.mark.parametrize("lam", [Fraction(1, 2), Fraction(3, 7)])
@pytest.mark.parametrize("d", [1, 2, 3])
def test_sherman_morrison_program_is_the_ridge_solution(d: int, lam: Fraction) -> None:
    trace = interpreter.run(sherman_morrison_program(d, lam), interpreter.symbolic_tokens(d, 3))
    x1, x2, y1 = symbols("x1", d), symbols("x2", d), sympy.Symbol("y1", real=True)
    ridge = sympy.Rational(lam.numerator, lam.denominator) * sympy.eye(d) + x1 * x1.T
    expected = (x2.T * ridge.inv() * x1)[0, 0] * y1
    difference = trace.final["pred"][2, 0] - expected
    assert sympy.cancel(sympy.together(difference)) == 0


# ---------------------------------------------------------------- three array families agree
DYADIC = st.integers(-16, 16).map(lambda k: Fraction(k, 4))  # exact in binary floating point
COEFFICIENT = st.integers(-6, 6).map(lambda k: Fraction(k, 3))
READ_MAPS = st.one_of(
    st.builds(Prev, k=st.integers(0, 3), on=st.sampled_from([None, "x", "y"])),
    st.builds(Fixed, column=st.integers(0, 5)),
    st.builds(MeanOf, kind=st.sampled_from(["x", "y"])))


@st.composite
def random_programs(draw: st.DrawFn) -> Program:
    """2..6 ops of every kind over fresh slots; every ``div`` gets a divisor ``1 + c |v|^2``."""
    d = draw(st.integers(1, 4))
    b = ProgramBuilder("random", d)
    sizes = {b.x: d, b.y: 1}
    for i in range(draw(st.integers(2, 6))):
        names = sorted(sizes)
        src = draw(st.sampled_from(names))
        dst, kind = f"s{i}", draw(st.sampled_from(["mov", "aff", "mul", "div"]))
        if kind == "mov":
            b.mov(dst, src, draw(READ_MAPS))
            sizes[dst] = sizes[src]
        elif kind == "aff":
            rows = draw(st.integers(1, 3))
            sources = draw(st.lists(st.sampled_from(names), min_size=1, max_size=2, unique=True))
            terms = {s: [[draw(COEFFICIENT) for _ in range(sizes[s])] for _ in range(rows)]
                     for s in sources}
            bias = draw(st.none() | st.lists(COEFFICIENT, min_size=rows, max_size=rows))
            b.aff(dst, terms, bias=bias, rows=rows)
            sizes[dst] = rows
        elif kind == "mul":
            right = draw(st.sampled_from(names))
            if sizes[right] == sizes[src] and draw(st.booleans()):
                b.dot(dst, src, right)
                sizes[dst] = 1
            elif sizes[src] * sizes[right] <= 12:  # outer product, kept small for sympy
                b.mul(dst, src, right, sizes[src], 1, sizes[right])
                sizes[dst] = sizes[src] * sizes[right]
        else:
            v = draw(st.sampled_from(names))
            b.dot(f"sq{i}", v, v)
            b.aff(f"den{i}", {f"sq{i}": draw(st.integers(1, 3))}, bias=[1])
            b.div(dst, src, f"den{i}", min_abs=1)
            sizes[dst] = sizes[src]
    return b.build(output=b.y)


def rational_tokens(draw: st.DrawFn, d: int, n_tokens: int, batch: int) -> np.ndarray:
    """``[batch, T, d + 1]`` dyadic rationals in the interleaved layout."""
    tokens = np.full((batch, n_tokens, d + 1), Fraction(0), dtype=object)
    for s in range(batch):
        for t in range(n_tokens):
            entries = range(1, d + 1) if t % 2 == 0 else range(1)
            for k in entries:
                tokens[s, t, k] = draw(DYADIC)
    return tokens


@given(data=st.data())
def test_numpy_torch_and_sympy_agree(data: st.DataObject) -> None:
    program = data.draw(random_programs())
    n_tokens = data.draw(st.integers(1, 5))
    exact_inputs = rational_tokens(data.draw, program.d, n_tokens, batch=3)
    floats = exact_inputs.astype(np.float64)  # dyadic: the floats equal the rationals

    numpy_final = interpreter.run(program, floats).final
    torch_final = interpreter.run(program, torch.from_numpy(floats)).final
    symbolic = interpreter.symbolic_tokens(program.d, n_tokens)
    symbolic_final = interpreter.run(program, symbolic).final
    for name in numpy_final:
        assert np.allclose(numpy_final[name], torch_final[name].numpy(), rtol=1e-12,
                           atol=1e-12), name
        for s in range(exact_inputs.shape[0]):
            values = {symbolic[t, k]: sympy.Rational(v.numerator, v.denominator)
                      for t in range(n_tokens) for k, v in enumerate(exact_inputs[s, t])
                      if isinstance(symbolic[t, k], sympy.Symbol)}
            exact = np.array([[float(e.xreplace(values)) for e in row]
                              for row in symbolic_final[name]], dtype=np.float64)
            scale = max(1.0, float(np.abs(exact).max()))
            assert np.allclose(numpy_final[name][s], exact, rtol=1e-10, atol=1e-10 * scale), \
                f"{name}:\n{numpy_final[name][s]}\nvs exact\n{exact}"


# ---------------------------------------------------------------- read matrices
def expected_target(read: Prev | Fixed, t: int, kinds: tuple[str, ...]) -> int:
    """Written independently of ``read_targets``: the one column that column ``t`` reads."""
    if isinstance(read, Fixed):
        return min(read.column, t)
    if read.on is not None and read.on != kinds[t]:
        return t
    return max(t - read.k, 0)


@given(read=READ_MAPS, n_tokens=st.integers(1, 12))
def test_read_matrix_is_causal_and_stochastic(read: ReadMap, n_tokens: int) -> None:
    kinds = interpreter.column_kinds(n_tokens)
    matrix = interpreter.read_matrix(read, kinds)
    for t, row in enumerate(matrix):
        assert sum(row) == 1, f"row {t} sums to {sum(row)}"
        assert all(v >= 0 for v in row)
        assert all(v == 0 for v in row[t + 1:]), f"row {t} reads the future"
        if isinstance(read, MeanOf):
            chosen = [j for j in range(t + 1) if kinds[j] == read.kind] or list(range(t + 1))
            assert row == [Fraction(1, len(chosen)) if j in chosen else 0
                           for j in range(n_tokens)]
        else:
            target = expected_target(read, t, kinds)
            assert row == [Fraction(j == target) for j in range(n_tokens)]


def test_prev_clamps_at_column_zero() -> None:
    matrix = interpreter.read_matrix(prev(k=3), interpreter.column_kinds(5))
    assert [row.index(1) for row in matrix] == [0, 0, 0, 0, 1]
    matrix = interpreter.read_matrix(prev(on="y"), interpreter.column_kinds(4))
    assert [row.index(1) for row in matrix] == [0, 0, 2, 2]  # x columns read themselves
    assert [row.index(1) for row in interpreter.read_matrix(column(2), ("x", "y", "x", "y"))] \
        == [0, 1, 2, 2]


def test_mean_of_averages_one_kind() -> None:
    tokens = np.zeros((5, 2))
    tokens[:, 0] = [0.0, 10.0, 0.0, 30.0, 0.0]  # labels at y columns
    tokens[:, 1] = [1.0, 0.0, 2.0, 0.0, 6.0]  # features at x columns
    b = ProgramBuilder("means", 1)
    b.mov("mx", b.x, mean_of("x"))
    b.mov("my", b.y, mean_of("y"))
    final = interpreter.run(b.build(output="my"), tokens).final
    assert final["mx"][:, 0].tolist() == [1.0, 1.0, 1.5, 1.5, 3.0]
    # Column 0 has no y column at or before it: it averages what it can see (itself).
    assert final["my"][:, 0].tolist() == [0.0, 10.0, 10.0, 20.0, 20.0]
