"""Closed-form targets, computed with torch.linalg independently of the RAW program.

- ``gd``: ``w' = w0 - 2 alpha (x x^T w0 - y x + lam w0)`` (Eq. 11 of the paper), prediction
  ``w'^T x_q``;
- ``sherman-morrison``: ``w' = (lam I + x x^T)^{-1} x y`` by ``torch.linalg.solve``, prediction
  ``w'^T x_q``.
"""
from __future__ import annotations

from fractions import Fraction

import torch

from construct.algorithms import default_w0
from verify.tasks import Tasks


def _number(value: object) -> float:
    return float(Fraction(str(value)))


def closed_form_prediction(algorithm: str, params: dict[str, object], tasks: Tasks) -> torch.Tensor:
    x, y, xq = tasks.x, tasks.y, tasks.x_query
    d = x.shape[-1]
    if algorithm == "gd":
        alpha, lam = _number(params["alpha"]), _number(params["lam"])
        w0_values = params.get("w0") or default_w0(d)
        w0 = torch.tensor([_number(v) for v in w0_values], dtype=x.dtype, device=x.device)
        residual = x @ w0 - y
        w = w0 - 2 * alpha * (x * residual[:, None] + lam * w0)
        return (w * xq).sum(-1)
    if algorithm == "sherman-morrison":
        lam = _number(params["lam"])
        eye = torch.eye(d, dtype=x.dtype, device=x.device)
        system = lam * eye + x[:, :, None] * x[:, None, :]
        w = torch.linalg.solve(system, x * y[:, None])
        return (w * xq).sum(-1)
    raise ValueError(f"no closed form known for algorithm {algorithm!r}")
