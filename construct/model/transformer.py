"""The transformer the weights describe, in torch, with the residual after every half-layer.

Forward (``DESIGN.md``): ``resid = X @ W_E + W_pos[:T]``; per block
``resid += attn(resid)`` (causal softmax, scores ``q.k / attn_scale``, heads summed through
``W_O``, plus ``b_O``) and ``resid += mlp(LN?(resid))`` with ``mlp(z) = GeLU(z W_in + b_in) W_out
+ b_out``; ``out = resid @ W_U + b_U``.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import nn

from construct.model.assemble import ModelShape
from construct.model.inputs import validate_tokens


@dataclasses.dataclass(frozen=True)
class ForwardCache:
    """``residuals[0]`` after embedding; then after each attention half and each MLP half of
    every executed layer (a shared loop's layers count once per iteration)."""

    residuals: tuple[torch.Tensor, ...]
    output: torch.Tensor

    def after_layer(self, layer: int) -> torch.Tensor:
        return self.residuals[2 * layer + 2]


class Transformer(nn.Module):
    """A plain pre-LN-free (or MLP-only LN) transformer holding compiled weights."""

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

    def weight(self, name: str) -> torch.Tensor:
        return self.params[name.replace(".", "__")]

    def attention_scores(self, resid: torch.Tensor, layer: int) -> torch.Tensor:
        """``q_t · k_j / attn_scale`` of every head, ``[..., n_heads, T, T]``, before the mask."""
        p = f"blocks.{layer}.attn."
        q = torch.einsum("...td,hde->...hte", resid, self.weight(p + "W_Q"))
        k = torch.einsum("...td,hde->...hte", resid, self.weight(p + "W_K"))
        q = q + self.weight(p + "b_Q")[:, None, :]
        k = k + self.weight(p + "b_K")[:, None, :]
        return (q @ k.transpose(-1, -2)) / self.shape.attn_scale

    @torch.no_grad()
    def attention_pattern(self, resid: torch.Tensor, layer: int) -> torch.Tensor:
        """The causal softmax pattern of every head on the residual entering ``layer``."""
        n_tokens = resid.shape[-2]
        mask = torch.ones(n_tokens, n_tokens, dtype=torch.bool, device=resid.device).tril()
        scores = self.attention_scores(resid, layer).masked_fill(~mask, float("-inf"))
        return torch.softmax(scores, dim=-1)

    @torch.no_grad()
    def forward(self, tokens: torch.Tensor) -> ForwardCache:
        shape = self.shape
        if self.input_bound is not None:
            validate_tokens(tokens, shape.d_in - 1, self.input_bound, shape.n_ctx,
                            shape.prior_column)
        n_tokens = tokens.shape[-2]
        if n_tokens > shape.n_ctx:
            raise ValueError(f"sequence of {n_tokens} tokens is longer than n_ctx = {shape.n_ctx}")
        resid = tokens @ self.weight("embed.W_E") + self.weight("pos_embed.W_pos")[:n_tokens]
        residuals = [resid]
        for l in shape.executed_blocks:  # a weight-shared loop runs its blocks again
            p = f"blocks.{l}."
            v = torch.einsum("...td,hde->...hte", resid, self.weight(p + "attn.W_V"))
            v = v + self.weight(p + "attn.b_V")[:, None, :]
            z = self.attention_pattern(resid, l) @ v
            attn = torch.einsum("...hte,hed->...td", z, self.weight(p + "attn.W_O"))
            resid = resid + attn + self.weight(p + "attn.b_O")
            residuals.append(resid)
            normed = resid
            if shape.ln2:
                normed = torch.nn.functional.layer_norm(
                    resid, (shape.d_model,), self.weight(p + "ln2.w"), self.weight(p + "ln2.b"),
                    eps=shape.ln_eps)
            hidden = torch.nn.functional.gelu(normed @ self.weight(p + "mlp.W_in")
                                              + self.weight(p + "mlp.b_in"))
            resid = resid + hidden @ self.weight(p + "mlp.W_out") + self.weight(p + "mlp.b_out")
            residuals.append(resid)
        output = resid @ self.weight("unembed.W_U") + self.weight("unembed.b_U")
        return ForwardCache(tuple(residuals), output)


def decode(resid: torch.Tensor, rows: range) -> torch.Tensor:
    """A slot's value ``[..., T, size]`` from a residual ``[..., T, d_model]``."""
    return resid[..., rows.start:rows.stop]
