"""Akyürek et al.'s agreement metrics between in-context learners, per prefix, divided by d.

- ``SPD(A1, A2)`` at prefix ``k``: ``E (A1(D_k)(x') - A2(D_k)(x'))^2 / d`` over tasks, with
  ``D_k`` the first ``k`` exemplars and ``x'`` the next x (the query position ``k + 1``).
- ``MSPD``: SPD averaged over the under-determined prefixes ``k < d``.
- ``ILWD(A1, A2)`` at prefix ``k``: each learner's implicit linear weights ``w_A`` are the
  least-squares fit (with an intercept) of its predictions on probe queries ``x'_1..x'_P``
  after ``D_k``; ``ILWD = E |w_A1 - w_A2|^2 / d``. ``R^2`` of the fit says how linear the
  learner is there (1 for every learner here: each predicts ``w^T x'``).

Reference learners (``reference_learners``): OLS (min-norm), ridge, one full-batch GD step
(mean loss) and one-pass SGD, with the compiled model's own parameters where it has them.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch

from verify import solvers
from verify.tasks import interleave

Predictor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (xs, ys) -> [N, n + 1]


@dataclasses.dataclass(frozen=True)
class Reference:
    name: str
    algorithm: str  # the named algorithm it coincides with, for "nearest is its own"
    predict: Predictor


def reference_learners(algorithm: str, params: dict[str, object], d: int) -> list[Reference]:
    """OLS, ridge(lam), GD-batch(alpha) and SGD(alpha); own parameters where the model has them."""
    number = solvers.number
    own_lam = number(params.get("lam", 0))
    lam = own_lam if own_lam > 0 and algorithm in ("ridge", "sherman-morrison") else 0.1
    zero = {"w0": [0] * d}
    gd = dict(params) if algorithm in ("gd-batch", "gd") else {"alpha": "1/10", **zero}
    sgd = dict(params) if algorithm == "sgd" else {"alpha": "1/100", **zero}

    def start(p: dict[str, object], like: torch.Tensor) -> torch.Tensor:
        return solvers.start_weights(p, d, like)

    return [
        Reference("ols", "ols", lambda xs, ys: solvers.ridge_predictions(xs, ys, 0.0)),
        Reference(f"ridge({lam:g})", "ridge",
                  lambda xs, ys: solvers.ridge_predictions(xs, ys, lam)),
        Reference(f"gd-batch({number(gd['alpha']):g})", "gd-batch",
                  lambda xs, ys: solvers.one_step_predictions(
                      xs, ys, number(gd["alpha"]), number(gd.get("lam", 0)), start(gd, xs),
                      mean=True)),
        Reference(f"sgd({number(sgd['alpha']):g})", "sgd",
                  lambda xs, ys: solvers.sgd_predictions(
                      xs, ys, number(sgd["alpha"]), number(sgd.get("lam", 0)), start(sgd, xs))),
    ]


def own_reference(algorithm: str) -> str:
    """The reference learner a named algorithm must agree with."""
    return {"gd": "gd-batch", "sherman-morrison": "ridge"}.get(algorithm, algorithm)


def spd(a: torch.Tensor, b: torch.Tensor, d: int) -> torch.Tensor:
    """Per-prefix squared prediction difference ``[n + 1]`` (mean over tasks, divided by d)."""
    return ((a.double() - b.double()) ** 2).mean(0) / d


def mspd(per_prefix: torch.Tensor, d: int) -> float:
    """SPD averaged over the under-determined prefixes ``k < d`` (all of them if n < d)."""
    under = per_prefix[: min(d, per_prefix.shape[0])]
    return float(under.mean())


def probe_batch(xs: torch.Tensor, ys: torch.Tensor, k: int, probes: torch.Tensor,
                prior_column: bool) -> torch.Tensor:
    """Tokens ``[N * P, T_k, d + 1]``: each task's first ``k`` exemplars, then one probe query."""
    n_tasks, n_probes = xs.shape[0], probes.shape[1]
    context = xs[:, :k, :].repeat_interleave(n_probes, dim=0)
    queries = probes.reshape(n_tasks * n_probes, 1, -1)
    labels = ys[:, :k].repeat_interleave(n_probes, dim=0)
    return interleave(torch.cat([context, queries], dim=1), labels, prior_column)


def linear_fit(queries: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Least-squares ``values ~ w^T q + c`` per task: ``w`` ``[N, d]`` and ``R^2`` ``[N]``."""
    design = torch.cat([queries, torch.ones_like(queries[..., :1])], dim=-1)
    solution = torch.linalg.lstsq(design, values[..., None]).solution[..., 0]
    fitted = (design * solution[:, None, :]).sum(-1)
    total = ((values - values.mean(-1, keepdim=True)) ** 2).sum(-1)
    residual = ((values - fitted) ** 2).sum(-1)
    r2 = torch.where(total > 0, 1 - residual / total.clamp(min=1e-300), torch.ones_like(total))
    return solution[:, :-1], r2


def implicit_weights(predict_at_end: Callable[[torch.Tensor], torch.Tensor], xs: torch.Tensor,
                     ys: torch.Tensor, k: int, probes: torch.Tensor, prior_column: bool
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """A model's implicit weights after ``k`` exemplars: fit of its probe predictions."""
    tokens = probe_batch(xs, ys, k, probes, prior_column)
    values = predict_at_end(tokens).reshape(probes.shape[0], probes.shape[1]).double()
    return linear_fit(probes.double(), values)


def reference_weights(reference: Reference, xs: torch.Tensor, ys: torch.Tensor, k: int,
                      probes: torch.Tensor) -> torch.Tensor:
    """A reference learner's implicit weights after ``k`` exemplars (same probe fit)."""
    n_tasks, n_probes = probes.shape[:2]
    context = xs[:, :k, :].repeat_interleave(n_probes, dim=0)
    extended = torch.cat([context, probes.reshape(n_tasks * n_probes, 1, -1)], dim=1)
    labels = ys[:, :k].repeat_interleave(n_probes, dim=0)
    values = reference.predict(extended, labels)[:, k].reshape(n_tasks, n_probes)
    return linear_fit(probes, values)[0]
