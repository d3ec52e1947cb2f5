"""Each task's own error bound on every slot, op by op (running error analysis).

The a-posteriori bound (``verify.check.a_posteriori``) is exact first order through the
program's Jacobians plus, per op, what first order leaves out: the *remainder*, a product of
two errors (a ``mul``'s ``dl dr``; a ``div``'s ``(dn - q dm) dm / (m (m + dm))``; a hinge's
kinks within its input's error). A remainder is bounded by the errors its reads carry; the
a-priori bounds hold on every task but compound over the whole input box (ridge from d = 4:
infinite, and where finite up to 1e6 times the first-order part). Here they come from the
task itself: ``E[slot]``, per entry, with ``|compiled - exact| <= E`` entry by entry, follows

    E[dst] = |J_op| E[reads] + R_op(E[reads]) + own_op,

each term a bound that holds for these exact values (``|.|`` entrywise):

- ``mov``: ``R E_src`` (``R`` the read matrix, entries >= 0); ``aff``: ``sum_k E_k |W_k|^T``;
- ``mul`` (``L R`` per column): ``|L| E_R + E_L |R|``, remainder ``E_L E_R`` (exact: the
  product moves by ``L dR + dL R + dL dR``);
- ``div`` (``n / |m|``, ``q`` the quotient): ``(E_n + |q| E_m) / |m|``, remainder
  ``(E_n + |q| E_m) E_m / (|m| (|m| - E_m))`` (from ``n'/|m'| - q = (dn - q d|m|) / |m'|``);
  infinite where ``E_m >= |m|``;
- ``hinge`` ``b + v G(x)`` (``hinge_bounds.NearInput``: ``G``, ``G'``, the kinks' ``J`` and
  the reach ``L`` of ``|G'|`` over ``[x - e, x + e]``): with a separate value ``v``,
  ``|G'| e |v| + |G| e_v``, remainder ``J e |v| + L e e_v`` (``[G(x') - G(x) - G' d] v``
  and ``[G(x') - G(x)] dv``); of its own input
  (``v = x``), ``|G + x G'| e``, remainder ``|x| J e + L e^2``; without a value, ``|G'| e``,
  remainder ``J e``. Infinite where ``e`` reaches the input's declared floor (a gated
  division's divisor), as a-priori.

Everything is in float64 from the interpreter's exact values. An infinite bound stays
infinite where it can reach: through a weight, read or exact operand that is exactly zero it
reaches nothing (``bound_product``); elsewhere a NaN from ``inf * 0`` counts as infinite (a
hinge's or a quotient's input that may be anywhere).
"""
from __future__ import annotations

import dataclasses

import torch

from construct.compiler.hinge_bounds import NearInput, error_reaches_floor
from construct.language import interpreter
from construct.language.program import Aff, Div, Hinge, Mov, Mul, Op

State = dict[str, torch.Tensor]


@dataclasses.dataclass(frozen=True)
class Propagated:
    """What the errors an op reads become in its destination, per entry: the first-order part
    ``|J| E`` and the remainder first order leaves out."""

    linear: torch.Tensor
    remainder: torch.Tensor | float

    def total(self) -> torch.Tensor:
        return self.linear + self.remainder


def infinite_where_nan(values: torch.Tensor) -> torch.Tensor:
    return torch.where(torch.isnan(values), torch.inf, values)


def bound_product(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b`` of non-negative bounds with ``0 * inf = 0``: an entry that an exact zero
    weight (or an exact, error-free zero) multiplies reaches nothing, however unbounded;
    infinite only where an infinite entry meets a positive one. (A plain product would give
    NaN, and a column that never reads an unbounded entry would lose its bound.)"""
    a_inf, b_inf = a.isinf(), b.isinf()
    if not (a_inf.any() or b_inf.any()):
        return a @ b
    finite = torch.where(a_inf, 0.0, a) @ torch.where(b_inf, 0.0, b)
    reach = (a_inf.to(a.dtype) @ (b > 0).to(b.dtype)) + ((a > 0).to(a.dtype) @ b_inf.to(b.dtype))
    return torch.where(reach > 0, torch.inf, finite)


def propagate(op: Op, state: State, errors: State, kinds: tuple[str, ...]) -> Propagated:
    """The errors of ``op``'s reads carried into its destination (module docstring);
    ``state`` the exact values before the op, ``errors`` their bounds ``E``."""
    match op:
        case Mov(src=src):
            # the read matrix (>= 0) applied alike to the bounds and to where they are infinite
            unbounded = errors[src].isinf()
            finite = interpreter.apply_op(op, {src: torch.where(unbounded, 0.0, errors[src])},
                                          kinds)
            if unbounded.any():
                reach = interpreter.apply_op(op, {src: unbounded.to(finite.dtype)}, kinds)
                finite = torch.where(reach > 0, torch.inf, finite)
            return Propagated(finite, 0.0)
        case Aff(terms=terms):
            linear = sum(bound_product(errors[name],
                                       interpreter.constant_like(matrix, errors[name]).abs().T)
                         for name, matrix in terms)
            return Propagated(linear + torch.zeros_like(state[op.dst]), 0.0)
        case Mul():
            return _product(op, state, errors)
        case Div():
            return _quotient(op, state, errors)
        case Hinge():
            return _hinge(op, state, errors)
    raise TypeError(f"unknown operation {op!r}")


def _product(op: Mul, state: State, errors: State) -> Propagated:
    lead = tuple(state[op.left].shape[:-1])

    def matrix(values: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
        return values.reshape(lead + (rows, cols))

    left, e_left = matrix(state[op.left].abs(), op.a, op.b), matrix(errors[op.left], op.a, op.b)
    right, e_right = (matrix(state[op.right].abs(), op.b, op.c),
                      matrix(errors[op.right], op.b, op.c))
    linear = bound_product(left, e_right) + bound_product(e_left, right)
    return Propagated(linear.reshape(lead + (op.a * op.c,)),
                      bound_product(e_left, e_right).reshape(lead + (op.a * op.c,)))


def _quotient(op: Div, state: State, errors: State) -> Propagated:
    divisor, e_divisor = state[op.den].abs(), errors[op.den]
    quotient = state[op.num] / divisor
    moved = errors[op.num] + quotient.abs() * e_divisor
    margin = divisor - e_divisor
    remainder = torch.where(margin > 0, moved * e_divisor / (divisor * margin), torch.inf)
    return Propagated(infinite_where_nan(moved / divisor), infinite_where_nan(remainder))


def _hinge(op: Hinge, state: State, errors: State) -> Propagated:
    x, e = state[op.src], errors[op.src]
    near = NearInput.at(op, x, e)
    if op.value is None:
        linear, remainder = near.slope.abs() * e, near.jump * e
    elif op.value == op.src:
        linear = (near.value + x * near.slope).abs() * e
        remainder = x.abs() * near.jump * e + near.reach * e * e
    else:
        v, e_v = state[op.value].abs(), errors[op.value]
        linear = near.slope.abs() * e * v + near.value.abs() * e_v
        remainder = near.jump * e * v + near.reach * e * e_v
    if op.domain is not None:  # the seed holds above its floor only
        beyond = error_reaches_floor(op, e)
        linear, remainder = (torch.where(beyond, torch.inf, t) for t in (linear, remainder))
    shape = state[op.dst].shape
    return Propagated(infinite_where_nan(linear).expand(shape),
                      infinite_where_nan(remainder).expand(shape))


def input_errors(state: State, names: tuple[str, ...], u: float) -> State:
    """The errors before the first op: ``u |value|`` for the inputs and prior values (each
    rounded once to the model's dtype), zero in every other slot."""
    errors = {name: torch.zeros_like(value) for name, value in state.items()}
    for name in names:
        errors[name] = u * state[name].detach().abs()
    return errors
