"""Reference interpreter: the exact meaning of a program on a sequence of tokens.

State is a dict ``slot name -> array [..., T, size]`` (tokens along the second-to-last axis,
the torch layout of the residual stream). One code path serves three kinds of array:

- ``numpy`` float arrays and ``torch`` tensors (any float dtype, any batch shape);
- ``numpy`` object arrays of ``sympy`` expressions (``symbolic_tokens``), for exact proofs.

Every operation is written with ``@``, ``reshape``, ``abs`` and ``/`` only (a hinge's
``relu(z)`` is ``(z + |z|) / 2``), which all three
support. ``mov`` is a matrix product with the row-stochastic read matrix ``R`` (``R[t, j]`` is
how much column ``t`` reads of column ``j``), so the same formula covers every read map.
"""
from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable, Iterator
from fractions import Fraction
from typing import Any

import numpy as np

from construct.language.program import (Aff, Div, Fixed, Hinge, Matrix, MeanOf, Mov, Mul, Op, Prev,
                               Program, ReadMap, column_kinds)

Array = Any  # numpy array (float or object) or torch tensor


def read_targets(read: Prev | Fixed, kinds: tuple[str, ...]) -> tuple[int, ...]:
    """The one column each column reads for a point read (clamped to ``[0, t]``)."""
    targets = []
    for t, kind in enumerate(kinds):
        match read:
            case Prev(k=k, on=on):
                target = t - k if on is None or on == kind else t
            case Fixed(column=c):
                target = c
        targets.append(min(max(target, 0), t))
    return tuple(targets)


def read_matrix(read: ReadMap, kinds: tuple[str, ...]) -> list[list[Fraction]]:
    """Exact ``T x T`` read matrix of a read map; rows sum to one, ``R[t, j] = 0`` for ``j > t``."""
    n = len(kinds)
    rows = [[Fraction(0)] * n for _ in range(n)]
    if isinstance(read, MeanOf):
        for t in range(n):
            chosen = [j for j in range(t + 1) if kinds[j] == read.kind] or list(range(t + 1))
            for j in chosen:
                rows[t][j] = Fraction(1, len(chosen))
        return rows
    for t, j in enumerate(read_targets(read, kinds)):
        rows[t][j] = Fraction(1)
    return rows


@functools.lru_cache(maxsize=4096)
def _float_read_matrix(read: ReadMap, kinds: tuple[str, ...], dtype, device):
    """``read_matrix`` as a torch constant (entries ``1/k`` rounded once, as before)."""
    import torch

    values = [[float(v) for v in row] for row in read_matrix(read, kinds)]
    return torch.tensor(values, dtype=dtype, device=device)


# An aff's Fraction matrices rounded once per (matrix, dtype, device): converting the d^2 x d^2
# matrices of a ridge solve on every call cost a verification 2.5 million float() calls.
# Keyed by identity (the ops are frozen and outlive the runs), the matrix kept beside its
# tensor so that its id cannot be reused while the entry lives.
_FLOAT_CONSTANTS: dict[tuple[int, object, object], tuple[object, object]] = {}


class _Backend:
    """Turns exact Fraction matrices into constants of the same array family as the data."""

    def __init__(self, like: Array) -> None:
        self.like = like
        self.is_torch = type(like).__module__.startswith("torch")
        self.is_object = isinstance(like, np.ndarray) and like.dtype == object

    def constant(self, matrix: list[list[Fraction]] | Matrix) -> Array:
        if self.is_torch and isinstance(matrix, tuple):
            key = (id(matrix), self.like.dtype, self.like.device)
            if key not in _FLOAT_CONSTANTS:
                if len(_FLOAT_CONSTANTS) > 65536:
                    _FLOAT_CONSTANTS.clear()
                _FLOAT_CONSTANTS[key] = (matrix, self._converted(matrix))
            return _FLOAT_CONSTANTS[key][1]
        return self._converted(matrix)

    def _converted(self, matrix: list[list[Fraction]] | Matrix) -> Array:
        if self.is_object:
            import sympy

            return np.array([[sympy.Rational(v.numerator, v.denominator) for v in row]
                             for row in matrix], dtype=object)
        values = [[float(v) for v in row] for row in matrix]
        if self.is_torch:
            import torch

            return torch.tensor(values, dtype=self.like.dtype, device=self.like.device)
        return np.asarray(values, dtype=self.like.dtype)

    def zeros(self, shape: tuple[int, ...]) -> Array:
        if self.is_torch:
            import torch

            return torch.zeros(shape, dtype=self.like.dtype, device=self.like.device)
        if self.is_object:
            import sympy

            return np.full(shape, sympy.Integer(0), dtype=object)
        return np.zeros(shape, dtype=self.like.dtype)


@dataclasses.dataclass(frozen=True)
class Trace:
    """States after every op: ``states[0]`` is the embedded input, ``states[i + 1]`` follows op i.

    ``program`` is the program that ran, its loop unrolled (op indices count every iteration).
    """

    program: Program
    states: tuple[dict[str, Array], ...]
    min_divisors: tuple[float | None, ...]  # per op: smallest |den| seen (numeric runs only)

    @property
    def final(self) -> dict[str, Array]:
        return self.states[-1]

    def prediction(self) -> Array:
        """The output slot at every x-token column, ``[..., n_x]``."""
        out = self.final[self.program.output][..., 0]
        return out[..., self.program.first_x_column::2]


@dataclasses.dataclass(frozen=True)
class Step:
    """The state right after op ``index`` (``-1``: the embedded input) and, for a ``div``, the
    smallest ``|divisor|`` it met."""

    index: int
    state: dict[str, Array]
    min_divisor: float | None


def constant_like(matrix: Matrix, like: Array) -> Array:
    """An op's exact matrix as a constant of ``like``'s array family (cached for torch)."""
    return _Backend(like).constant(matrix)


def initial_state(program: Program, tokens: Array) -> dict[str, Array]:
    """Embed tokens ``[..., T, d + 1]``: row 0 is the label, rows 1..d the features.

    With a prior column, column 0's token is ignored (it is zero by contract) and the slots
    with a prior value hold it there.
    """
    if tokens.shape[-1] != program.d + 1:
        raise ValueError(f"tokens have {tokens.shape[-1]} entries, program {program.name!r} "
                         f"needs d + 1 = {program.d + 1}")
    backend = _Backend(tokens)
    lead = tuple(tokens.shape[:-1])
    state = {s.name: backend.zeros(lead + (s.size,)) for s in program.slots}
    state[program.y_slot] = tokens[..., 0:1]
    state[program.x_slot] = tokens[..., 1:]
    if program.prior:
        n_tokens = tokens.shape[-2]
        for name, values in program.prior:
            column = [[Fraction(1) if t == 0 else Fraction(0)] for t in range(n_tokens)]
            # [T, 1] @ [1, size]: the prior value in column 0, zeros elsewhere, any backend.
            state[name] = state[name] + backend.constant(column) @ backend.constant([values])
    return state


def apply_op(op: Op, state: dict[str, Array], kinds: tuple[str, ...]) -> Array:
    """The new value of ``op.dst`` (every column at once)."""
    backend = _Backend(next(iter(state.values())))
    match op:
        case Mov(src=src, read=read):
            if backend.is_torch:  # a float matrix of 0, 1 and 1/k: cached, not rebuilt per op
                like = state[src]
                return _float_read_matrix(read, kinds, like.dtype, like.device) @ like
            return backend.constant(read_matrix(read, kinds)) @ state[src]
        case Mul(left=left, right=right, a=a, b=b, c=c):
            lead = tuple(state[left].shape[:-1])
            product = state[left].reshape(lead + (a, b)) @ state[right].reshape(lead + (b, c))
            return product.reshape(lead + (a * c,))
        case Div(num=num, den=den):
            return state[num] / abs(state[den])
        case Aff(dst=dst, terms=terms, bias=bias):
            total = backend.zeros(tuple(state[dst].shape))
            for name, matrix in terms:
                total = total + state[name] @ backend.constant(matrix).T
            if bias is not None:
                total = total + backend.constant(bias).T
            return total
        case Hinge(src=src, value=value, bias=bias):
            # relu(z) = (z + |z|) / 2: exact in floats, and sympy's Abs keeps proofs exact
            slopes, offsets, weights = (backend.constant(m) for m in op.knot_rows)
            z = state[src] @ slopes + offsets
            shape = ((z + abs(z)) / 2) @ weights
            total = shape if value is None else shape * state[value]
            return total + backend.constant(((bias,),)) if bias else total
    raise TypeError(f"unknown operation {op!r}")


def steps(program: Program, tokens: Array,
          normalize: Callable[[Array], Array] | None = None) -> Iterator[Step]:
    """Run every op in order (a loop unrolled), yielding the state after each, holding no
    earlier state: ``Step(-1, embedded input)``, then ``Step(i, state after op i)``. A long
    verification keeps only the versions it still needs; ``run`` keeps them all.

    ``normalize`` rewrites each result before the next op reads it (exact symbolic runs keep
    their rational functions in lowest terms this way, so deep programs stay small)."""
    program = program.unrolled()
    kinds = program.column_kinds(tokens.shape[-2])
    state = initial_state(program, tokens)
    yield Step(-1, state, None)
    for index, op in enumerate(program.ops):
        before = state
        state = dict(state)
        value = apply_op(op, state, kinds)
        state[op.dst] = value if normalize is None else normalize(value)
        yield Step(index, state, _smallest_divisor(op, before))


def run(program: Program, tokens: Array,
        normalize: Callable[[Array], Array] | None = None,
        progress: Callable[[Iterator[Step]], Iterable[Step]] | None = None) -> Trace:
    """Run every op in order (a loop unrolled) and keep the state after each (``steps``).
    ``progress`` wraps the steps as they come (a progress bar over a slow symbolic run)."""
    stepped = steps(program, tokens, normalize)
    trace = list(stepped if progress is None else progress(stepped))
    return Trace(program.unrolled(), tuple(step.state for step in trace),
                 tuple(step.min_divisor for step in trace[1:]))


def _smallest_divisor(op: Op, state: dict[str, Array]) -> float | None:
    if not isinstance(op, Div) or _Backend(state[op.den]).is_object:
        return None
    return float(abs(state[op.den]).min())


def symbolic_tokens(d: int, n_tokens: int, prior_column: bool = False) -> np.ndarray:
    """Tokens of symbols ``x{i}_{k}`` at x columns and ``y{i}`` at y columns (exact zeros elsewhere)."""
    import sympy

    tokens = np.full((n_tokens, d + 1), sympy.Integer(0), dtype=object)
    offset = 1 if prior_column else 0
    for t in range(offset, n_tokens):
        example = (t - offset) // 2 + 1
        if (t - offset) % 2 == 0:
            for k in range(d):
                tokens[t, k + 1] = sympy.Symbol(f"x{example}_{k + 1}", real=True)
        else:
            tokens[t, 0] = sympy.Symbol(f"y{example}", real=True)
    return tokens
