"""The transformer the weights describe, in torch, with the residual after every half-layer.

One model for every target (``shared/DESIGN.md``, "Checkpoint format"): ``resid = X @ W_E +
W_pos[:T]``; per executed block ``resid += attn(LN1?(resid))`` and, unless ``act_fn`` is
``none``, ``resid += mlp(LN2?(resid))`` with ``mlp(z) = act(z W_in + b_in) W_out + b_out``
(``gated_mlp``: ``(act(z W_gate) * (z W_in) + b_in) W_out + b_out``);
``out = resid @ W_U + b_U``.

Attention scores are ``(q . k) / attn_scale``. ``softmax`` heads mask with ``-inf`` and
normalise; ``linear`` heads multiply the raw scores by the 0/1 mask (von Oswald et al.), and
``linear-momentum`` adds MoAttn's average ``sum_{i<t} beta^(t-i) v_i`` over the keys the mask
allows (Dai et al.). Masks: ``causal`` (``t`` sees ``0..t``) or ``context`` (every position
sees the exemplars: all positions but the last).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from construct.model.inputs import validate_tokens
from construct.model.sparse_block import BlockPlan
from construct.targets.architecture import Activation, AttnKind, AttnMask, InputFormat, ModelShape

ACTIVATIONS = {
    Activation.GELU: torch.nn.functional.gelu,
    Activation.GELU_NEW: lambda z: torch.nn.functional.gelu(z, approximate="tanh"),
    Activation.RELU: torch.relu,
    Activation.SILU: torch.nn.functional.silu,
}


@dataclasses.dataclass(frozen=True)
class ForwardCache:
    """``residuals[0]`` after embedding; then after each attention half and each MLP half of
    every executed layer (a shared loop's layers count once per iteration; a block without an
    MLP repeats its residual, so ``after_layer`` indexes alike). ``attention[l]``: what layer
    ``l``'s attention half added."""

    residuals: tuple[torch.Tensor, ...]
    attention: tuple[torch.Tensor, ...]
    output: torch.Tensor

    def after_layer(self, layer: int) -> torch.Tensor:
        return self.residuals[2 * layer + 2]

    def before_layer(self, layer: int) -> torch.Tensor:
        return self.residuals[2 * layer]

    @property
    def prediction(self) -> torch.Tensor:
        """The read-out at the last position (the query, in both input formats)."""
        return self.output[..., -1, 0]


PATTERN_CACHE_BYTES = 2 ** 30  # position patterns kept across batches (``position_pattern``)


@dataclasses.dataclass(frozen=True)
class LayerStep:
    """One executed layer: the residual before it, its attention half's write (with
    ``b_O``), the residual after the attention half and after the MLP half."""

    layer: int
    start: torch.Tensor
    heads: torch.Tensor
    middle: torch.Tensor
    end: torch.Tensor


def attention_mask(kind: AttnMask, n_tokens: int, device: torch.device) -> torch.Tensor:
    """``[T, T]`` booleans: True where position t may attend to position j."""
    if kind is AttnMask.CAUSAL:
        return torch.ones(n_tokens, n_tokens, dtype=torch.bool, device=device).tril()
    mask = torch.ones(n_tokens, n_tokens, dtype=torch.bool, device=device)
    mask[:, -1] = False
    return mask


def momentum_matrix(n_tokens: int, beta: float, dtype: torch.dtype,
                    device: torch.device) -> torch.Tensor:
    """``M[t, i] = beta^(t-i)`` for ``i < t`` and ``i`` an exemplar, else 0 (MoAttn's average)."""
    t = torch.arange(n_tokens, device=device)
    gap = (t[:, None] - t[None, :]).to(dtype)
    keep = (t[None, :] < t[:, None]) & (t[None, :] < n_tokens - 1)
    return torch.where(keep, torch.as_tensor(beta, dtype=dtype, device=device) ** gap,
                       torch.zeros((), dtype=dtype, device=device))


class Transformer(nn.Module):
    """A transformer holding given weights (compiled, constructed or trained)."""

    def __init__(self, shape: ModelShape, weights: dict[str, np.ndarray | torch.Tensor],
                 dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu",
                 input_bound: float | None = None) -> None:
        """``input_bound``: when given, ``forward`` refuses inputs the bounds do not cover."""
        super().__init__()
        self.shape = shape
        self.input_bound = input_bound
        self.params = nn.ParameterDict({
            name.replace(".", "__"): nn.Parameter(
                torch.as_tensor(np.asarray(value) if not isinstance(value, torch.Tensor)
                                else value).to(dtype=dtype, device=device),
                requires_grad=False)
            for name, value in weights.items()})
        self._plans: dict[int, BlockPlan] = {}
        self._position_patterns: dict[tuple[int, int], torch.Tensor | None] = {}
        self._position_rows: torch.Tensor | None = None

    def weight(self, name: str) -> torch.Tensor:
        return self.params[name.replace(".", "__")]

    def _layer_norm(self, resid: torch.Tensor, name: str) -> torch.Tensor:
        return torch.nn.functional.layer_norm(resid, (self.shape.d_model,),
                                              self.weight(name + ".w"), self.weight(name + ".b"),
                                              eps=self.shape.ln_eps)

    def plan(self, layer: int) -> BlockPlan:
        """Block ``layer``'s weights cut to the entries that can contribute
        (``construct.model.sparse_block``; built once, the weights are frozen)."""
        if layer not in self._plans:
            self._plans[layer] = BlockPlan.of_block(self.weight, f"blocks.{layer}.",
                                                    self.shape.has_mlp, self.shape.gated_mlp)
        return self._plans[layer]

    def attention_scores(self, resid: torch.Tensor, layer: int) -> torch.Tensor:
        """``q_t · k_j / attn_scale`` of every head, ``[..., n_heads, T, T]``, before the mask."""
        scores = [head.scores(resid) for head in self.plan(layer).heads]
        return torch.stack(scores, dim=-3) / self.shape.attn_scale

    @torch.no_grad()
    def attention_pattern(self, resid: torch.Tensor, layer: int) -> torch.Tensor:
        """What each head multiplies the values by: the softmax pattern, or the masked raw
        scores of linear attention."""
        mask = attention_mask(self.shape.attn_mask, resid.shape[-2], resid.device)
        scores = self.attention_scores(resid, layer)
        if self.shape.attn_kind is AttnKind.SOFTMAX:
            return torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
        return scores * mask.to(scores.dtype)

    def position_rows(self) -> torch.Tensor:
        """``[d_model]`` booleans: the residual rows that hold ``W_pos`` and nothing else in
        every layer, whatever the tokens: ``W_E`` has no entry there and no block writes there
        (no ``W_O`` or ``W_out`` column, no ``b_O`` or ``b_out`` entry). Such a row is the same
        float in every task, since ``X W_E`` adds an exact ``0`` and so does every block."""
        if self._position_rows is None:
            rows = (self.weight("embed.W_E") == 0).all(0)
            for l in range(self.shape.n_layers):
                plan, p = self.plan(l), f"blocks.{l}."
                rows[plan.out_rows] = False
                rows &= self.weight(p + "attn.b_O") == 0
                if self.shape.has_mlp:
                    rows[plan.mlp_out_rows] = False
                    rows &= self.weight(p + "mlp.b_out") == 0
            self._position_rows = rows
        return self._position_rows

    def position_pattern(self, layer: int, n_tokens: int) -> torch.Tensor | None:
        """Layer ``layer``'s pattern ``[n_heads, T, T]`` when it is the same for every task:
        without LayerNorm before attention, every head scores with ``position_rows`` alone,
        so the scores of any residual are those of ``W_pos`` itself (up to the order of each
        sum's terms, which a batched BLAS call leaves open anyway). Computed once per length
        (a long verification runs the same layers on thousands of tasks) and kept while the
        kept patterns stay within ``PATTERN_CACHE_BYTES`` (at ``n = 4096`` one layer's
        patterns take 1.6 GB: a deep model's would not fit, so past the budget each is
        computed where it is used); ``None`` where the scores read anything else."""
        key = (layer, n_tokens)
        if key in self._position_patterns:
            return self._position_patterns[key]
        fixed = self.position_rows()
        reads_positions = all(bool(fixed[head.rows_q].all() and fixed[head.rows_k].all())
                              for head in self.plan(layer).heads)
        if not reads_positions or self.shape.ln1:
            self._position_patterns[key] = None
            return None
        pattern = self.attention_pattern(self.weight("pos_embed.W_pos")[:n_tokens], layer)
        kept = sum(p.numel() * p.element_size() for p in self._position_patterns.values()
                   if p is not None)
        if kept + pattern.numel() * pattern.element_size() <= PATTERN_CACHE_BYTES:
            self._position_patterns[key] = pattern
        return pattern

    def attention_output(self, resid: torch.Tensor, layer: int, momentum: bool = True
                         ) -> torch.Tensor:
        """Heads summed through ``W_O``, without ``b_O`` (``momentum=False``: without MoAttn's
        average even in a momentum model)."""
        plan = self.plan(layer)
        pattern = self.position_pattern(layer, resid.shape[-2])
        if pattern is None:
            pattern = self.attention_pattern(resid, layer)
        values = plan.values(resid)
        z = [pattern[..., h, :, :] @ v for h, v in enumerate(values)]
        if momentum and self.shape.attn_kind is AttnKind.LINEAR_MOMENTUM:
            average = momentum_matrix(resid.shape[-2], self.shape.attn_momentum, resid.dtype,
                                      resid.device)
            z = [zh + average @ v for zh, v in zip(z, values)]
        return plan.write_heads(tuple(z), resid)

    def mlp_output(self, resid: torch.Tensor, layer: int) -> torch.Tensor:
        """``act(LN2?(resid) W_in + b_in) W_out`` (gated: ``(act(z W_gate) * (z W_in) + b_in)
        W_out``), without ``b_out``."""
        p = f"blocks.{layer}."
        normed = self._layer_norm(resid, p + "ln2") if self.shape.ln2 else resid
        return self.plan(layer).mlp(normed, ACTIVATIONS[self.shape.act_fn], resid)

    @torch.no_grad()
    def steps(self, tokens: torch.Tensor) -> Iterator[LayerStep]:
        """Run the blocks one at a time, keeping nothing: each executed layer's residual
        before it, after its attention half and after its MLP half (``forward`` keeps them
        all; a long verification streams them)."""
        shape = self.shape
        resid = self.embed(tokens)
        for index, l in enumerate(shape.executed_blocks):  # a shared loop runs its blocks again
            p = f"blocks.{l}."
            start = resid
            read = self._layer_norm(resid, p + "ln1") if shape.ln1 else resid
            heads = self.attention_output(read, l) + self.weight(p + "attn.b_O")
            middle = resid = resid + heads
            if shape.has_mlp:
                resid = resid + self.mlp_output(resid, l) + self.weight(p + "mlp.b_out")
            yield LayerStep(index, start, heads, middle, resid)

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """``X W_E + W_pos[:T]``, after checking the tokens fit the model."""
        shape = self.shape
        if self.input_bound is not None and shape.input_format is InputFormat.INTERLEAVED_XY:
            validate_tokens(tokens, shape.d_in - 1, self.input_bound, shape.n_ctx,
                            shape.prior_column)
        n_tokens = tokens.shape[-2]
        if n_tokens > shape.n_ctx:
            raise ValueError(f"sequence of {n_tokens} tokens is longer than n_ctx = {shape.n_ctx}")
        return tokens @ self.weight("embed.W_E") + self.weight("pos_embed.W_pos")[:n_tokens]

    def read_out(self, resid: torch.Tensor) -> torch.Tensor:
        return resid @ self.weight("unembed.W_U") + self.weight("unembed.b_U")

    @torch.no_grad()
    def outputs(self, tokens: torch.Tensor) -> torch.Tensor:
        """The read-out ``[..., T, d_out]`` alone, holding one residual at a time."""
        resid = None
        for step in self.steps(tokens):
            resid = step.end
        return self.read_out(self.embed(tokens) if resid is None else resid)

    @torch.no_grad()
    def forward(self, tokens: torch.Tensor) -> ForwardCache:
        residuals, attention = [], []
        for step in self.steps(tokens):
            if not residuals:
                residuals.append(step.start)
            attention.append(step.heads)
            residuals.extend((step.middle, step.end))
        if not residuals:  # zero layers
            residuals.append(self.embed(tokens))
        resid = residuals[-1]
        return ForwardCache(tuple(residuals), tuple(attention), self.read_out(resid))


def decode(resid: torch.Tensor, rows: range) -> torch.Tensor:
    """A slot's value ``[..., T, size]`` from a residual ``[..., T, d_model]``."""
    return resid[..., rows.start:rows.stop]
