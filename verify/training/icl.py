"""``rawc train``: a standard causal transformer trained on in-context linear regression.

The setting of Akyürek et al. (2023, §4.2) and Garg et al. (2022) at CPU scale: each prompt
is a fresh task, ``x_i ~ N(0, I_d)``, ``w ~ N(0, I_d)``, ``y_i = w^T x_i + sigma eps_i``, in the
token format of the compiled checkpoints (``verify.tasks.interleave``: x-token ``[0, x]``,
y-token ``[y, 0_d]``, the prediction read at every x-token). The loss is the squared error at
every x-token, ``n + 1`` prefixes per prompt (``k = 0 .. n`` exemplars before the query).

The model is exactly the forward of ``shared/DESIGN.md`` with pre-LayerNorm blocks
(``ln1``, ``ln2``), a GeLU MLP, learned positions, scores divided by ``sqrt(d_head)`` and no
final LayerNorm, its parameters named as the checkpoint's tensors. So a trained model is
written as a ``rawc.checkpoint/1`` file (``"trained": true`` with its training record) and runs
in ``construct.model.transformer.Transformer`` like a compiled one: ``rawc compare`` and ``rawc
probe`` read both alike. Optimiser: AdamW (``--weight-decay`` is the L2 term), linear warmup
over the first tenth, then linear decay to zero; batches are drawn from a generator seeded by
``(seed, step)``, so a resumed run sees the same data as an uninterrupted one.
"""
from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
import torch
from torch.nn import functional as F

from construct.model.checkpoint import replace_atomically
from construct.model.transformer import momentum_matrix
from construct.targets.architecture import Activation, AttnKind, ModelShape
from verify.sweeps import step_bar
from verify.tasks import interleave

LOG_POINTS = 50  # the training record keeps this many loss readings


@dataclasses.dataclass(frozen=True)
class ICLConfig:
    d: int = 4
    n: int = 16
    layers: int = 2
    d_model: int = 64
    heads: int = 4
    d_mlp: int = 64
    noise: float = 0.0  # label noise standard deviation sigma (tau = 1: Bayes is ridge(sigma^2))
    steps: int = 3000
    batch: int = 128
    lr: float = 3e-3
    weight_decay: float = 0.0
    seed: int = 0
    device: str = "cpu"
    attention: AttnKind = AttnKind.SOFTMAX  # or causal linear attention, with MoAttn's average
    momentum: float = 0.0  # MoAttn's beta (linear-momentum only)

    def __post_init__(self) -> None:
        object.__setattr__(self, "attention", AttnKind(self.attention))
        if self.d_model % self.heads:
            raise ValueError(f"--d-model {self.d_model} is not a multiple of --heads "
                             f"{self.heads}")
        if (self.attention is AttnKind.LINEAR_MOMENTUM) != (self.momentum != 0):
            raise ValueError("--momentum (MoAttn's beta, 0 < beta < 1) goes with --attention "
                             f"momentum and only with it (got --attention "
                             f"{self.attention.value}, --momentum {self.momentum:g})")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"--momentum must be in [0, 1), got {self.momentum:g}")

    def shape(self) -> ModelShape:
        d_head = self.d_model // self.heads
        return ModelShape(d_model=self.d_model, n_layers=self.layers, n_heads=self.heads,
                          d_head=d_head, d_mlp=self.d_mlp, n_ctx=2 * self.n + 1,
                          d_in=self.d + 1, d_out=1, act_fn=Activation.GELU, ln1=True, ln2=True,
                          ln_eps=1e-5, attn_scale=math.sqrt(d_head), attn_kind=self.attention,
                          attn_momentum=self.momentum)


def sample_batch(config: ICLConfig, batch: int, generator: torch.Generator
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(tokens [B, 2n+1, d+1], xs [B, n+1, d], labels [B, n+1])``: the last label is the
    query's, the target of the prediction at the query."""
    draw = lambda *shape: torch.randn(*shape, generator=generator)
    xs, w = draw(batch, config.n + 1, config.d), draw(batch, config.d)
    labels = (xs * w[:, None, :]).sum(-1) + config.noise * draw(batch, config.n + 1)
    return interleave(xs, labels[:, :-1]), xs, labels


class ICLTransformer(torch.nn.Module):
    """The DESIGN forward with trainable tensors named as in the checkpoint."""

    def __init__(self, shape: ModelShape, generator: torch.Generator) -> None:
        super().__init__()
        self.shape = shape
        m, h, dh, f = shape.d_model, shape.n_heads, shape.d_head, shape.d_mlp

        def uniform(*dims: int, fan_in: int) -> torch.nn.Parameter:
            # Akyürek's "uniform scaling": U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
            bound = 1 / math.sqrt(fan_in)
            return torch.nn.Parameter((torch.rand(*dims, generator=generator) * 2 - 1) * bound)

        zeros = lambda *dims: torch.nn.Parameter(torch.zeros(*dims))
        ones = lambda *dims: torch.nn.Parameter(torch.ones(*dims))
        tensors = {"embed.W_E": uniform(shape.d_in, m, fan_in=shape.d_in),
                   "pos_embed.W_pos": uniform(shape.n_ctx, m, fan_in=m),
                   "unembed.W_U": uniform(m, shape.d_out, fan_in=m),
                   "unembed.b_U": zeros(shape.d_out)}
        for l in range(shape.n_layers):
            p = f"blocks.{l}."
            tensors.update({
                p + "ln1.w": ones(m), p + "ln1.b": zeros(m),
                p + "ln2.w": ones(m), p + "ln2.b": zeros(m),
                **{p + f"attn.W_{c}": uniform(h, m, dh, fan_in=m) for c in "QKV"},
                **{p + f"attn.b_{c}": zeros(h, dh) for c in "QKV"},
                p + "attn.W_O": uniform(h, dh, m, fan_in=h * dh), p + "attn.b_O": zeros(m),
                p + "mlp.W_in": uniform(m, f, fan_in=m), p + "mlp.b_in": zeros(f),
                p + "mlp.W_out": uniform(f, m, fan_in=f), p + "mlp.b_out": zeros(m)})
        self.names = list(tensors)
        # ParameterDict keys cannot hold dots.
        self.params = torch.nn.ParameterDict({k.replace(".", "/"): v for k, v in tensors.items()})

    def tensor(self, name: str) -> torch.Tensor:
        return self.params[name.replace(".", "/")]

    def weights(self) -> dict[str, np.ndarray]:
        return {name: self.tensor(name).detach().cpu().double().numpy() for name in self.names}

    def attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Causal softmax, or causal linear attention (raw scores, no normalisation), plus
        MoAttn's ``sum_{i<t} beta^(t-i) v_i`` for ``linear-momentum``: the forward of
        ``construct.model.transformer`` for each ``attn_kind``."""
        s = self.shape
        if s.attn_kind is AttnKind.SOFTMAX:
            return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=1 / s.attn_scale)
        length = q.shape[-2]
        scores = (q @ k.transpose(-1, -2) / s.attn_scale).tril()
        out = scores @ v
        if s.attn_kind is AttnKind.LINEAR_MOMENTUM:
            out = out + momentum_matrix(length, s.attn_momentum, q.dtype, q.device) @ v
        return out

    def logits(self, tokens: torch.Tensor) -> torch.Tensor:
        """The read-out ``[B, T, d_out]``."""
        s, t = self.shape, self.tensor
        length = tokens.shape[-2]
        resid = tokens @ t("embed.W_E") + t("pos_embed.W_pos")[:length]
        for l in range(s.n_layers):
            p = f"blocks.{l}."
            z = F.layer_norm(resid, (s.d_model,), t(p + "ln1.w"), t(p + "ln1.b"), s.ln_eps)
            q, k, v = (torch.einsum("btm,hmd->bhtd", z, t(p + f"attn.W_{c}"))
                       + t(p + f"attn.b_{c}")[:, None, :] for c in "QKV")
            heads = self.attention(q, k, v)
            resid = resid + torch.einsum("bhtd,hdm->btm", heads, t(p + "attn.W_O")) \
                + t(p + "attn.b_O")
            z = F.layer_norm(resid, (s.d_model,), t(p + "ln2.w"), t(p + "ln2.b"), s.ln_eps)
            hidden = F.gelu(z @ t(p + "mlp.W_in") + t(p + "mlp.b_in"))
            resid = resid + hidden @ t(p + "mlp.W_out") + t(p + "mlp.b_out")
        return resid @ t("unembed.W_U") + t("unembed.b_U")

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Predictions ``[B, T]`` (``out[..., 0]`` at every position)."""
        return self.logits(tokens)[..., 0]


def learning_rate(config: ICLConfig, step: int) -> float:
    warmup = max(1, config.steps // 10)
    if step < warmup:
        return config.lr * (step + 1) / warmup
    return config.lr * max(0.0, (config.steps - step) / max(1, config.steps - warmup))


@dataclasses.dataclass
class TrainState:
    """What a resumed run needs: the model, the optimiser, the step reached, the loss log."""

    model: ICLTransformer
    optimizer: torch.optim.Optimizer
    step: int = 0
    losses: list[tuple[int, float]] = dataclasses.field(default_factory=list)
    seconds: float = 0.0

    def save(self, path: str) -> None:
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "step": self.step, "losses": self.losses, "seconds": self.seconds}
        replace_atomically(path, lambda tmp: torch.save(state, tmp))

    def load(self, path: str) -> None:
        saved = torch.load(path, map_location="cpu", weights_only=False)
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.step, self.losses = int(saved["step"]), list(saved["losses"])
        self.seconds = float(saved["seconds"])


def new_state(config: ICLConfig) -> TrainState:
    generator = torch.Generator().manual_seed(config.seed)
    model = ICLTransformer(config.shape(), generator).to(config.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr,
                                  weight_decay=config.weight_decay, betas=(0.9, 0.98))
    return TrainState(model, optimizer)


def train(config: ICLConfig, state: TrainState | None = None, resume_path: str | None = None,
          save_every: int = 500, progress: bool = True, until: int | None = None,
          progress_label: str | None = None) -> TrainState:
    """Run (or continue) training to ``config.steps`` (or stop at step ``until``, as an
    interruption would); write ``resume_path`` every ``save_every`` steps and on the way out
    (Ctrl-C included) when it is given."""
    state = state or new_state(config)
    every = max(1, config.steps // LOG_POINTS)
    started = time.perf_counter() - state.seconds
    bar = step_bar(config.steps, progress_label or "train", state.step, enabled=progress)
    try:
        while state.step < min(config.steps, until or config.steps):
            generator = torch.Generator().manual_seed(config.seed * 1_000_003 + state.step)
            tokens, _, labels = sample_batch(config, config.batch, generator)
            tokens, labels = tokens.to(config.device), labels.to(config.device)
            for group in state.optimizer.param_groups:
                group["lr"] = learning_rate(config, state.step)
            loss = ((state.model(tokens)[:, 0::2] - labels) ** 2).mean()
            state.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            state.optimizer.step()
            state.step += 1
            if state.step % every == 0 or state.step == config.steps:
                state.losses.append((state.step, loss.item()))
                bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
            bar.update()
            state.seconds = time.perf_counter() - started
            if resume_path and state.step % save_every == 0:
                state.save(resume_path)
    finally:
        bar.close()
        if resume_path:
            state.save(resume_path)
    return state


@dataclasses.dataclass(frozen=True)
class TrainedModel:
    """A trained model in the checkpoint writer's terms (``save_checkpoint``)."""

    name: str
    shape: ModelShape
    weights: dict[str, np.ndarray]
    description: str

    def program_text(self) -> str:
        return self.description

    def layout_json(self) -> dict[str, object]:
        return {}

    def bounds_json(self) -> dict[str, object]:
        return {"input_bound": None, "constants": {},
                "exact": "trained weights: no construction, so no error bound"}


def trained_model(config: ICLConfig, state: TrainState) -> TrainedModel:
    return TrainedModel("trained-icl", config.shape(), state.model.weights(),
                        f"# trained-icl: a {config.layers}-layer softmax transformer (d_model "
                        f"{config.d_model}, {config.heads} heads, d_mlp {config.d_mlp}) trained "
                        f"by AdamW for {state.step} steps on in-context linear regression, d = "
                        f"{config.d}, n = {config.n}, noise {config.noise:g}; no program\n")


def training_record(config: ICLConfig, state: TrainState) -> dict[str, object]:
    """``rawc.algorithm`` of a trained checkpoint: ``trained: true`` and how it was trained."""
    return {"trained": True,
            "training": {"config": dataclasses.asdict(config), "steps_done": state.step,
                         "seconds": round(state.seconds, 2), "loss": state.losses}}
