"""``rawc probe CHECKPOINT``: which layer's residual stream holds the learner's weights.

Akyürek et al. §5 decode the moment ``X^T Y`` and the OLS weights from each layer's hidden
state. Here the residual at the query's x-token after ``k`` exemplars (``k = n`` unless
``--prefix``) is read after the embedding (layer 0 in the table) and after every executed
layer, on fresh tasks, and a probe is fitted from it to each target, on one half of the tasks,
and scored on the other half by ``R^2 = 1 - SS_res / SS_tot`` (summed over the target's
entries):

- linear: least squares with an intercept on standardised residual rows (rows constant over
  the tasks, like a compiled model's position and pad rows, are dropped);
- MLP: one hidden GeLU layer of 64 units, Adam, on the same split (the paper finds trained
  models hold their targets nonlinearly).

Targets: ``X^T Y``, OLS weights (min-norm), ridge weights at the Bayes ``lam = sigma^2`` (when
the noise is given) and, for a compiled learner, its own algorithm's weights (the implicit
weights of ``verify.metrics``: the fit of its predictions on probe queries, exact for a linear
learner). The compiled checkpoint is the positive control: the program writes its weights into
residual rows, so a linear probe must read them (R^2 at rounding level) from the layer where
they are written on.
"""
from __future__ import annotations

import dataclasses
import os

import torch

from construct.model.checkpoint import load_checkpoint
from construct.model.transformer import Transformer
from verify import metrics, solvers
from verify.tasks import interleave, make_tasks
from verify.training.compare import examples_of, own_algorithm

MLP_HIDDEN, MLP_STEPS = 64, 400


def r_squared(predicted: torch.Tensor, target: torch.Tensor) -> float:
    total = ((target - target.mean(0)) ** 2).sum()
    return float(1 - ((predicted - target) ** 2).sum() / total.clamp(min=1e-300))


def standardised(train: torch.Tensor, test: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows that vary over the training tasks, centred and scaled by the training statistics."""
    mean, scale = train.mean(0), train.std(0)
    keep = scale > 1e-12 * (1 + mean.abs())
    mean, scale = mean[keep], scale[keep]
    return (train[:, keep] - mean) / scale, (test[:, keep] - mean) / scale


def linear_probe(train: torch.Tensor, target: torch.Tensor, test: torch.Tensor) -> torch.Tensor:
    design = torch.cat([train, torch.ones_like(train[:, :1])], 1)
    solution = torch.linalg.lstsq(design, target, driver="gelsd").solution
    return torch.cat([test, torch.ones_like(test[:, :1])], 1) @ solution


def mlp_probe(train: torch.Tensor, target: torch.Tensor, test: torch.Tensor,
              seed: int) -> torch.Tensor:
    torch.manual_seed(seed)
    probe = torch.nn.Sequential(torch.nn.Linear(train.shape[1], MLP_HIDDEN), torch.nn.GELU(),
                                torch.nn.Linear(MLP_HIDDEN, target.shape[1]))
    optimizer = torch.optim.Adam(probe.parameters(), lr=1e-2)
    x, mean, scale = train.float(), target.mean(0), target.std(0).clamp(min=1e-12)
    y = ((target - mean) / scale).float()
    for _ in range(MLP_STEPS):
        loss = ((probe(x) - y) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return probe(test.float()).double() * scale + mean


@dataclasses.dataclass(frozen=True)
class ProbeResult:
    name: str
    prefix: int
    layers: int  # executed layers; the table has layers + 1 rows (0: the embedding)
    linear: dict[str, list[float]]  # target -> R^2 per layer
    mlp: dict[str, list[float]]

    def first_readable(self, target: str, threshold: float = 0.999) -> int | None:
        """The first layer whose linear probe reads ``target`` with R^2 >= threshold."""
        return next((l for l, r2 in enumerate(self.linear[target]) if r2 >= threshold), None)


def residuals_at(checkpoint, tokens: torch.Tensor, position: int) -> list[torch.Tensor]:
    """The residual at ``position`` after the embedding and after every executed layer."""
    model = Transformer(checkpoint.shape, checkpoint.weights)
    found = [model.embed(tokens)[:, position]]
    found += [step.end[:, position] for step in model.steps(tokens)]
    return [r.double() for r in found]


def probe_checkpoint(path: str, n_tasks: int, prefix: int | None, noise: float | None,
                     seed: int, mlp: bool = True) -> ProbeResult:
    checkpoint = load_checkpoint(path)
    d, n = checkpoint.shape.d_in - 1, examples_of(checkpoint)
    k = n if prefix is None else prefix
    if not 1 <= k <= n:
        raise ValueError(f"--prefix must be between 1 and n = {n}, got {k}")
    noise = checkpoint.training_config.get("noise", 0.0) if noise is None else noise
    prior = checkpoint.shape.prior_column
    tasks = make_tasks(d, n_tasks, checkpoint.input_bound or float("inf"), seed, n_examples=k,
                       noise=noise)
    tokens = interleave(tasks.xs, tasks.ys, prior).to(torch.float64)
    X, Y = tasks.xs[:, :k], tasks.ys[:, :k]
    targets = {"X^T Y": (X * Y[..., None]).sum(1),
               "w_ols": (torch.linalg.pinv(X) @ Y[..., None])[..., 0]}
    if noise > 0:
        eye = torch.eye(d, dtype=X.dtype)
        targets[f"w_ridge({noise ** 2:g})"] = torch.linalg.solve(
            X.transpose(1, 2) @ X + noise ** 2 * eye, X.transpose(1, 2) @ Y[..., None])[..., 0]
    query_probes = make_tasks(d, n_tasks * (d + 4), float("inf"), seed + 1).x
    for reference in own_algorithm(checkpoint, d):
        targets[f"w {reference.name}"] = metrics.reference_weights(
            reference, tasks.xs, tasks.ys, k, query_probes.reshape(n_tasks, d + 4, d))
    layers = residuals_at(checkpoint, tokens, tokens.shape[1] - 1)
    half = n_tasks // 2
    linear: dict[str, list[float]] = {name: [] for name in targets}
    nonlinear: dict[str, list[float]] = {name: [] for name in targets} if mlp else {}
    for resid in layers:
        train, test = standardised(resid[:half], resid[half:])
        for name, target in targets.items():
            linear[name].append(r_squared(linear_probe(train, target[:half], test),
                                          target[half:]))
            if mlp:
                nonlinear[name].append(r_squared(mlp_probe(train, target[:half], test, seed),
                                                 target[half:]))
    return ProbeResult(os.path.basename(path), k, len(layers) - 1, linear, nonlinear)


def table(result: ProbeResult) -> str:
    columns = [("linear", name, values) for name, values in result.linear.items()]
    columns += [("MLP", name, values) for name, values in result.mlp.items()]
    widths = [max(10, len(f"{kind} {name}")) + 2 for kind, name, _ in columns]
    lines = [f"{result.name}: R^2 of probes at the query after k = {result.prefix} exemplars "
             "(held-out half of the tasks; layer 0 = after the embedding)",
             "layer" + "".join(f"{kind + ' ' + name:>{w}}" for (kind, name, _), w
                               in zip(columns, widths))]
    for l in range(result.layers + 1):
        lines.append(f"{l:<5}" + "".join(f"{values[l]:>{w}.6f}" for (_, _, values), w
                                         in zip(columns, widths)))
    return "\n".join(lines)


def plot(result: ProbeResult, path: str) -> None:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4), layout="constrained")
    ax = figure.add_subplot()
    for kind, table_ in (("linear", result.linear), ("MLP", result.mlp)):
        for name, values in table_.items():
            ax.plot(range(len(values)), values, marker="o", markersize=3,
                    linestyle="-" if kind == "linear" else "--", label=f"{kind}: {name}")
    ax.set(title=f"{result.name}: probe R^2 per layer (k = {result.prefix})", xlabel="layer "
           "(0 = embedding)", ylabel="held-out R^2", ylim=(min(-0.05, ax.get_ylim()[0]), 1.02))
    ax.legend(fontsize=7)
    figure.savefig(path, dpi=100, metadata={"Software": None})
