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
import os

import numpy as np
import torch

import construct
from construct.model.assemble import ModelShape

KINDS = ("linear", "linear-momentum")


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
                          d_out=1, act_fn="none", ln1=False, ln2=False, ln_eps=1e-5,
                          attn_kind="linear-momentum" if self.momentum else "linear",
                          attn_mask="context", attn_scale=float(self.n))

    def config_json(self) -> dict[str, object]:
        out = self.shape.to_json()
        out["input_format"] = {"kind": "concat-xy", "query": "[x_q, 0]",
                               "prediction": "out[..., 0] at the last position"}
        out["attn_momentum"] = float(self.momentum)
        return out

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


# --------------------------------------------------------------------------- forward


@dataclasses.dataclass(frozen=True)
class LSACache:
    """``residuals[0]`` after embedding, then after each block; ``attention[l]`` is block l's
    attention output (what it adds to the residual); ``output`` is ``resid @ W_U + b_U``."""

    residuals: tuple[torch.Tensor, ...]
    attention: tuple[torch.Tensor, ...]
    output: torch.Tensor

    @property
    def prediction(self) -> torch.Tensor:
        return self.output[..., -1, 0]


def context_mask(n_tokens: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``[T, T]``: 1 where position t may attend to j (j an exemplar: every position but the
    last), 0 elsewhere. Linear attention multiplies by the mask; there is no softmax to feed -inf."""
    mask = torch.ones(n_tokens, n_tokens, dtype=dtype, device=device)
    mask[:, -1] = 0
    return mask


def momentum_matrix(n_tokens: int, beta: float, dtype: torch.dtype,
                    device: torch.device) -> torch.Tensor:
    """``M[t, i] = beta^(t-i)`` for ``i < t`` and i an exemplar, else 0 (MoAttn's average)."""
    t = torch.arange(n_tokens, device=device)
    gap = (t[:, None] - t[None, :]).to(dtype)
    keep = (t[None, :] < t[:, None]) & (t[None, :] < n_tokens - 1)
    return torch.where(keep, torch.as_tensor(beta, dtype=dtype, device=device) ** gap,
                       torch.zeros((), dtype=dtype, device=device))


class LinearSelfAttention(torch.nn.Module):
    """The forward of a linear-attention checkpoint (any heads, biases; attention only)."""

    def __init__(self, shape: ModelShape, weights: dict[str, np.ndarray | torch.Tensor],
                 momentum: float = 0.0, dtype: torch.dtype = torch.float64,
                 device: str | torch.device = "cpu") -> None:
        super().__init__()
        if shape.attn_kind not in KINDS or shape.attn_mask != "context":
            raise ValueError(f"not a linear-attention model: attn_kind {shape.attn_kind!r}, "
                             f"attn_mask {shape.attn_mask!r}")
        self.shape, self.momentum = shape, float(momentum)
        self.tensors = {name: torch.as_tensor(np.asarray(value) if not isinstance(value, torch.Tensor)
                                              else value).to(dtype=dtype, device=device)
                        for name, value in weights.items()}

    def block(self, resid: torch.Tensor, layer: int, momentum: bool = True) -> torch.Tensor:
        """Block ``layer``'s attention output on ``resid`` (``momentum=False``: without MoAttn's
        average even in a momentum model)."""
        w, n_tokens = self.tensors, resid.shape[-2]
        p = f"blocks.{layer}.attn."
        q, k, v = (torch.einsum("...td,hde->...hte", resid, w[p + "W_" + c])
                   + w[p + "b_" + c][:, None, :] for c in "QKV")
        mask = context_mask(n_tokens, resid.dtype, resid.device)
        z = (q @ k.transpose(-1, -2)) / self.shape.attn_scale * mask @ v
        if momentum and self.shape.attn_kind == "linear-momentum":
            z = z + momentum_matrix(n_tokens, self.momentum, resid.dtype, resid.device) @ v
        return torch.einsum("...hte,hed->...td", z, w[p + "W_O"]) + w[p + "b_O"]

    @torch.no_grad()
    def forward(self, tokens: torch.Tensor) -> LSACache:
        w, shape = self.tensors, self.shape
        n_tokens = tokens.shape[-2]
        if n_tokens > shape.n_ctx:
            raise ValueError(f"sequence of {n_tokens} tokens is longer than n_ctx = {shape.n_ctx}")
        resid = tokens @ w["embed.W_E"] + w["pos_embed.W_pos"][:n_tokens]
        residuals, attention = [resid], []
        for l in range(shape.n_layers):
            attn = self.block(resid, l)
            resid = resid + attn
            residuals.append(resid)
            attention.append(attn)
        output = resid @ w["unembed.W_U"] + w["unembed.b_U"]
        return LSACache(tuple(residuals), tuple(attention), output)


def encode(x: torch.Tensor, y: torch.Tensor, x_q: torch.Tensor) -> torch.Tensor:
    """``concat-xy`` tokens ``[B, n + 1, d + 1]`` from ``x [B, n, d]``, ``y [B, n]``, ``x_q [B, d]``."""
    context = torch.cat([x, y[..., None]], dim=-1)
    query = torch.cat([x_q, torch.zeros_like(x_q[..., :1])], dim=-1)[..., None, :]
    return torch.cat([context, query], dim=-2)


# --------------------------------------------------------------------------- checkpoint


def save_lsa(model: LSAModel, path: str | os.PathLike[str], algorithm: str,
             params: dict[str, object], description: str) -> None:
    """Write ``model`` as a ``rawc.checkpoint/1`` file (atomically, like ``save_checkpoint``).

    ``description`` goes to ``rawc.program`` (an LSA model has no op program; the text states
    its update). ``load_checkpoint`` reads the file back unchanged.
    """
    from construct.model.checkpoint import (SCHEMA, CheckpointError, _as_float64, _dumps, check_tensors,
                                      write_atomically)

    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise CheckpointError(f"cannot write {path}: directory {directory} does not exist")
    tensors = {name: _as_float64(name, value) for name, value in model.weights().items()}
    check_tensors(model.shape, tensors, f"cannot save {path}")
    metadata = {
        "format": "pt", "rawc.schema": SCHEMA, "rawc.config": _dumps(model.config_json()),
        "rawc.algorithm": _dumps({"name": algorithm, "params": params}),
        "rawc.program": description,
        "rawc.layout": _dumps({"slots": {"x": list(range(model.d)), "y": [model.d]},
                               "fixed": {}, "d_model": model.d_model}),
        "rawc.bounds": _dumps({"input_bound": None, "constants": {},
                               "exact": "no approximation: only floating-point rounding"}),
        "rawc.version": construct.__version__,
    }
    write_atomically(tensors, path, metadata)


def is_lsa_checkpoint(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a checkpoint whose config names linear attention (cheap: header only)."""
    import json

    from safetensors import safe_open

    if not os.path.isfile(path):
        return False
    try:
        with safe_open(os.fspath(path), framework="pt", device="cpu") as handle:
            config = json.loads((handle.metadata() or {}).get("rawc.config", "{}"))
    except Exception:  # not ours to diagnose: the ordinary loader names the problem
        return False
    return isinstance(config, dict) and config.get("attn_kind") in KINDS


def load_lsa(path: str | os.PathLike[str], dtype: torch.dtype = torch.float64,
             device: str | torch.device = "cpu"):
    """``(checkpoint, LinearSelfAttention)`` from a linear-attention checkpoint."""
    from construct.model.checkpoint import CheckpointError, load_checkpoint

    checkpoint = load_checkpoint(path)
    config = checkpoint.metadata["rawc.config"]
    if checkpoint.shape.attn_kind not in KINDS:
        raise CheckpointError(f"{path}: attn_kind {checkpoint.shape.attn_kind!r} is not linear")
    if (config.get("input_format") or {}).get("kind") != "concat-xy":  # type: ignore[union-attr]
        raise CheckpointError(f"{path}: a linear-attention checkpoint needs input_format "
                              "concat-xy")
    momentum = float(config.get("attn_momentum", 0.0))  # type: ignore[union-attr]
    return checkpoint, LinearSelfAttention(checkpoint.shape, checkpoint.weights, momentum,
                                           dtype, device)
