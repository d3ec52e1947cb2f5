"""``rawc phases``: Akyürek et al.'s Fig. 3 at CPU scale, each grid point a Ray task.

For every depth and label noise of the grid a transformer is trained on in-context linear
regression (``verify.training.icl``), written as a checkpoint into the output folder, and
compared with the reference learners (``verify.training.compare``: OLS, ridge at 0.1, 1 and
the Bayes ``sigma^2``, GD1*, one GD step and one SGD pass). The nearest reference (smallest
SPD/d averaged over the prefixes) is the point's phase. The paper finds one layer nearest to
GD, 2-4 layers to ridge and 8 or more to OLS (noiseless; with noise the Bayes ridge).

The grid runs on Ray (``verify.sweeps.ray_map``): a local instance on this machine's cores by
default, or a running cluster with ``--ray-address`` (``ray start --head`` on one machine,
``ray start --address HEAD:6379`` on the others, then ``rawc phases --ray-address
HEAD:6379``; every node needs rawc installed and the output folder on a shared file system).
Each task trains on one thread.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys

import numpy as np
from tqdm import tqdm

from verify.sweeps import ray_map
from verify.training.icl import ICLConfig

LAMS = (0.1, 1.0)  # ridge penalties beside the Bayes one


@dataclasses.dataclass(frozen=True)
class PhasePoint:
    layers: int
    noise: float
    loss: float  # the last training loss reading
    spd: dict[str, float]  # reference -> SPD/d averaged over the prefixes k >= 1
    mse: float  # the model's own MSE/d against the labels, averaged over k >= 1
    checkpoint: str

    @property
    def nearest(self) -> str:
        return min(self.spd, key=self.spd.get)


def family(reference: str) -> str:
    """GD-like (one step or one pass), ridge (a positive penalty) or OLS."""
    if reference.startswith(("gd", "sgd")):
        return "GD"
    return "OLS" if reference == "ols" else "ridge"


def run_point(config: ICLConfig, folder: str, eval_tasks: int, alpha: float) -> PhasePoint:
    """Train one grid point, save it, compare it (one thread: Ray runs points side by side)."""
    import torch

    from construct.model.checkpoint import save_checkpoint
    from verify.training.compare import compare_checkpoint
    from verify.training.icl import train, trained_model, training_record

    torch.set_num_threads(1)
    state = train(config, progress_label=f"L{config.layers} noise {config.noise:g}")
    path = os.path.join(folder, f"phase-L{config.layers}-noise{config.noise:g}.safetensors")
    save_checkpoint(trained_model(config, state), path, "trained-icl",
                    {"d": config.d, "n": config.n}, training_record(config, state))
    found = compare_checkpoint(path, eval_tasks, config.noise, LAMS, alpha, config.seed + 7)
    spd = {name: found.spd_mean(name) for name in found.spd}
    mse = sum(found.mse[1:]) / max(1, len(found.mse) - 1)
    return PhasePoint(config.layers, config.noise, state.losses[-1][1], spd, mse, path)


def run_grid(base: ICLConfig, depths: tuple[int, ...], noises: tuple[float, ...], folder: str,
             eval_tasks: int, alpha: float, ray_address: str | None) -> list[PhasePoint]:
    os.makedirs(folder, exist_ok=True)
    calls = [(dataclasses.replace(base, layers=layers, noise=noise), folder, eval_tasks, alpha)
             for layers in depths for noise in noises]
    points = list(tqdm(ray_map(run_point, calls, address=ray_address), total=len(calls),
                       desc="phases", unit="point", file=sys.stderr))
    return sorted(points, key=lambda p: (p.layers, p.noise))


def table(points: list[PhasePoint]) -> str:
    references = sorted({name for p in points for name in p.spd})
    widths = [max(10, len(name)) + 2 for name in references]
    near = max(len(p.nearest) for p in points) + 2
    head = f"{'layers':>6} {'noise':>6} {'loss':>8} {'MSE/d':>8} {'nearest':>{near}}" + "".join(
        f"{name:>{w}}" for name, w in zip(references, widths))
    lines = ["SPD/d to each reference, averaged over the prefixes k >= 1 (blank: the reference "
             "is not defined at that noise)", head, "-" * len(head)]
    for p in points:
        cells = "".join(f"{p.spd[n]:>{w}.4g}" if n in p.spd else " " * w
                        for n, w in zip(references, widths))
        lines.append(f"{p.layers:>6} {p.noise:>6g} {p.loss:>8.4f} {p.mse:>8.4f} "
                     f"{p.nearest:>{near}}" + cells)
    return "\n".join(lines)


def heat_map(points: list[PhasePoint], path: str) -> None:
    """Rows: depth; columns: noise; colour: the nearest reference's family; text: its name
    and SPD/d."""
    from matplotlib import colors
    from matplotlib.figure import Figure

    depths = sorted({p.layers for p in points})
    noises = sorted({p.noise for p in points})
    families = ["GD", "ridge", "OLS"]
    grid = np.full((len(depths), len(noises)), np.nan)
    figure = Figure(figsize=(1.8 + 2.2 * len(noises), 1.2 + 0.9 * len(depths)),
                    layout="constrained")
    ax = figure.add_subplot()
    for p in points:
        grid[depths.index(p.layers), noises.index(p.noise)] = families.index(family(p.nearest))
    cmap = colors.ListedColormap(["#9ecae1", "#fdae6b", "#a1d99b"])
    ax.imshow(grid, cmap=cmap, vmin=-0.5, vmax=2.5, aspect="auto")
    for p in points:
        ax.text(noises.index(p.noise), depths.index(p.layers),
                f"{p.nearest}\n{p.spd[p.nearest]:.3g}", ha="center", va="center", fontsize=7)
    ax.set_xticks(range(len(noises)), [f"{s:g}" for s in noises])
    ax.set_yticks(range(len(depths)), [str(d) for d in depths])
    ax.set(xlabel="label noise sigma", ylabel="layers",
           title="nearest reference learner (SPD/d); blue GD, orange ridge, green OLS")
    figure.savefig(path, dpi=100, metadata={"Software": None})


def read_json(path: str) -> list[PhasePoint]:
    """The points ``write_json`` stored (``rawc phases --from``: the table and map again,
    without training)."""
    with open(path, encoding="utf-8") as handle:
        records = json.load(handle)
    fields = {f.name for f in dataclasses.fields(PhasePoint)}
    return [PhasePoint(**{k: v for k, v in r.items() if k in fields}) for r in records]


def write_json(points: list[PhasePoint], path: str) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump([{**dataclasses.asdict(p), "nearest": p.nearest} for p in points], handle,
                  indent=2)
