"""The linear self-attention (LSA) block: weights, forward, and its ``rawc.checkpoint/1`` form.

The block of von Oswald et al. and Ahn et al.: no softmax, no MLP, no LayerNorm. Tokens are
columns ``e = [x; y]`` of width ``D = d + 1`` (``concat-xy``): exemplars ``e_i = [x_i; y_i]``,
``i < n``, then the query ``e_q = [x_q; 0]``. In column convention one block is::

    e_t  <-  e_t + W_PV  sum_{i < n} e_i (e_i^T W_KQ e_t) / n            (every token t)

Keys and values are the exemplars only (``attn_mask: context``), so the query's own, changing
y-slot never feeds back. The embedding ``W_E`` may map ``[x, y]`` to ``[x, y - w0^T x]``; the
read-out is ``pred = s * e_q[y]`` with the sign ``s = W_U[y, 0]`` (``-1`` for the constructions:
the y-slot holds "label minus current prediction", and the query's label is 0).

The momentum variant (Dai et al., MoAttn) adds an exponential moving average of earlier values,
``z_t += sum_{i < t, i < n} beta^(t-i) v_i``, before the output projection.

In the checkpoint (HookedTransformer names, right-multiplying ``h @ W``) one head of width ``D``
carries the block: the score ``(h_t W_Q) . (h_j W_K) = h_t W_Q W_K^T h_j^T = e_j^T W_KQ e_t`` when
``W_Q = W_KQ^T, W_K = I``, and the value ``h_j W_V W_O = (W_PV e_j)^T`` when ``W_V = W_PV^T,
W_O = I``; ``attn_scale = n`` is the ``1/n``. The MLP tensors are present (the format lists
them) and zero with ``d_mlp = 1``; ``act_fn: "none"`` says the block has no MLP. Every block of
a K-step construction is stored (weight-shared constructions store K identical copies), so a
reader of the format needs no repeat count.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from construct.targets.architecture import (Activation, AttnKind, AttnMask, InputFormat,
                                            ModelShape)


@dataclasses.dataclass(frozen=True)
class LSABlock:
    """One block in column convention: ``W_KQ`` (scores) and ``W_PV`` (values), ``D x D``."""

    w_kq: np.ndarray
    w_pv: np.ndarray


@dataclasses.dataclass(frozen=True)
class LSAModel:
    """A stack of LSA blocks with its embedding (``resid = embed @ token``) and read-out sign."""

    d: int
    n: int
    embed: np.ndarray
    blocks: tuple[LSABlock, ...]
    readout: float = -1.0
    momentum: float = 0.0

    @property
    def d_model(self) -> int:
        return self.d + 1

    @property
    def shape(self) -> ModelShape:
        return ModelShape(d_model=self.d_model, n_layers=len(self.blocks), n_heads=1,
                          d_head=self.d_model, d_mlp=1, n_ctx=self.n + 1, d_in=self.d + 1,
                          d_out=1, act_fn=Activation.NONE, ln1=False, ln2=False, ln_eps=1e-5,
                          attn_kind=(AttnKind.LINEAR_MOMENTUM if self.momentum
                                     else AttnKind.LINEAR),
                          attn_mask=AttnMask.CONTEXT, attn_scale=float(self.n),
                          input_format=InputFormat.CONCAT_XY, attn_momentum=float(self.momentum))

    def layout_json(self) -> dict[str, object]:
        """``rawc.layout``: x in the first d rows, y (the residual ``y - w^T x``) in the last."""
        return {"slots": {"x": list(range(self.d)), "y": [self.d]}, "fixed": {},
                "d_model": self.d_model}

    def weights(self) -> dict[str, np.ndarray]:
        """The checkpoint tensors (row convention, see the module docstring)."""
        D = self.d_model
        w: dict[str, np.ndarray] = {"embed.W_E": np.asarray(self.embed, dtype=np.float64).T,
                                    "pos_embed.W_pos": np.zeros((self.n + 1, D))}
        for l, block in enumerate(self.blocks):
            p = f"blocks.{l}."
            w[p + "attn.W_Q"] = np.asarray(block.w_kq, dtype=np.float64).T[None]
            w[p + "attn.W_K"] = np.eye(D)[None]
            w[p + "attn.W_V"] = np.asarray(block.w_pv, dtype=np.float64).T[None]
            w[p + "attn.W_O"] = np.eye(D)[None]
            for b in ("b_Q", "b_K", "b_V"):
                w[p + "attn." + b] = np.zeros((1, D))
            w[p + "attn.b_O"] = np.zeros(D)
            w[p + "mlp.W_in"], w[p + "mlp.b_in"] = np.zeros((D, 1)), np.zeros(1)
            w[p + "mlp.W_out"], w[p + "mlp.b_out"] = np.zeros((1, D)), np.zeros(D)
        unembed = np.zeros((D, 1))
        unembed[self.d, 0] = self.readout
        w["unembed.W_U"], w["unembed.b_U"] = unembed, np.zeros(1)
        return w


def block_matrices(weights: dict[str, torch.Tensor], layer: int) -> tuple[np.ndarray, np.ndarray]:
    """``(W_KQ, W_PV)`` of a one-head block in column convention, read back from the tensors."""
    p = f"blocks.{layer}.attn."
    w = {k: np.asarray(weights[p + k], dtype=np.float64) for k in ("W_Q", "W_K", "W_V", "W_O")}
    if w["W_Q"].shape[0] != 1:
        raise ValueError("effective matrices are defined here for one head only")
    return w["W_K"][0] @ w["W_Q"][0].T, (w["W_V"][0] @ w["W_O"][0]).T
