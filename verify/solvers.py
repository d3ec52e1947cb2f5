"""Closed-form targets, computed with torch.linalg and explicit loops, independently of the
RAW programs.

Every predictor maps ``xs`` ``[N, n + 1, d]`` (exemplars, then the query) and ``ys`` ``[N, n]``
to the predictions at every prefix ``[N, n + 1]``: entry ``k`` predicts ``x_{k+1}`` from the
exemplars ``1..k``.

- ``ridge(lam)``: ``((lam I + X_k^T X_k)^-1 X_k^T y_k)^T x_{k+1}`` by ``torch.linalg.solve``;
  ``lam = 0`` is OLS, the min-norm solution ``pinv(X_k) y_k`` (zero for ``k = 0``);
- ``sgd``: ``w_i = w_{i-1} - 2 alpha (x_i x_i^T w_{i-1} - x_i y_i + lam w_{i-1})`` in a loop;
- ``gd-batch``: ``w_k = w0 - 2 alpha ((1/k) sum_{i<=k} x_i (x_i^T w0 - y_i) + lam w0)`` (mean
  loss; the empty mean at ``k = 0`` is zero);
- ``gd`` (Theorem 1) and ``sherman-morrison`` (Theorem 2) are the single-exemplar cases:
  one gradient step (sum over one exemplar), and ridge after one exemplar.
"""
from __future__ import annotations

from fractions import Fraction

import torch

from construct.algorithms.parameters import default_w0
from verify.tasks import Tasks

SINGLE_EXEMPLAR = ("gd", "sherman-morrison")


def number(value: object) -> float:
    return float(Fraction(str(value)))


def start_weights(params: dict[str, object], d: int, like: torch.Tensor) -> torch.Tensor:
    values = params.get("w0") or default_w0(d)
    if isinstance(values, str):
        values = values.strip("[]").split(",")
    return torch.tensor([number(v) for v in values], dtype=like.dtype, device=like.device)


def ridge_predictions(xs: torch.Tensor, ys: torch.Tensor, lam: float) -> torch.Tensor:
    n, d = ys.shape[-1], xs.shape[-1]
    eye = torch.eye(d, dtype=xs.dtype, device=xs.device)
    out = [torch.zeros_like(xs[..., 0, 0])]
    for k in range(1, n + 1):
        X, y = xs[..., :k, :], ys[..., :k]
        if lam > 0:
            system = lam * eye + X.transpose(-1, -2) @ X
            w = torch.linalg.solve(system, (X.transpose(-1, -2) @ y[..., None]))[..., 0]
        else:
            w = (torch.linalg.pinv(X) @ y[..., None])[..., 0]
        out.append((w * xs[..., k, :]).sum(-1))
    return torch.stack(out, dim=-1)


def sgd_predictions(xs: torch.Tensor, ys: torch.Tensor, alpha: float, lam: float,
                    w0: torch.Tensor) -> torch.Tensor:
    w = w0.expand(*xs.shape[:-2], -1).clone()
    out = [(w * xs[..., 0, :]).sum(-1)]
    for i in range(ys.shape[-1]):
        x = xs[..., i, :]
        residual = (x * w).sum(-1) - ys[..., i]
        w = w - 2 * alpha * (x * residual[..., None] + lam * w)
        out.append((w * xs[..., i + 1, :]).sum(-1))
    return torch.stack(out, dim=-1)


def one_step_predictions(xs: torch.Tensor, ys: torch.Tensor, alpha: float, lam: float,
                         w0: torch.Tensor, mean: bool) -> torch.Tensor:
    """One GD step from ``w0`` on the exemplars so far, at every prefix: the gradient summed
    over them (Theorem 1's convention) or averaged (``mean``; the empty mean is zero)."""
    out = []
    grad = torch.zeros_like(xs[..., 0, :])
    for k in range(ys.shape[-1] + 1):
        if k:
            x = xs[..., k - 1, :]
            grad = grad + x * ((x * w0).sum(-1) - ys[..., k - 1])[..., None]
        data = grad / k if mean and k else grad
        w = w0 - 2 * alpha * (data + lam * w0)
        out.append((w * xs[..., k, :]).sum(-1))
    return torch.stack(out, dim=-1)


CLOSED_FORMS = ("ridge", "sherman-morrison", "sgd", "gd-batch", "gd")


def has_closed_form(algorithm: str) -> bool:
    """Whether ``predictions`` knows the algorithm (a user's own program has no closed form:
    it is checked against the interpreter only)."""
    return algorithm in CLOSED_FORMS


def predictions(algorithm: str, params: dict[str, object], tasks: Tasks) -> torch.Tensor:
    """The named algorithm's predictions at every prefix ``[N, n + 1]``."""
    xs, ys = tasks.xs, tasks.ys
    d = xs.shape[-1]
    lam = number(params.get("lam", 0))
    alpha = number(params.get("alpha", 0))
    if algorithm in ("ridge", "sherman-morrison"):
        return ridge_predictions(xs, ys, lam)
    if algorithm == "sgd":
        return sgd_predictions(xs, ys, alpha, lam, start_weights(params, d, xs))
    if algorithm in ("gd-batch", "gd"):
        return one_step_predictions(xs, ys, alpha, lam, start_weights(params, d, xs),
                                    mean=algorithm == "gd-batch")
    raise ValueError(f"no closed form known for algorithm {algorithm!r}")


def checked_prefixes(algorithm: str, n_examples: int) -> list[int]:
    """Prefixes whose prediction the program promises: the query only for Theorems 1 and 2
    (their x_1 column holds no prediction), every prefix for the multi-exemplar learners."""
    if algorithm in SINGLE_EXEMPLAR:
        return [n_examples]
    return list(range(n_examples + 1))


def sampled_prefixes(n_examples: int) -> list[int]:
    """Every ``k <= 4`` (the under-determined start, where learners differ most), the powers
    of two and ``n``: about ``5 + log2 n`` prefixes, for checks that cost a pass per prefix
    (ILWD's probe fits, the a-posteriori bound's backward passes)."""
    powers = {2 ** j for j in range(n_examples.bit_length())}
    return sorted({k for k in range(min(n_examples, 4) + 1)} | powers | {n_examples})


def closed_form_prediction(algorithm: str, params: dict[str, object],
                           tasks: Tasks) -> torch.Tensor:
    """The closed form at the checked prefixes ``[N, K]``."""
    full = predictions(algorithm, params, tasks)
    return full[..., checked_prefixes(algorithm, tasks.n_examples)]
