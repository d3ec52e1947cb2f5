"""``rawc transience``: Singh et al. (2023) in miniature, two runs on Ray, without and with L2.

The task (bursty few-shot classification over Gaussian-mixture classes, after Chan et al.
2022 and Reddy 2023) can be solved two ways, so training may use either:

- ``classes`` training classes, each a mean ``mu_c ~ N(0, I_D / D)``; an item of class ``c``
  is ``(mu_c + eps eta) / sqrt(1 + eps^2)``, ``eta ~ N(0, I_D / D)``; class ``c`` has the fixed
  label ``c mod labels``;
- a training sequence is ``context`` (item, label) pairs and a query item; ``burst`` of the
  context items are of the query's class, the rest of one other class (so counting labels
  does not tell the answer: the query must be matched with its items). The target is the
  query's label, which the context shows (in-context) and which the weights can memorise
  (in-weights).

Two evaluations, logged along training:

- in-context accuracy (ICL): novel classes (fresh means) whose labels are drawn at random for
  each sequence; the context holds ``burst`` items of the query's class with its label, and
  the rest of one other novel class with another label. Only the context tells the label.
- in-weights accuracy (IWL): training classes, none of the query's class in the context. Only
  the weights tell the label.

Transience: ICL accuracy rises, then falls while the training loss keeps falling (IWL takes
over). Singh et al. find that L2 regularisation keeps ICL; the second run has weight decay
(AdamW's decoupled L2) and the same seed, data and schedule (constant learning rate after a
warm-up: a decaying rate can hide a late transition).

Tokens: an item is ``[x, 0_labels]``, a label ``[0_D, onehot]``; the model is
``verify.training.icl.ICLTransformer`` with ``labels`` outputs, read at the query.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import sys

import torch
from torch.nn import functional as F
from tqdm import tqdm

from construct.targets.architecture import Activation, ModelShape
from verify.sweeps import ray_map, step_bar


@dataclasses.dataclass(frozen=True)
class TransienceConfig:
    dim: int = 32
    classes: int = 256
    labels: int = 16
    context: int = 8
    burst: int = 4
    within: float = 0.1  # eps: item noise relative to the class mean
    layers: int = 2
    d_model: int = 64
    heads: int = 4
    steps: int = 20000
    batch: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    eval_every: int = 500
    eval_sequences: int = 1024
    seed: int = 0

    def shape(self) -> ModelShape:
        return ModelShape(d_model=self.d_model, n_layers=self.layers, n_heads=self.heads,
                          d_head=self.d_model // self.heads, d_mlp=4 * self.d_model,
                          n_ctx=2 * self.context + 1, d_in=self.dim + self.labels,
                          d_out=self.labels, act_fn=Activation.GELU, ln1=True, ln2=True,
                          ln_eps=1e-5, attn_scale=math.sqrt(self.d_model // self.heads))


class Mixture:
    """The class means (training and novel) and the sequence samplers."""

    def __init__(self, config: TransienceConfig) -> None:
        self.config = config
        g = torch.Generator().manual_seed(config.seed + 99)
        self.means = torch.randn(config.classes, config.dim, generator=g) / math.sqrt(config.dim)

    def items(self, means: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        c = self.config
        noise = torch.randn(means.shape, generator=g) / math.sqrt(c.dim)
        return (means + c.within * noise) / math.sqrt(1 + c.within ** 2)

    def tokens(self, items: torch.Tensor, labels: torch.Tensor, query: torch.Tensor
               ) -> torch.Tensor:
        c = self.config
        batch, n = labels.shape
        out = torch.zeros(batch, 2 * n + 1, c.dim + c.labels)
        out[:, 0:-1:2, :c.dim] = items
        out[:, 1::2, c.dim:] = F.one_hot(labels, c.labels).float()
        out[:, -1, :c.dim] = query
        return out

    def bursty(self, batch: int, g: torch.Generator, in_context: bool = True
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Training sequences: ``burst`` items of the query's class and the rest of one other
        class, each with its fixed label, in random order (so the label in the context is
        found by matching the query with its items, not by counting). ``in_context=False``:
        the IWL evaluation, two other classes and none of the query's. Returns ``(tokens,
        target labels)``."""
        c = self.config
        query = torch.randint(c.classes, (batch,), generator=g)
        others = torch.stack([torch.randperm(c.classes - 1, generator=g)[:2]
                              for _ in range(batch)])
        others = others + (others >= query[:, None]).long()  # never the query's class
        first = query if in_context else others[:, 1]
        classes = others[:, :1].repeat(1, c.context)
        classes[:, :c.burst] = first[:, None]
        order = torch.argsort(torch.rand(batch, c.context, generator=g), dim=1)
        classes = torch.gather(classes, 1, order)
        items = self.items(self.means[classes], g)
        return (self.tokens(items, classes % c.labels, self.items(self.means[query], g)),
                query % c.labels)

    def novel(self, batch: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """The ICL evaluation: two fresh classes, fresh random labels per sequence."""
        c = self.config
        means = torch.randn(batch, 2, c.dim, generator=g) / math.sqrt(c.dim)
        labels = torch.stack([torch.randperm(c.labels, generator=g)[:2] for _ in range(batch)])
        which = torch.zeros(batch, c.context, dtype=torch.long)
        which[:, c.burst:] = 1
        order = torch.argsort(torch.rand(batch, c.context, generator=g), dim=1)
        which = torch.gather(which, 1, order)
        items = self.items(torch.gather(means, 1, which[..., None].expand(-1, -1, c.dim)), g)
        query = self.items(means[:, 0], g)
        return self.tokens(items, torch.gather(labels, 1, which), query), labels[:, 0]


def accuracy(model, tokens: torch.Tensor, targets: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model.logits(tokens)[:, -1].argmax(-1) == targets).float().mean())


def run(config: TransienceConfig, progress: bool = True) -> dict[str, object]:
    """Train, logging ``step, loss, icl, iwl`` every ``eval_every`` steps."""
    from verify.training.icl import ICLTransformer

    torch.set_num_threads(1)
    mixture = Mixture(config)
    model = ICLTransformer(config.shape(), torch.Generator().manual_seed(config.seed))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr,
                                  weight_decay=config.weight_decay, betas=(0.9, 0.98))
    warmup = max(1, config.steps // 20)
    evaluation = torch.Generator().manual_seed(config.seed + 12345)
    icl_set = mixture.novel(config.eval_sequences, evaluation)
    iwl_set = mixture.bursty(config.eval_sequences, evaluation, in_context=False)
    log: list[dict[str, float]] = []
    running = 0.0
    bar = step_bar(config.steps, f"transience wd={config.weight_decay:g}", enabled=progress)
    for step in range(1, config.steps + 1):
        bar.update()
        for group in optimizer.param_groups:
            group["lr"] = config.lr * min(1.0, step / warmup)
        tokens, targets = mixture.bursty(config.batch,
                                         torch.Generator().manual_seed(config.seed * 7919 + step))
        loss = F.cross_entropy(model.logits(tokens)[:, -1], targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        running = loss.item() if step == 1 else 0.98 * running + 0.02 * loss.item()
        if step % config.eval_every == 0 or step == config.steps:
            log.append({"step": step, "loss": running, "icl": accuracy(model, *icl_set),
                        "iwl": accuracy(model, *iwl_set)})
    bar.close()
    return {"config": dataclasses.asdict(config), "log": log, "verdict": verdict(log)}


CONTEXT_CHANCE = 0.5  # picking one of the two labels the ICL evaluation's context shows


def verdict(log: list[dict[str, float]], drop: float = 0.1) -> dict[str, object]:
    """Transient ICL: accuracy on novel classes rose at least ``drop`` above
    ``CONTEXT_CHANCE`` (a model that only knows the answer is one of the context's labels
    scores that much without matching the query) and then fell by ``drop`` while the
    training loss kept falling."""
    if not log:
        return {"transient": False, "emerged": False, "reason": "no evaluation"}
    peak = max(range(len(log)), key=lambda i: log[i]["icl"])
    final = log[-1]
    emerged = log[peak]["icl"] >= CONTEXT_CHANCE + drop
    fell = log[peak]["icl"] - final["icl"] >= drop
    loss_fell = final["loss"] < log[peak]["loss"]
    return {"transient": bool(emerged and fell and loss_fell), "emerged": bool(emerged),
            "icl_peak": log[peak]["icl"], "peak_step": log[peak]["step"],
            "icl_final": final["icl"], "iwl_final": final["iwl"],
            "loss_at_peak": log[peak]["loss"], "loss_final": final["loss"]}


def run_pair(config: TransienceConfig, l2: float, ray_address: str | None
             ) -> list[dict[str, object]]:
    """The run without weight decay and the run with ``l2``, side by side as Ray tasks."""
    calls = [(dataclasses.replace(config, weight_decay=wd),) for wd in (0.0, l2)]
    runs = list(tqdm(ray_map(run, calls, address=ray_address), total=2, desc="transience",
                     unit="run", file=sys.stderr))
    return sorted(runs, key=lambda r: r["config"]["weight_decay"])


def report(runs: list[dict[str, object]]) -> str:
    lines = []
    for r in runs:
        wd, v = r["config"]["weight_decay"], r["verdict"]
        lines.append(f"weight decay {wd:g}: ICL accuracy peaks at {v['icl_peak']:.3f} (step "
                     f"{v['peak_step']}), ends at {v['icl_final']:.3f}; IWL ends at "
                     f"{v['iwl_final']:.3f}; loss {v['loss_at_peak']:.4f} at the peak, "
                     f"{v['loss_final']:.4f} at the end; ICL emerged (>= "
                     f"{CONTEXT_CHANCE + 0.1:g}, above picking one of the context's two labels): "
                     f"{'yes' if v['emerged'] else 'no'}; transient: "
                     f"{'yes' if v['transient'] else 'no'}")
    return "\n".join(lines)


def plot(runs: list[dict[str, object]], path: str) -> None:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 4), layout="constrained")
    acc, loss = figure.subplots(1, 2)
    for r in runs:
        steps = [e["step"] for e in r["log"]]
        wd = r["config"]["weight_decay"]
        acc.plot(steps, [e["icl"] for e in r["log"]], label=f"ICL, wd {wd:g}")
        acc.plot(steps, [e["iwl"] for e in r["log"]], linestyle="--", label=f"IWL, wd {wd:g}")
        loss.semilogy(steps, [e["loss"] for e in r["log"]], label=f"wd {wd:g}")
    acc.set(xlabel="step", ylabel="accuracy", title="in-context (novel classes) and "
            "in-weights (training classes) accuracy")
    loss.set(xlabel="step", ylabel="training loss (running mean)", title="training loss")
    acc.legend(fontsize=7)
    loss.legend(fontsize=7)
    figure.savefig(path, dpi=100, metadata={"Software": None})


def read_json(path: str) -> list[dict[str, object]]:
    """The runs ``write_json`` stored, their verdicts taken again by today's rule."""
    with open(path, encoding="utf-8") as handle:
        runs = json.load(handle)
    return [{**r, "verdict": verdict(r["log"])} for r in runs]


def write_json(runs: list[dict[str, object]], path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(runs, handle, indent=2)
