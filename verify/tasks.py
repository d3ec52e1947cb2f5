"""Random regression tasks inside the declared input bound, built by construction.

A task is ``n`` exemplars ``(x_i, y_i)`` and a query ``x_q`` with ``x ~ N(0, I) * scale``,
``w ~ N(0, I)``, ``y_i = w^T x_i + noise``, laid out as ``[P] x1 y1 ... xn yn x_q`` (``P``: the
optional prior column, a zero token). Every entry must satisfy ``|v| <= B``. Rather than
rejecting draws, each vector is shrunk into the bound: every ``x`` by ``min(1, B / max|x|)``
and every ``y`` by ``min(1, B / |y|)`` (a shrunk ``y`` is the label of a shrunk ``w``), so the
distribution is the stated one wherever it already lies inside the bound.
"""
from __future__ import annotations

import dataclasses

import torch


@dataclasses.dataclass(frozen=True)
class Tasks:
    tokens: torch.Tensor  # [N, T, d + 1]
    xs: torch.Tensor  # [N, n + 1, d]: the exemplars' x, then the query
    ys: torch.Tensor  # [N, n]
    prior_column: bool = False

    @property
    def n_examples(self) -> int:
        return self.ys.shape[-1]

    @property
    def x(self) -> torch.Tensor:
        """The first exemplar's x ``[N, d]`` (single-exemplar algorithms)."""
        return self.xs[:, 0]

    @property
    def y(self) -> torch.Tensor:
        return self.ys[:, 0]

    @property
    def x_query(self) -> torch.Tensor:
        return self.xs[:, -1]

    @property
    def x_columns(self) -> slice:
        """The token positions of the x-columns (where predictions are read)."""
        return slice(1 if self.prior_column else 0, None, 2)


def interleave(xs: torch.Tensor, ys: torch.Tensor, prior_column: bool = False) -> torch.Tensor:
    """Tokens ``[..., T, d + 1]`` from ``xs`` ``[..., n + 1, d]`` and ``ys`` ``[..., n]``."""
    lead, d, n = xs.shape[:-2], xs.shape[-1], ys.shape[-1]
    offset = 1 if prior_column else 0
    tokens = torch.zeros(*lead, offset + 2 * n + 1, d + 1, dtype=xs.dtype, device=xs.device)
    tokens[..., offset::2, 1:] = xs
    tokens[..., offset + 1::2, 0] = ys
    return tokens


def make_tasks(d: int, n_tasks: int, bound: float, seed: int, *, n_examples: int = 1,
               prior_column: bool = False, scale: float = 1.0, noise: float = 0.0,
               device: str | torch.device = "cpu") -> Tasks:
    generator = torch.Generator(device="cpu").manual_seed(seed)
    draw = lambda *shape: torch.randn(*shape, generator=generator, dtype=torch.float64)
    xs, w = draw(n_tasks, n_examples + 1, d) * scale, draw(n_tasks, d)
    limit = 0.999 * bound  # stay strictly inside, so rounding can't push an entry over
    xs = xs * (limit / xs.abs().amax(-1, keepdim=True)).clamp(max=1.0)
    ys = (xs[:, :n_examples] * w[:, None, :]).sum(-1) + noise * draw(n_tasks, n_examples)
    ys = ys * (limit / ys.abs()).clamp(max=1.0)
    tokens = interleave(xs, ys, prior_column)
    return Tasks(tokens.to(device), xs.to(device), ys.to(device), prior_column)
