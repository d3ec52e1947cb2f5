"""Random regression tasks inside the declared input bound, built by construction.

A task is ``x_1, y_1, x_q`` with ``x ~ N(0, I) * scale``, ``w ~ N(0, I)``, ``y = w^T x_1 + noise``.
Every entry must satisfy ``|v| <= B``. Rather than rejecting draws, each task is shrunk into
the bound: ``x`` and ``x_q`` are scaled by ``min(1, B / max|x|)`` and ``y`` by
``min(1, B / |y|)`` (a shrunk ``y`` is the label of a shrunk ``w``), so the distribution is
the stated one wherever it already lies inside the bound.
"""
from __future__ import annotations

import dataclasses

import torch


@dataclasses.dataclass(frozen=True)
class Tasks:
    tokens: torch.Tensor  # [N, 3, d + 1]: x-token, y-token, query x-token
    x: torch.Tensor  # [N, d]
    y: torch.Tensor  # [N]
    x_query: torch.Tensor  # [N, d]


def make_tasks(d: int, n_tasks: int, bound: float, seed: int, *, scale: float = 1.0,
               noise: float = 0.0, device: str | torch.device = "cpu") -> Tasks:
    generator = torch.Generator(device="cpu").manual_seed(seed)
    draw = lambda *shape: torch.randn(*shape, generator=generator, dtype=torch.float64)
    x, x_query, w = draw(n_tasks, d) * scale, draw(n_tasks, d) * scale, draw(n_tasks, d)
    limit = 0.999 * bound  # stay strictly inside, so rounding can't push an entry over
    for data in (x, x_query):
        data *= (limit / data.abs().amax(-1, keepdim=True)).clamp(max=1.0)
    y = (w * x).sum(-1) + noise * draw(n_tasks)
    y = y * (limit / y.abs()).clamp(max=1.0)
    tokens = torch.zeros(n_tasks, 3, d + 1, dtype=torch.float64)
    tokens[:, 0, 1:], tokens[:, 1, 0], tokens[:, 2, 1:] = x, y, x_query
    return Tasks(tokens.to(device), x.to(device), y.to(device), x_query.to(device))
