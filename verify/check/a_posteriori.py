"""The a-posteriori bound: each task's own error budget, through the Jacobians it actually has.

The a-priori bound (``construct.compiler.propagate``) must hold for every input in the declared
box, so it multiplies worst-case magnitudes op after op; through ``n`` stacked
Sherman–Morrison updates that compounds like ``(d^2 B^2 / lam)^n`` and says nothing (or is
infinite once a divisor's error may reach its declared minimum). On one task the compiled
model is a perturbation of the exact program: op ``i`` adds an error ``delta_i`` to its
destination with ``|delta_i| <= e_i`` in every entry (``e_i``: its own error model, which
holds for any inputs inside the declared magnitudes), and the inputs enter rounded
(``|delta_x| <= u |x|``). To first order the prediction at column ``k`` moves by
``sum_i J_{k,i} delta_i`` with ``J_{k,i} = d out_k / d dst_i`` the exact program's Jacobian at
this task's values, hence

    |compiled_k - exact_k| <= sum_i e_i ||J_{k,i}||_1 + sum_inputs u ||J_{k,x} * x||_1
                              + O(e^2).

Signed Jacobians keep the cancellations worst-case magnitudes lose (the Sherman–Morrison map
``A -> (A^-1 + x x^T)^-1`` has derivative ``P dA P^T`` with ``P = I - A x x^T / s``, which does
not grow errors the way ``|A| |x| |x|^T`` suggests). The terms first order leaves out are
products of two op errors, the exact remainders of the two nonlinear ops:

- a product ``b l r`` moves by ``b (l dr + r dl + dl dr)``; first order keeps the first two,
  the remainder is ``b e_l e_r``;
- a hinge is piecewise linear: where a kink lies within its input's error ``e`` of the input,
  the slope first order takes is off by that kink's ``|w s|`` (``hinge_bounds.KinkRemainder``,
  taken per task at the input it has);
- a quotient ``n / m`` moves by ``(dn - q dm) / (m + dm)``; first order keeps
  ``(dn - q dm) / m``, the remainder is ``(dn - q dm) dm / (m (m + dm))``, at most
  ``(e_n + Q e_m) e_m / (m0 (m0 - e_m))`` with ``m0`` the divisor's floor and ``Q`` the
  quotient's magnitude bound.

Both are added from the a-priori propagated bounds ``e`` (``second_order_terms``), which
hold on every task; where those are infinite the remainder cannot be bounded and the
a-posteriori bound is first order only (the verdict is then NO GUARANTEE on the a-priori
bound anyway). With the remainders the decomposition is exact: slot errors follow
``eps_dst = J_op eps_reads + R_op + delta_op``, a linear recurrence whose sources are each op's
own error and remainder, so the output error is the sum of the sources through the exact
Jacobians. (``rawc fuzz`` found a first-order bound exceeded 1.6-fold behind a quotient whose
divisor carried an earlier product's error.) The Jacobians
come from autograd through the reference interpreter in float64 (one backward pass per
checked column): the compiled model is never used to bound itself.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from construct.compiler.config import unit_roundoff
from construct.compiler.error_models import ErrorModel
from construct.compiler.propagate import ErrorBudget, clearing_factor, representable
from construct.language import interpreter
from construct.compiler import hinge_bounds
from construct.compiler.hinge_bounds import KinkRemainder
from construct.language.program import Div, Hinge, Mul, Program


def own_error(model: ErrorModel, state: dict[str, torch.Tensor], dtype: str,
              result: torch.Tensor | None = None) -> torch.Tensor | float:
    """Op ``i``'s own bound at the magnitudes it reads (and, for a quotient, the result and
    divisor it has) on these tasks: per column ``[N, T, 1]`` where its model has scaled parts
    (``ErrorModel.at_magnitude``), else the declared-magnitude bound."""
    if not model.scaled:
        return model.total(dtype)
    ratios = [state[name].detach().abs().amax(-1, keepdim=True) / bound
              for name, bound in model.reads if bound > 0]
    scale = torch.stack(ratios).amax(0) if ratios else 1.0
    result_scale = (result.detach().abs().amax(-1, keepdim=True) / model.result_bound
                    if result is not None and model.result_bound > 0 else 1.0)
    divisor_scale = 1.0
    if model.divisor is not None:
        name, floor = model.divisor
        divisor_scale = floor / state[name].detach().abs().amax(-1, keepdim=True)
    return model.at_magnitude(dtype, scale, result_scale, divisor_scale)


def second_order_terms(compiled: ErrorBudget, propagated: Sequence[dict[str, float]],
                       initial: dict[str, float], dtype: str) -> tuple[float, ...]:
    """Per op, what first order leaves out: the remainder of a ``mul`` (``b e_l e_r``) or a
    ``div`` (``(e_n + Q e_m) e_m / (m0 (m0 - e_m))``; module docstring), from the a-priori
    propagated bounds ``e`` (which hold on every task; 0 where ``e`` is infinite, there the
    bound stays first order). What clearing its rows leaves of the errors they held is added
    per batch from the magnitudes the rows held (``clearing_terms``). Without
    them a product of two operands that are exactly 0 on a task claims no error at all, while
    each still carries the leak of an earlier read (``rawc fuzz`` found ``1e-56`` over ``0``)."""
    if not representable(compiled, dtype):  # the model may overflow: no bound
        return tuple(float("inf") for _ in compiled.program.ops)
    out = []
    for i, op in enumerate(compiled.program.ops):
        before = propagated[i - 1] if i > 0 else initial
        term = 0.0
        if isinstance(op, Mul):
            term = op.b * before[op.left] * before[op.right]
        elif isinstance(op, Div):
            floor, e_den = float(op.min_abs), before[op.den]
            quotient = compiled.bounds.of_op_result(i, compiled.program)
            term = ((before[op.num] + quotient * e_den) * e_den / (floor * (floor - e_den))
                    if e_den < floor else float("inf"))
        elif isinstance(op, Hinge):  # per task: the kinks within e of its own input
            values = compiled.bounds.before[i]
            e_src = before[op.src]
            e_value = 0.0 if op.value in (None, op.src) else before[op.value]
            lo, hi = hinge_bounds.input_interval(op, values[op.src])
            slope = hinge_bounds.remainder_slope(op, lo - e_src, hi + e_src)
            if hinge_bounds.error_reaches_floor(op, e_src):
                # a seed whose input error may reach its floor: first order only, as for a
                # div, and so for the |c| hinge that wrote its input (its kink at 0 is inside
                # that error too, and what it claims would be the same vacuous quotient)
                writer = max((j for j in range(i) if compiled.program.ops[j].dst == op.src),
                             default=None)
                if writer is not None and isinstance(out[writer], KinkRemainder):
                    out[writer] = 0.0
            elif all(math.isfinite(v) for v in (e_src, e_value, slope)):
                out.append(KinkRemainder(op, e_src, e_value, slope))
                continue
        out.append(term if math.isfinite(term) else 0.0)
    return tuple(out)


def clearing_terms(compiled: ErrorBudget, cleared: dict[int, float], dtype: str
                   ) -> tuple[float, ...]:
    """Per op, ``clearing_factor`` times what its cleared rows held on this batch
    (``verify.check.layers.cleared_magnitude``): the old value's own error rides on it."""
    factor = clearing_factor(compiled.config, dtype)
    return tuple(factor * cleared.get(i, 0.0) for i in range(len(compiled.program.ops)))


def a_posteriori_bounds(program: Program, tokens: torch.Tensor,
                        op_errors: Sequence[ErrorModel], columns: Sequence[int], dtype: str,
                        second_order: Sequence[float] | None = None) -> torch.Tensor:
    """Per task and checked column, the first-order bound ``[N, len(columns)]`` (plus, per
    op, ``second_order[i]``: ``second_order_terms``).

    ``program`` is the unrolled program the model computes, ``op_errors[i]`` op ``i``'s error
    model, ``tokens`` the task inputs (float64)."""
    program = program.unrolled()
    kinds = program.column_kinds(tokens.shape[-2])
    u = unit_roundoff(dtype)
    n_columns = len(columns)
    bound = torch.zeros(tokens.shape[0], n_columns, dtype=torch.float64, device=tokens.device)
    column = [0]

    def tap(value: torch.Tensor, weight: torch.Tensor | float) -> torch.Tensor:
        """``value`` unchanged; on the way back, add ``sum |grad| * weight`` to the bound of
        the column being differentiated (the gradient itself is not kept)."""
        def hook(grad: torch.Tensor) -> None:
            bound[:, column[0]] += (grad.abs() * weight).flatten(1).sum(-1)
        if not value.requires_grad:  # a constant (a bias alone): its error still reaches out
            value = value.detach().requires_grad_()
        value.register_hook(hook)
        return value

    with torch.enable_grad():
        state = interpreter.initial_state(program, tokens.double())
        for name in (program.x_slot, program.y_slot, *(name for name, _ in program.prior)):
            rounding = u * state[name].abs()
            state[name] = tap(state[name].detach().requires_grad_(), rounding)
        for index, op in enumerate(program.ops):
            value = interpreter.apply_op(op, state, kinds)
            own = own_error(op_errors[index], state, dtype, value)
            if second_order is not None:
                term = second_order[index]
                own = own + (term.at(state) if isinstance(term, KinkRemainder) else term)
            state = dict(state)
            state[op.dst] = tap(value, own)
        out = state[program.output][..., list(columns), 0]  # [N, K]
        for k in range(n_columns):
            column[0] = k
            out[:, k].sum().backward(retain_graph=k + 1 < n_columns)
    return bound
