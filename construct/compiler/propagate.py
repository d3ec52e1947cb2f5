"""Propagated error bounds: how far each slot of the compiled model may be from the exact value.

Each lowered op has a bound for exact inputs (``construct.compiler.error_models``). Inputs already carry the
error of earlier layers, so the bound after op ``i`` is its own bound plus what its inputs'
errors become (first-order perturbation, with exact magnitude bounds ``|a| <= A``):

- ``mov``: ``e_src``; ``aff``: ``max_i sum_k sum_j |W_k[i, j]| e_k``;
- ``mul``: ``b (A e_r + B e_l + e_l e_r)``;
- ``div``: ``e_num / (m - e_den) + R e_den / (m - e_den)`` (``m`` the declared ``|den|``
  lower bound, ``R`` the bound on the quotient, ``y/c' - y/c = (y/c)(c - c')/c'``; infinite
  when ``e_den >= m``).

Inputs enter with their rounding to the model dtype (``u B``), prior values with theirs. Op
bounds are evaluated at the exact-value magnitude bounds; the perturbed inputs exceed those by
at most ``e``, a second-order effect at the error levels where the bounds are meaningful.
"""
from __future__ import annotations

from typing import Protocol

from construct.compiler.analysis import Bounds
from construct.compiler.config import CompileConfig, unit_roundoff
from construct.compiler.error_models import ErrorModel
from construct.language.program import Aff, Div, Mov, Mul, Program


class ErrorBudget(Protocol):
    """What propagation reads of a compilation (``construct.model.assemble.CompiledModel``):
    the unrolled program, its constants, magnitude bounds and one error model per op."""

    @property
    def program(self) -> Program: ...

    @property
    def config(self) -> CompileConfig: ...

    @property
    def bounds(self) -> Bounds: ...

    @property
    def errors(self) -> tuple[ErrorModel, ...]: ...


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


def propagated_bounds(compiled: ErrorBudget, dtype: str) -> tuple[dict[str, float], ...]:
    """``out[i]``: bound on every slot's error right after op ``i`` (``out[-1]``: the end)."""
    program = compiled.program
    current = initial_errors(compiled, dtype)
    out = []
    for i, op in enumerate(program.ops):
        before = compiled.bounds.before[i]
        own = compiled.errors[i].total(dtype)
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
        current = dict(current)
        total = own + inherited
        current[op.dst] = total if total == total else float("inf")  # 0 * inf: no bound
        out.append(current)
    return tuple(out)


def end_to_end_bound(compiled: ErrorBudget, dtype: str) -> float:
    """Bound on the prediction's error (the output slot after the last op)."""
    return propagated_bounds(compiled, dtype)[-1][compiled.program.output]
