"""``rawc compare CHECKPOINT...``: trained and compiled in-context learners against the
reference algorithms, at every prefix (Akyürek et al. §4.1; ``verify.metrics``).

Every checkpoint, trained or compiled, runs in ``construct.model.transformer.Transformer`` on
the same fresh tasks (``x ~ N(0, I)``, ``w ~ N(0, I)``, ``y = w^T x + sigma eps``; clipped to a
compiled checkpoint's declared input bound, where its guarantee holds). Its prediction at the
x-token after ``k`` exemplars is compared with each reference learner's, ``k = 0 .. n``:

- OLS (min-norm for ``k < d``);
- ridge(lam) for each ``--lam`` and the Bayes predictor for the noise, ridge(sigma^2) (tau = 1);
- one GD step from 0 at the step that is optimal for the prior, ``eta_k = k / (k + d + 1 +
  sigma^2)`` on the mean loss (Mahankali et al.), written GD1*, and one step of a given
  ``--alpha`` (``w = 2 alpha X^T Y / k``);
- one pass of SGD from 0 with step ``--alpha``.

SPD/d per prefix, its mean over ``k >= 1``, MSPD (``k < d``) and the model's own MSE/d against
the labels; the nearest reference is the one with the smallest mean SPD.
"""
from __future__ import annotations

import dataclasses
import os

import torch

from construct.model.checkpoint import Checkpoint, load_checkpoint
from construct.model.transformer import Transformer
from verify import metrics, solvers
from verify.tasks import Tasks, interleave, make_tasks


ILWD_TASKS = 256  # tasks whose implicit weights are fitted (d + 4 probe prompts each)


def gd_optimal_predictions(xs: torch.Tensor, ys: torch.Tensor, noise: float) -> torch.Tensor:
    """One mean-loss GD step from 0 at the prior's optimal step ``k / (k + d + 1 + s^2)``."""
    d, out = xs.shape[-1], [torch.zeros_like(xs[..., 0, 0])]
    for k in range(1, ys.shape[-1] + 1):
        moment = (xs[..., :k, :] * ys[..., :k, None]).sum(-2) / k
        out.append(k / (k + d + 1 + noise ** 2) * (moment * xs[..., k, :]).sum(-1))
    return torch.stack(out, dim=-1)


def references(d: int, noise: float, lams: tuple[float, ...], alpha: float
               ) -> list[metrics.Reference]:
    zero = torch.zeros(d, dtype=torch.float64)
    found = [metrics.Reference("ols", "ols", lambda xs, ys: solvers.ridge_predictions(xs, ys, 0))]
    bayes = noise ** 2
    for lam in sorted({*lams, *([bayes] if bayes > 0 else [])}):
        label = f"ridge({lam:g})" + (" = Bayes" if lam == bayes else "")
        found.append(metrics.Reference(label, "ridge", lambda xs, ys, lam=lam:
                                       solvers.ridge_predictions(xs, ys, lam)))
    found += [
        metrics.Reference("gd1*", "gd-batch", lambda xs, ys: gd_optimal_predictions(xs, ys, noise)),
        metrics.Reference(f"gd({alpha:g})", "gd-batch", lambda xs, ys: solvers.one_step_predictions(
            xs, ys, alpha, 0.0, zero.to(xs), mean=True)),
        metrics.Reference(f"sgd({alpha:g})", "sgd", lambda xs, ys: solvers.sgd_predictions(
            xs, ys, alpha, 0.0, zero.to(xs)))]
    return found


@dataclasses.dataclass(frozen=True)
class Comparison:
    name: str
    trained: bool
    d: int
    n: int
    mse: list[float]  # the model's squared error / d against the labels, per prefix
    spd: dict[str, list[float]]  # reference -> SPD/d per prefix k = 0..n
    ilwd: dict[str, dict[int, float]]  # reference -> {prefix k: ILWD/d} at sampled prefixes
    r2: dict[int, float]  # the worst R^2 of the model's implicit linear fit, per prefix

    def spd_mean(self, reference: str) -> float:
        values = self.spd[reference][1:] or self.spd[reference]
        return sum(values) / len(values)

    def mspd(self, reference: str) -> float:
        return metrics.mspd(torch.tensor(self.spd[reference]), self.d)

    @property
    def nearest(self) -> str:
        return min(self.spd, key=self.spd_mean)


def own_algorithm(checkpoint: Checkpoint, d: int) -> list[metrics.Reference]:
    """A compiled learner's own algorithm at its own parameters (``lam``, ``alpha``, ``w0``),
    as a reference: the positive control, SPD at rounding level."""
    name = str(checkpoint.algorithm.get("name"))
    if checkpoint.trained or not solvers.has_closed_form(name):
        return []
    own = metrics.own_reference(name)
    learners = metrics.reference_learners(name, checkpoint.algorithm.get("params") or {}, d)
    return [dataclasses.replace(r, name=f"{r.name} [{name}'s own]") for r in learners
            if r.algorithm == own]


def examples_of(checkpoint: Checkpoint) -> int:
    """The exemplars a checkpoint's prompts hold: a trained model's training ``n``, a compiled
    learner's ``n`` (1 for a single-exemplar construction such as gd)."""
    trained = checkpoint.training_config.get("n")
    return int(trained if trained is not None else
               (checkpoint.algorithm.get("params") or {}).get("n", 1))


def model_predictions(checkpoint: Checkpoint, tasks: Tasks, chunk: int = 256) -> torch.Tensor:
    """The checkpoint's prediction at every x-token ``[N, n + 1]`` (float64)."""
    model = Transformer(checkpoint.shape, checkpoint.weights)
    outputs = [model.outputs(part)[:, tasks.x_columns, 0] for part in tasks.tokens.split(chunk)]
    return torch.cat(outputs).double()


def compare_checkpoint(path: str, n_tasks: int, noise: float | None, lams: tuple[float, ...],
                       alpha: float, seed: int) -> Comparison:
    checkpoint = load_checkpoint(path)
    if checkpoint.shape.input_format.value != "interleaved-xy":
        raise ValueError(f"{path}: rawc compare reads interleaved x/y prompts; this model takes "
                         f"{checkpoint.shape.input_format.value} tokens (rawc verify checks "
                         "linear-attention blocks against their closed form)")
    noise = checkpoint.training_config.get("noise", 0.0) if noise is None else noise
    d, n = checkpoint.shape.d_in - 1, examples_of(checkpoint)
    bound = checkpoint.input_bound or float("inf")
    # One more exemplar than the prompt holds: its label is the query's, for the MSE.
    full = make_tasks(d, n_tasks, bound, seed, n_examples=n + 1, noise=noise)
    xs, ys, labels = full.xs[:, :n + 1], full.ys[:, :n], full.ys
    prior = checkpoint.shape.prior_column
    tasks = Tasks(interleave(xs, ys, prior), xs, ys, prior)
    ours = model_predictions(checkpoint, tasks)
    learners = references(d, noise, lams, alpha) + own_algorithm(checkpoint, d)
    spd = {r.name: metrics.spd(ours, r.predict(tasks.xs, tasks.ys), d).tolist()
           for r in learners}
    mse = (((ours - labels) ** 2).mean(0) / d).tolist()
    ilwd, r2 = implicit_weight_distances(checkpoint, learners, xs[:ILWD_TASKS],
                                         ys[:ILWD_TASKS], bound, seed)
    return Comparison(os.path.basename(path), checkpoint.trained, d, n, mse, spd, ilwd, r2)


def implicit_weight_distances(checkpoint: Checkpoint, learners: list[metrics.Reference],
                              xs: torch.Tensor, ys: torch.Tensor, bound: float, seed: int
                              ) -> tuple[dict[str, dict[int, float]], dict[int, float]]:
    """ILWD/d of the model against every learner at ``sampled_prefixes(n)`` (each costs
    ``d + 4`` probe prompts per task), and the worst R^2 of the model's linear fit there."""
    n_tasks, d, n = xs.shape[0], xs.shape[-1], ys.shape[-1]
    probes = make_tasks(d, n_tasks * (d + 4), bound, seed + 1).x.reshape(n_tasks, d + 4, d)
    model = Transformer(checkpoint.shape, checkpoint.weights)

    def predict_at_end(tokens: torch.Tensor) -> torch.Tensor:
        return torch.cat([model.outputs(part)[:, -1, 0] for part in tokens.split(512)])

    ilwd: dict[str, dict[int, float]] = {r.name: {} for r in learners}
    r2: dict[int, float] = {}
    for k in solvers.sampled_prefixes(n):
        weights, fit = metrics.implicit_weights(predict_at_end, xs, ys, k, probes,
                                                checkpoint.shape.prior_column)
        r2[k] = float(fit.min())
        for r in learners:
            other = metrics.reference_weights(r, xs, ys, k, probes)
            ilwd[r.name][k] = float(((weights - other) ** 2).sum(-1).mean()) / d
    return ilwd, r2


def table(comparisons: list[Comparison]) -> str:
    lines = []
    for c in comparisons:
        kind = "trained" if c.trained else "compiled"
        lines += [f"{c.name} ({kind}, d = {c.d}, n = {c.n}): MSE/d over prefixes "
                  f"{sum(c.mse[1:] or c.mse) / len(c.mse[1:] or c.mse):.4g}, nearest reference "
                  f"{c.nearest}",
                  f"  {'reference':<26} {'SPD/d (mean k>=1)':>18} {'MSPD (k<d)':>12} "
                  f"{'SPD/d at k=n':>13} {'ILWD/d at k=n':>14}"]
        for name in sorted(c.spd, key=c.spd_mean):
            lines.append(f"  {name:<26} {c.spd_mean(name):>18.4g} {c.mspd(name):>12.4g} "
                         f"{c.spd[name][-1]:>13.4g} {c.ilwd[name][c.n]:>14.4g}")
        fitted = {k: v for k, v in c.r2.items() if k >= 1}  # k = 0: nothing to fit yet
        lines.append(f"  (ILWD at k = {', '.join(map(str, sorted(c.ilwd[name])))} with --json; "
                     f"the model's implicit linear fit has R^2 >= "
                     f"{min(fitted.values(), default=1.0):.4f} at k >= 1)")
    return "\n".join(lines)


def plot(comparisons: list[Comparison], path: str) -> None:
    """SPD/d against the prefix, one panel per checkpoint, one line per reference."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5.5 * len(comparisons), 4), layout="constrained")
    axes = figure.subplots(1, len(comparisons), squeeze=False)[0]
    for ax, c in zip(axes, comparisons):
        for name in sorted(c.spd, key=c.spd_mean):
            ax.semilogy(range(len(c.spd[name])), [max(v, 1e-32) for v in c.spd[name]],
                        marker="o", markersize=3, label=name)
        ax.set(title=f"{c.name}: nearest {c.nearest}", xlabel="exemplars k before the query",
               ylabel="SPD / d")
        ax.legend(fontsize=7)
    figure.savefig(path, dpi=100, metadata={"Software": None})
