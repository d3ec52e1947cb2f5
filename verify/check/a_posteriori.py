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
not grow errors the way ``|A| |x| |x|^T`` suggests). What first order leaves out, per op, is
its *remainder*, a product of two errors (a ``mul``'s ``dl dr``, a quotient's
``(dn - q dm) dm / (m (m + dm))``, a hinge's kinks within its input's error of the input),
bounded per task and entry by the task's own running error bounds on the op's reads
(``verify.check.running_error``), never by the a-priori bounds, which compound over the whole
input box (a stacked ridge from d = 4: infinite). With the remainders the decomposition is
exact: slot errors follow ``eps_dst = J_op eps_reads + R_op + delta_op``, a linear recurrence
whose sources are each op's own error and remainder, so the output error is the sum of the
sources through the exact Jacobians, and the bound holds on every task it is computed for;
where a task's running bounds reach a divisor (or a seed's floor) its bound is infinite.
(``rawc fuzz`` found a first-order bound exceeded 1.6-fold behind a quotient whose divisor
carried an earlier product's error; and without the remainders a product of two operands that
are exactly 0 on a task claims no error at all, while each still carries the leak of an
earlier read.) The Jacobians come from autograd through the reference interpreter in float64
(one backward pass per checked column): the compiled model is never used to bound itself.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from construct.compiler.config import unit_roundoff
from construct.compiler.error_models import ErrorModel
from construct.compiler.propagate import ErrorBudget, clearing_factor, representable
from construct.language import interpreter
from construct.language.program import Hinge, Program
from verify.check.running_error import infinite_where_nan, input_errors, propagate

# How far past its declared magnitude a read may be held (its error bound included) and the
# op's own model still be taken, widened (``within_magnitudes``); farther, no bound. Tight
# exact bounds meet float32 running bounds: a gated division's Newton residual ``e_1`` sits
# at its bound ``eps0^2`` = 6.1e-5 with a running bound of 1.1e-5 (17 % past it).
MAGNITUDE_SLACK = 1.0


def own_error(model: ErrorModel, state: dict[str, torch.Tensor], dtype: str,
              result: torch.Tensor | None = None, errors: dict[str, torch.Tensor] | None = None,
              result_error: torch.Tensor | float = 0.0) -> torch.Tensor | float:
    """Op ``i``'s own bound at the magnitudes it reads (and, for a quotient, the result and
    divisor it has) on these tasks: per column ``[N, T, 1]`` where its model has scaled parts
    (``ErrorModel.at_magnitude``), else the declared-magnitude bound. With the reads' running
    error bounds ``errors`` (and the result's, ``result_error``) the magnitudes are those the
    compiled model may hold: ``|value| + E``, a divisor ``|den| - E``."""
    if not model.scaled:
        return model.total(dtype)

    def held(name: str) -> torch.Tensor:
        value = state[name].detach().abs()
        return value if errors is None else value + errors[name]

    ratios = [held(name).amax(-1, keepdim=True) / bound for name, bound in model.reads
              if bound > 0]
    scale = torch.stack(ratios).amax(0) if ratios else 1.0
    pair = tuple(ratios) if len(ratios) == 2 == len(model.reads) else None  # a product's
    result_scale = ((result.detach().abs() + result_error).amax(-1, keepdim=True)
                    / model.result_bound
                    if result is not None and model.result_bound > 0 else 1.0)
    divisor_scale = 1.0 if model.divisor is None else floor_ratio(state, errors, *model.divisor)
    return model.at_magnitude(dtype, scale, result_scale, divisor_scale, pair)


def floor_ratio(state: dict[str, torch.Tensor], errors: dict[str, torch.Tensor] | None,
                name: str, floor: float) -> torch.Tensor:
    """Per column, ``floor`` over the least ``|value|`` (less its running bound ``E``) of
    slot ``name``: above 1 where a divisor may be held below its floor, infinite where it
    may reach 0."""
    least = state[name].detach().abs()
    if errors is not None:
        least = least - errors[name]
    least = least.amin(-1, keepdim=True)
    return torch.where(least > 0, floor / least, torch.inf)


def magnitude_excess(op, model: ErrorModel, state: dict[str, torch.Tensor],
                     errors: dict[str, torch.Tensor], magnitudes: dict[str, float]
                     ) -> torch.Tensor | None:
    """Per column ``[N, T, 1]``, how far past the magnitudes its error model was built on the
    op's reads may be held (``|value| + E`` over the bound; for a quotient, and a gated
    division's hinges, also ``floor_ratio``), as a factor ``>= 1``; None where nothing is
    read. An op's own bound holds inside its declared magnitudes (a float32 loop whose values
    ran off where the program's were 0 broke its own bounds: ``rawc fuzz``)."""
    ratios = [(state[name].detach().abs() + errors[name]).amax(-1, keepdim=True)
              / magnitudes[name] for name in op.reads if magnitudes.get(name, 0.0) > 0]
    floors = [model.divisor] if model.divisor is not None else []
    if isinstance(op, Hinge) and op.domain is not None:  # a seed's input: also 1 - a g(a)
        floors.append((op.src, float(op.domain[0])))
    ratios += [floor_ratio(state, errors, name, floor) for name, floor in floors]
    return torch.stack(ratios).amax(0).clamp(min=1.0) if ratios else None


def within_magnitudes(own: torch.Tensor | float, excess: torch.Tensor | None,
                      model: ErrorModel) -> torch.Tensor | float:
    """``own`` where the reads stay inside their magnitudes; up to ``1 + MAGNITUDE_SLACK``
    past them, times ``excess ** p`` with ``p`` the model's largest power (at least 2: the
    LayerNorm energy is quadratic in the values; a quotient's ``1 / |den|^2``); farther, no
    bound."""
    if excess is None:
        return own
    power = max([2, *(part.power + part.result_power + part.divisor_power
                      for part in model.scaled)])
    own = torch.as_tensor(own, dtype=torch.float64) * excess ** power
    return torch.where(excess > 1 + MAGNITUDE_SLACK, torch.inf, own)


def left_out_terms(compiled: ErrorBudget, cleared: dict[int, float], dtype: str
                   ) -> tuple[float, ...]:
    """Per op, what its error model leaves to the batch: ``clearing_factor`` times what its
    cleared rows held (``verify.check.layers.cleared_magnitude``; the old value's own error
    rides on it). Infinite for every op of a model that may overflow in ``dtype``
    (``propagate.representable``): no bound then."""
    if not representable(compiled, dtype):
        return tuple(math.inf for _ in compiled.program.ops)
    factor = clearing_factor(compiled.config, dtype)
    return tuple(factor * cleared.get(i, 0.0) for i in range(len(compiled.program.ops)))


def a_posteriori_bounds(program: Program, tokens: torch.Tensor,
                        op_errors: Sequence[ErrorModel], columns: Sequence[int], dtype: str,
                        left_out: Sequence[float] | None = None,
                        magnitudes: Sequence[dict[str, float]] | None = None) -> torch.Tensor:
    """Per task and checked column, the bound ``[N, len(columns)]``: every op's own error
    (plus ``left_out[i]``: ``left_out_terms``) and remainder through the exact Jacobians.

    ``program`` is the unrolled program the model computes, ``op_errors[i]`` op ``i``'s error
    model, ``tokens`` the task inputs (float64), ``magnitudes[i]`` the slots' magnitude bounds
    before op ``i`` (``Bounds.before``): a column whose reads may pass them has its own bound
    widened, or none (``within_magnitudes``)."""
    program = program.unrolled()
    kinds = program.column_kinds(tokens.shape[-2])
    u = unit_roundoff(dtype)
    n_columns = len(columns)
    bound = torch.zeros(tokens.shape[0], n_columns, dtype=torch.float64, device=tokens.device)
    column = [0]

    def tap(value: torch.Tensor, weight: torch.Tensor | float) -> torch.Tensor:
        """``value`` unchanged; on the way back, add ``sum |grad| * weight`` to the bound of
        the column being differentiated (the gradient itself is not kept)."""
        # an entry the output does not depend on adds nothing, even unbounded (0 * inf)
        unbounded = (not math.isfinite(weight) if isinstance(weight, float)
                     else bool(weight.isinf().any()))

        def hook(grad: torch.Tensor) -> None:
            reached = grad.abs() * weight
            if unbounded:
                reached = torch.where(grad == 0, 0.0, reached)
            bound[:, column[0]] += reached.flatten(1).sum(-1)
        if not value.requires_grad:  # a constant (a bias alone): its error still reaches out
            value = value.detach().requires_grad_()
        value.register_hook(hook)
        return value

    with torch.enable_grad():
        state = interpreter.initial_state(program, tokens.double())
        inputs = (program.x_slot, program.y_slot, *(name for name, _ in program.prior))
        errors = input_errors(state, inputs, u)
        for name in inputs:
            state[name] = tap(state[name].detach().requires_grad_(), errors[name])
        for index, op in enumerate(program.ops):
            value = interpreter.apply_op(op, state, kinds)
            with torch.no_grad():
                exact = {name: state[name].detach() for name in (*op.reads, op.dst)}
                carried = propagate(op, exact, errors, kinds)
                moved = carried.total()
                model = op_errors[index]
                own = own_error(model, state, dtype, value, errors, moved)
                if magnitudes is not None:
                    own = within_magnitudes(own, magnitude_excess(
                        op, model, exact, errors, magnitudes[index]), model)
                if left_out is not None:
                    own = own + left_out[index]
                errors = dict(errors)
                errors[op.dst] = moved + own
            state = dict(state)
            state[op.dst] = tap(value, carried.remainder + own)
        out = state[program.output][..., list(columns), 0]  # [N, K]
        for k in range(n_columns):
            column[0] = k
            out[:, k].sum().backward(retain_graph=k + 1 < n_columns)
    return infinite_where_nan(bound)
