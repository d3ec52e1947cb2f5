"""What a hinge op (``Hinge``) can reach over an interval: extremes, slopes, rounding.

``F(x) = sum_k w_k relu(s_k x + o_k)`` is piecewise linear with kinks at ``x_k = -o_k / s_k``:
on each piece between two kinks ``F = alpha + beta x`` with ``alpha = sum w_k o_k`` and
``beta = sum w_k s_k`` over the units active there. So over ``[lo, hi]``:

- ``b + F`` (no value slot) and ``F`` (a separate value slot, ``|dst| <= |b| + V |F|``) are
  largest at a kink or an end, and their slope is ``beta`` on a piece;
- ``b + x F(x)`` (the value is the input itself, as in ``1 - a g(a)``) is the quadratic
  ``b + alpha x + beta x^2`` on a piece: largest at a piece's end or at its vertex
  ``-alpha / (2 beta)``; its slope ``alpha + 2 beta x`` is largest at a piece's end.

Slopes over an interval are Lipschitz constants, kinks included, so the a-priori propagation
(``construct.compiler.propagate``) may cross a kink. The a-posteriori bound differentiates at
each task's own input, where a kink within the input's error of it adds ``|w_k s_k| e``
(``NearInput``, used by ``verify.check.running_error``).

*Rounding* (gated units, ``construct.targets.paper.mlp``). Unit ``k`` computes its gate
``s_k z_x + o_k z_1`` (two products and a sum: ``3 u (|s_k x| + |o_k|)``), its relu exactly, its
product with the value (``u``) and ``W_out``'s weight (``2 u``); a unit whose gate is within
rounding of zero may switch on, but by at most its gate's error. ``W_out`` then sums the
``n`` units (``gamma_n``) and the residual add rounds once more. With the *mass*
``max_x sum_k |w_k| (|s_k x| + |o_k|)`` over the units active or within rounding of active at
``x``, the error is at most ``(n + 8) u V mass + 2 u |b|``.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from construct.language.program import Hinge

NEAR = 1e-6  # a gate within this relative distance of zero counts as possibly active


@dataclasses.dataclass(frozen=True)
class HingeExtremes:
    """Over an interval of the input: the largest ``|dst|`` per unit of ``|value|`` (``V = 1``
    when the value is the input or the constant) and the largest slope in the input."""

    value: float
    slope: float
    factor: float  # max |F| (a separate value slot: how its errors reach dst)


def _terms(op: Hinge) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    w, s, o = (np.array([float(t[j]) for t in op.terms]) for j in range(3))
    return w, s, o


def _pieces(op: Hinge, lo: float, hi: float) -> list[tuple[float, float, float, float]]:
    """``(start, end, alpha, beta)`` of every piece of ``F`` inside ``[lo, hi]``."""
    w, s, o = _terms(op)
    kinks = -o[s != 0] / s[s != 0]
    points = np.unique(np.concatenate(([lo, hi], kinks[(kinks > lo) & (kinks < hi)])))
    out = []
    for start, end in zip(points[:-1], points[1:]) if len(points) > 1 else [(lo, hi)]:
        middle = (start + end) / 2
        active = s * middle + o > 0
        out.append((float(start), float(end), float(np.sum(w[active] * o[active])),
                    float(np.sum(w[active] * s[active]))))
    return out


def extremes(op: Hinge, lo: float, hi: float) -> HingeExtremes:
    """``HingeExtremes`` of ``op`` for inputs in ``[lo, hi]`` (a hair over: float safety)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return HingeExtremes(math.inf, math.inf, math.inf)
    bias = float(op.bias)
    value = slope = factor = 0.0
    for start, end, alpha, beta in _pieces(op, lo, hi):
        factor = max(factor, abs(alpha + beta * start), abs(alpha + beta * end))
        if op.value is not None and op.value == op.src:
            points = [start, end]
            if beta != 0 and start < -alpha / (2 * beta) < end:
                points.append(-alpha / (2 * beta))
            value = max(value, *(abs(bias + alpha * x + beta * x * x) for x in points))
            slope = max(slope, abs(alpha + 2 * beta * start), abs(alpha + 2 * beta * end))
        else:
            offset = bias if op.value is None else 0.0
            value = max(value, abs(offset + alpha + beta * start),
                        abs(offset + alpha + beta * end))
            slope = max(slope, abs(beta))
    safety = 1 + 1e-9
    return HingeExtremes(value * safety + 1e-300, slope * safety, factor * safety)


def input_interval(op: Hinge, magnitude: float) -> tuple[float, float]:
    """Where the input lies: the declared domain within ``|x| <= magnitude``, else the
    magnitude box."""
    if op.domain is None:
        return -magnitude, magnitude
    return max(-magnitude, float(op.domain[0])), min(magnitude, float(op.domain[1]))


def result_bound(op: Hinge, magnitude: float, value_bound: float) -> float:
    """``|dst|`` over the input interval: ``|b| + V max |F|`` with a separate value slot."""
    lo, hi = input_interval(op, magnitude)
    if lo > hi:  # the magnitude box misses the domain: only the domain's values occur
        lo, hi = float(op.domain[0]), float(op.domain[1])
    reach = extremes(op, lo, hi)
    if op.value is None or op.value == op.src:
        return reach.value
    return abs(float(op.bias)) + value_bound * reach.factor


def mass(op: Hinge, lo: float, hi: float, per_input: bool = False) -> float:
    """``max_x sum |w_k| (|s_k x| + |o_k|)`` over units active or within rounding of it
    (``per_input``: ``max_x |x| sum ...``; on a piece the sum is ``alpha + beta |x|`` with
    ``alpha, beta >= 0``, so both are largest at a candidate point)."""
    w, s, o = _terms(op)
    kinks = -o[s != 0] / s[s != 0]
    points = np.concatenate(([lo, hi], kinks[(kinks >= lo) & (kinks <= hi)],
                             [0.0] if lo < 0 < hi else []))
    size = np.abs(s[None, :] * points[:, None]) + np.abs(o[None, :])
    gate = s[None, :] * points[:, None] + o[None, :]
    live = gate >= -NEAR * size
    sums = np.sum(np.where(live, np.abs(w) * size, 0.0), axis=1)
    return float(np.max(sums * np.abs(points) if per_input else sums))


def falls_with_input(op: Hinge) -> bool:
    """A hinge of a separate value over a positive domain (the division's seed ``n g(a)``):
    its rounding falls like ``1 / x`` (``rounding_count``'s ``per_input``)."""
    return op.value not in (None, op.src) and op.domain is not None and op.domain[0] > 0


def rounding_count(op: Hinge, magnitude: float, value_bound: float) -> float:
    """The hinge's rounding in multiples of ``u`` (module docstring). For a hinge that
    ``falls_with_input``, ``max_x x mass(x) / lo``: at input ``x`` the rounding is at most this
    times ``lo / x``, which the a-posteriori bound uses (``ErrorModel.divisor``)."""
    lo, hi = input_interval(op, magnitude)
    value = 1.0 if op.value is None else (hi if op.value == op.src else value_bound)
    units = len(op.terms) + (1 if op.bias else 0)
    spread = (mass(op, lo, hi, per_input=True) / lo if falls_with_input(op)
              else mass(op, lo, hi))
    return (units + 8) * value * spread + 2 * abs(float(op.bias))


def error_reaches_floor(op: Hinge, input_error: float) -> bool:
    """The input's error may reach its domain's floor (a gated division's divisor ``|c| >= m``):
    then no bound holds past it, as for a ``div`` whose divisor error reaches ``m``. (A float,
    or per entry for a tensor of errors.)"""
    return op.domain is not None and input_error >= float(op.domain[0])


@dataclasses.dataclass(frozen=True)
class NearInput:
    """The terms' sum ``G = sum_k w_k relu(s_k x + o_k)`` near one task's inputs, per entry
    (tensors ``[..., 1]``): ``G(x)``, its slope ``G'(x)`` off the kinks, ``J`` the ``|w_k s_k|``
    of the units whose gate changes sign within ``e`` of ``x`` (the kinks there), and
    ``L = |sum of w_k s_k over the units active on all of [x - e, x + e]| + J``, at least
    ``|G'|`` anywhere on that interval (a unit's slope switches on or off only at its kink)."""

    value: object
    slope: object
    jump: object
    reach: object

    @classmethod
    def at(cls, op: Hinge, x, e) -> NearInput:
        import torch

        w, s, o = (torch.tensor(a, dtype=x.dtype, device=x.device) for a in _terms(op))
        gate = x * s + o
        low, high = (x - e) * s + o, (x + e) * s + o
        always = (low > 0) & (high > 0)
        switching = ~always & ((low > 0) | (high > 0) | (gate.abs() <= s.abs() * e))
        ws = w * s
        jump = torch.where(switching, ws.abs(), 0.0).sum(-1, keepdim=True)
        return cls(value=(gate.clamp(min=0) * w).sum(-1, keepdim=True),
                   slope=torch.where(gate > 0, ws, 0.0).sum(-1, keepdim=True), jump=jump,
                   reach=torch.where(always, ws, 0.0).sum(-1, keepdim=True).abs() + jump)
