"""Propagated error bounds: how far each slot of the compiled model may be from the exact value.

Each lowered op has a bound for exact inputs (``construct.compiler.error_models``). Inputs already carry the
error of earlier layers, so the bound after op ``i`` is its own bound plus what its inputs'
errors become (first-order perturbation, with exact magnitude bounds ``|a| <= A``):

- ``mov``: ``e_src``; ``aff``: ``max_i sum_k sum_j |W_k[i, j]| e_k``;
- ``mul``: ``b (A e_r + B e_l + e_l e_r)``;
- ``div``: ``e_num / (m - e_den) + R e_den / (m - e_den)`` (``m`` the declared ``|den|``
  lower bound, ``R`` the bound on the quotient, ``y/c' - y/c = (y/c)(c - c')/c'``; infinite
  when ``e_den >= m``);
- ``hinge``: ``L e_src + F e_v + L e_src e_v`` with ``L`` the largest slope and ``F`` the largest
  factor over the input's interval widened by ``e_src`` (Lipschitz, kinks included;
  ``construct.compiler.hinge_bounds``); infinite, as for a ``div``, when the input has a
  declared floor (a gated division's) that its error may reach.

Inputs enter with their rounding to the model dtype (``u B``), prior values with theirs. A
result whose magnitude bound reaches the dtype's range (a sixteenth of its largest number, so
that sums of a few such values stay finite) has no error bound in that dtype: the model may
overflow there. Op
bounds are evaluated at the exact-value magnitude bounds; the perturbed inputs exceed those by
at most ``e``, a second-order effect at the error levels where the bounds are meaningful.
"""
from __future__ import annotations

import math
from typing import Protocol

import torch

from construct.compiler.analysis import Bounds
from construct.compiler.config import CompileConfig, torch_dtype, unit_roundoff
from construct.compiler.error_models import ErrorModel
from construct.compiler.gelu_products import largest_output_weight
from construct.compiler.position_codes import point_read_leak
from construct.compiler.layout import Layout
from construct.compiler import hinge_bounds
from construct.language.program import Aff, Div, Hinge, Mov, Mul, Program


class ErrorBudget(Protocol):
    """What propagation reads of a compilation (``construct.model.assemble.CompiledModel``):
    the unrolled program, its constants, magnitude bounds, one error model per op and the
    rows each op clears."""

    @property
    def program(self) -> Program: ...

    @property
    def config(self) -> CompileConfig: ...

    @property
    def bounds(self) -> Bounds: ...

    @property
    def errors(self) -> tuple[ErrorModel, ...]: ...

    @property
    def layout(self) -> Layout: ...

    def cleared_rows(self, index: int) -> tuple[int, ...]: ...


def initial_errors(compiled: ErrorBudget, dtype: str) -> dict[str, float]:
    """Every slot's error before the first op: the inputs' and the prior values' rounding to
    the model dtype (``u`` times their largest entry); zero elsewhere."""
    program, u = compiled.program, unit_roundoff(dtype)
    current = {s.name: 0.0 for s in program.slots}
    for name in (program.x_slot, program.y_slot):
        current[name] = u * compiled.config.input_bound
    for name, values in program.prior:
        current[name] = u * max(abs(float(v)) for v in values)
    return current


def largest_value(compiled: ErrorBudget) -> float:
    """A bound on every slot's value and LayerNorm pad (``P``, or ``N |c|`` in a division
    layer) over the declared input box: the analysis bounds, no data."""
    program, config, bounds = compiled.program, compiled.config, compiled.bounds
    divides = any(isinstance(op, Div) for op in program.ops)  # LayerNorm iff a div
    return max([config.ln_pad if divides else 0.0, *bounds.results]
               + [config.div_scale * bounds.before[i][op.den]
                  for i, op in enumerate(program.ops) if isinstance(op, Div)])


def representable(compiled: ErrorBudget, dtype: str) -> bool:
    """Whether a model evaluated in ``dtype`` keeps every intermediate finite: LayerNorm
    squares the residual (its largest entry, a result or a pad ``N |c|``, must stay below
    the square root of the range) and a GeLU product stores ``A B / eps^2`` in ``W_out``.
    A float64 compilation past float32's range has no float32 bound at all (``rawc fuzz``
    found float32 models overflowing to inf under bounds of 8e6 to 1e255)."""
    program, config, bounds = compiled.program, compiled.config, compiled.bounds
    largest = float(torch.finfo(torch_dtype(dtype)).max) / 16
    residual = largest_value(compiled)
    if residual * residual * max(1, len(program.slots)) >= largest:
        return False
    kappa_weight = largest_output_weight(config.gelu_product)
    return all((bounds.before[i][op.left] or 1.0) * (bounds.before[i][op.right] or 1.0)
               * kappa_weight / config.mul_scale ** 2 < largest
               for i, op in enumerate(program.ops) if isinstance(op, Mul))


def clearing_factor(config: CompileConfig, dtype: str) -> float:
    """What clearing a row leaves, per unit of what the row held: the softmax read of the old
    value misses ``2 leak`` of it and the subtraction rounds (``6 u``)."""
    leak = point_read_leak(config.code, config.attn_hardness, config.n_ctx, "float32")
    return 2 * leak + 6 * unit_roundoff(dtype)


def clearing_residue(compiled: ErrorBudget, index: int, errors_before: dict[str, float],
                     dtype: str) -> float:
    """What clearing op ``index``'s rows may leave of the *errors* they held.

    An op's error model charges the old value's exact-value bound ``|old|`` for the clear
    (``clearing_factor`` times it). The rows hold that value plus its error ``E``, so the clear
    leaves up to ``clearing_factor * E`` more, ``E`` the largest error bound of a slot that
    occupied those rows (infinite if one is: the rows may hold anything). ``rawc fuzz`` found
    ``7e-39`` over a bound of 0 where an earlier product's error sat in the rows, and a float32
    clear that lost a bias of ``0.75`` under ``1e8`` of an earlier slot's error. The checks on
    a task use the magnitude the rows actually hold instead (``verify.check.layers``)."""
    rows = set(compiled.cleared_rows(index))
    layout = compiled.layout
    worst = max((errors_before.get(name, 0.0) for name in layout.slots
                 if rows.intersection(layout.rows(name))), default=0.0)
    return clearing_factor(compiled.config, dtype) * worst if worst else 0.0


def propagated_bounds(compiled: ErrorBudget, dtype: str) -> tuple[dict[str, float], ...]:
    """``out[i]``: bound on every slot's error right after op ``i`` (``out[-1]``: the end)."""
    program = compiled.program
    current = initial_errors(compiled, dtype)
    # A value past what the dtype represents (float32: 3.4e38) is inf in the model, whatever
    # error bound the algebra gives (rawc fuzz found a float32 model overflow under 1.7e292).
    largest = float(torch.finfo(torch_dtype(dtype)).max) / 16
    out = []
    in_range = representable(compiled, dtype)
    for i, op in enumerate(program.ops):
        before = compiled.bounds.before[i]
        own = compiled.errors[i].total(dtype) + clearing_residue(compiled, i, current, dtype)
        if not in_range:
            own = float("inf")
        match op:
            case Mov(src=src):
                inherited = current[src]
            case Aff(terms=terms):
                rows = len(terms[0][1]) if terms else 0
                inherited = max((sum(abs(float(w)) * current[name]  # zero weight: no error
                                     for name, matrix in terms for w in matrix[r] if w != 0)
                                 for r in range(rows)), default=0.0)
            case Mul(left=left, right=right, b=b):
                e_l, e_r = current[left], current[right]
                inherited = b * (before[left] * e_r + before[right] * e_l + e_l * e_r)
            case Div(num=num, den=den, min_abs=min_abs):
                m, e_den = float(min_abs), current[den]
                if e_den >= m:
                    inherited = float("inf")
                else:
                    quotient = compiled.bounds.of_op_result(i, program)
                    inherited = (current[num] + quotient * e_den) / (m - e_den)
            case Hinge():
                inherited = hinge_inherited(op, before, current)
        current = dict(current)
        total = own + inherited
        if not (compiled.bounds.results[i] < largest and total < largest):
            total = float("inf")  # the model's dtype overflows there: no bound
        current[op.dst] = total if total == total else float("inf")  # 0 * inf: no bound
        out.append(current)
    return tuple(out)


def hinge_inherited(op: Hinge, before: dict[str, float], errors: dict[str, float]) -> float:
    """What a hinge's input errors become (module docstring)."""
    e_src = errors[op.src]
    if hinge_bounds.error_reaches_floor(op, e_src):
        return float("inf")
    lo, hi = hinge_bounds.input_interval(op, before[op.src])
    reach = hinge_bounds.extremes(op, lo - e_src, hi + e_src)
    if op.value is None or op.value == op.src:
        return reach.slope * e_src
    e_value = errors[op.value]
    return (reach.slope * e_src * (before[op.value] + e_value) + reach.factor * e_value)


def end_to_end_bound(compiled: ErrorBudget, dtype: str) -> float:
    """Bound on the prediction's error (the output slot after the last op)."""
    return propagated_bounds(compiled, dtype)[-1][compiled.program.output]
