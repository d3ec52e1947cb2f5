"""A compiled checkpoint as a stock Hugging Face GPT-2 (``GPT2LMHeadModel``), no hooks.

GPT-2's block differs from rawc's in four ways, each bridged exactly or to a stated error
(measurements: ``shared/reference/export-gpt2-tl.md``):

*LayerNorm before attention, before the MLP and at the end, always.* An **anchor row** that
nothing writes is 0 at every position; every matrix that reads a LayerNorm output (``c_attn``,
``c_fc``, ``lm_head``) gets on it minus its column sum, so ``sum_i W_i (z_i - mu) + W_a (0 - mu)
= sum_i W_i z_i`` whatever mean LayerNorm subtracts. Then either

- *epsilon mode* (no LayerNorm in rawc): ``layer_norm_epsilon = 2^100`` and LN weights
  ``2^50``; while the residual's variance stays below ``2^100 u`` the sum ``var + 2^100``
  rounds to ``2^100`` and ``LN(z) = (z - mu) 2^-50 2^50 = z - mu`` exactly (powers of two);
- *pad mode*: two rows hold ``+P`` and ``-P`` (from ``wpe``) and dominate the norm, so with LN
  weight ``sqrt(2 P^2 / E + eps)`` a LayerNorm is ``(z - mu) (1 - e)``,
  ``0 <= e <= E R^2 / (4 P^2)`` for ``|z| <= R`` (relative; ``P = 10^k >= 1e7 R`` in float64,
  ``10 R`` in float32 (``PAD_FACTOR``), from the compile-time bounds ``R``, never from data). Where rawc has
  its own LayerNorm (``ln2``), the attention's ``c_proj`` bias switches the pads off
  (``P - P = 0`` exactly) so ``ln_2`` is a real LayerNorm, and the MLP's bias switches them
  back on. Over ``E`` rows instead of rawc's ``D``: ``eps_E = eps D / E``, weights
  ``sqrt(D / E) w``, and the anchor reads ``(E - D) / D`` times the column's ``w``-weighted
  sum, which gives rawc's centring over ``D`` rows exactly; the variance matches while the
  residual sums to zero there, which rawc's zero-mean pads make so.

*``n_embd = n_head head_dim``.* Heads are zero-padded to ``head_dim`` (exact).

*Scores times ``head_dim^-1/2``.* ``sqrt(head_dim) / attn_scale`` is folded into ``W_Q``,
``b_Q``.

*No output bias, one embedding table.* ``wte[:d_in] = W_E`` (inputs enter as
``inputs_embeds = X @ wte[:d_in]``), ``lm_head[:d_out] = W_U^T`` (output ``logits[..., :d_out]``);
a nonzero ``b_U`` rides on a constant row. A weight-shared loop is unrolled.

Linear attention, the ``context`` mask, gated MLPs and ``ln1`` have no GPT-2 form: refused by
name.
"""
from __future__ import annotations

import dataclasses
import enum
import math

import numpy as np

from construct.targets.architecture import Activation, AttnKind, AttnMask, ModelShape

EPSILON_MODE_EPS = 2.0 ** 100
EPSILON_MODE_WEIGHT = 2.0 ** 50
# P over the compile-time residual bound R. float64: anything from 1e7 R up works (the neutral
# LayerNorms' relative error E R^2 / 4 P^2 is below rounding). float32 has a window: below ~R
# the neutral LayerNorms err, above ~1e2 R LayerNorm's mean of +-P rounds by ulp(P) / E, which
# the reads amplify; 10 R measured best (sherman-morrison d = 4: 1e-3 off rawc at 10 R, 7.7
# at 100 R, 0.07 at R).
PAD_FACTOR = {"float64": 1e7, "float32": 1e1}
HF_ACTIVATIONS = {Activation.GELU: "gelu", Activation.GELU_NEW: "gelu_new",
                  Activation.RELU: "relu", Activation.SILU: "silu", Activation.NONE: "relu"}


class ExportRefusal(ValueError):
    """A checkpoint the target cannot express, with the reason."""


class LayerNormMode(enum.StrEnum):
    EPSILON = "epsilon"  # every LayerNorm exactly z - mu
    PADS = "pads"  # +-P rows make LayerNorm near the identity where rawc has none


@dataclasses.dataclass(frozen=True)
class Gpt2Export:
    """What ``rawc export --to hf-gpt2`` writes: ``config.json``, the state dict, and
    ``rawc_io.json`` (how tokens go in and the prediction comes out)."""

    config: dict[str, object]
    tensors: dict[str, np.ndarray]
    io: dict[str, object]
    mode: LayerNormMode
    pad: float | None


@dataclasses.dataclass(frozen=True)
class _Rows:
    """The export's residual rows: rawc's ``D``, then the anchor, the pads, the constant."""

    d: int
    pads: bool
    one: bool

    @property
    def anchor(self) -> int:
        return self.d

    @property
    def pad_plus(self) -> int:
        return self.d + 1

    @property
    def pad_minus(self) -> int:
        return self.d + 2

    @property
    def one_row(self) -> int:
        return self.d + 1 + 2 * self.pads

    @property
    def needed(self) -> int:
        return self.d + 1 + 2 * self.pads + self.one


def refusal_reason(shape: ModelShape) -> str | None:
    """Why GPT-2 cannot run ``shape``, or None."""
    if shape.attn_kind is not AttnKind.SOFTMAX:
        return (f"attn_kind {shape.attn_kind.value}: GPT-2 has only softmax attention "
                "(linear attention needs unnormalised scores)")
    if shape.attn_mask is not AttnMask.CAUSAL:
        return f"attn_mask {shape.attn_mask.value}: GPT-2's attention is causal only"
    if shape.gated_mlp:
        return "gated_mlp: GPT-2's MLP is act(z W_fc) W_proj, with no gate"
    if shape.ln1:
        return "ln1: rawc compiles LayerNorm before the MLP only; GPT-2's ln_1 stays neutral"
    return None


def _anchored(read: np.ndarray, rows: _Rows, width: int, anchor_weight: np.ndarray
              ) -> np.ndarray:
    """``read`` ``[D, k]`` on the first rows of ``[width, k]``, ``anchor_weight`` on the anchor."""
    out = np.zeros((width, read.shape[1]))
    out[:rows.d] = read
    out[rows.anchor] = anchor_weight
    return out


def to_gpt2(shape: ModelShape, weights: dict[str, np.ndarray], largest: float,
            dtype: str = "float64") -> Gpt2Export:
    """``largest``: a data-free bound on every residual entry (``rawc export`` takes the
    compile-time bounds and the position table)."""
    reason = refusal_reason(shape)
    if reason is not None:
        raise ExportRefusal(f"no GPT-2 form: {reason}")
    w = {k: np.asarray(v, dtype=np.float64) for k, v in weights.items()}
    b_u = w["unembed.b_U"]
    epsilon_fits = largest ** 2 < EPSILON_MODE_EPS * 2.0 ** -(54 if dtype == "float64" else 25)
    mode = LayerNormMode.EPSILON if not shape.ln2 and epsilon_fits else LayerNormMode.PADS
    rows = _Rows(shape.d_model, mode is LayerNormMode.PADS, bool(np.any(b_u != 0)))
    head_dim = max(shape.d_head, math.ceil(rows.needed / shape.n_heads))
    width = shape.n_heads * head_dim
    pad = (10.0 ** math.ceil(math.log10(PAD_FACTOR[dtype] * max(largest, 1.0)))
           if rows.pads else None)
    switch = np.zeros(width)  # what the attention bias subtracts before a real ln_2
    if rows.pads and shape.ln2:
        switch[rows.pad_plus], switch[rows.pad_minus] = pad, -pad
        if rows.one:
            switch[rows.one_row] = 1.0

    def neutral_anchor(read: np.ndarray) -> np.ndarray:
        return -read.sum(axis=0)

    if mode is LayerNormMode.EPSILON:
        eps, neutral_weight = EPSILON_MODE_EPS, EPSILON_MODE_WEIGHT
    else:
        eps = shape.ln_eps * shape.d_model / width
        neutral_weight = math.sqrt(2 * pad ** 2 / width + eps)
    tensors: dict[str, np.ndarray] = {}
    vocab = max(shape.d_in, shape.d_out)
    wte = np.zeros((vocab, width))
    wte[:shape.d_in, :rows.d] = w["embed.W_E"]
    wpe = np.zeros((shape.n_ctx, width))
    wpe[:, :rows.d] = w["pos_embed.W_pos"]
    if rows.pads:
        wpe[:, rows.pad_plus], wpe[:, rows.pad_minus] = pad, -pad
    if rows.one:
        wpe[:, rows.one_row] = 1.0
    tensors["transformer.wte.weight"], tensors["transformer.wpe.weight"] = wte, wpe
    fold = math.sqrt(head_dim) / shape.attn_scale
    for layer, block in enumerate(shape.executed_blocks):
        p, out = f"blocks.{block}.", f"transformer.h.{layer}."
        tensors[out + "ln_1.weight"] = np.full(width, neutral_weight)
        tensors[out + "ln_1.bias"] = np.zeros(width)
        c_attn, b_attn = np.zeros((width, 3 * width)), np.zeros(3 * width)
        c_proj = np.zeros((width, width))
        for h in range(shape.n_heads):
            for part, (name, scale) in enumerate((("Q", fold), ("K", 1.0), ("V", 1.0))):
                columns = slice(part * width + h * head_dim,
                                part * width + h * head_dim + shape.d_head)
                read = w[p + f"attn.W_{name}"][h] * scale
                c_attn[:, columns] = _anchored(read, rows, width, neutral_anchor(read))
                b_attn[columns] = w[p + f"attn.b_{name}"][h] * scale
            c_proj[h * head_dim:h * head_dim + shape.d_head, :rows.d] = w[p + "attn.W_O"][h]
        attn_bias = np.zeros(width)
        attn_bias[:rows.d] = w[p + "attn.b_O"]
        tensors.update({out + "attn.c_attn.weight": c_attn, out + "attn.c_attn.bias": b_attn,
                        out + "attn.c_proj.weight": c_proj,
                        out + "attn.c_proj.bias": attn_bias - switch})
        tensors.update(_mlp(shape, w, p, out, rows, width, switch, neutral_weight,
                            neutral_anchor))
    tensors["transformer.ln_f.weight"] = np.full(width, neutral_weight)
    tensors["transformer.ln_f.bias"] = np.zeros(width)
    lm_head = np.zeros((vocab, width))
    lm_head[:shape.d_out] = _anchored(w["unembed.W_U"], rows, width,
                                      neutral_anchor(w["unembed.W_U"])).T
    if rows.one:
        lm_head[:shape.d_out, rows.one_row] += b_u
        lm_head[:shape.d_out, rows.anchor] -= b_u
    tensors["lm_head.weight"] = lm_head
    config = {
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": vocab,
        "n_positions": shape.n_ctx, "n_embd": width, "n_layer": shape.depth,
        "n_head": shape.n_heads, "n_inner": max(shape.d_mlp, 1),
        "activation_function": HF_ACTIVATIONS[shape.act_fn], "resid_pdrop": 0.0,
        "embd_pdrop": 0.0, "attn_pdrop": 0.0, "layer_norm_epsilon": eps,
        "scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False, "tie_word_embeddings": False, "use_cache": False,
        "bos_token_id": None, "eos_token_id": None,
        "dtype": dtype}
    io = {"inputs_embeds": f"X @ transformer.wte.weight[:{shape.d_in}] (X: the rawc tokens "
                           f"[..., T, {shape.d_in}])",
          "prediction": f"logits[..., :{shape.d_out}]", "d_in": shape.d_in,
          "d_out": shape.d_out, "layer_norm_mode": mode.value, "pad": pad,
          "rows": {"rawc": shape.d_model, "anchor": rows.anchor,
                   "pads": [rows.pad_plus, rows.pad_minus] if rows.pads else None,
                   "one": rows.one_row if rows.one else None},
          "do_not": "apply TransformerLens weight processing (fold_ln, centering, "
                    "load_and_process_state_dict) or compatibility mode: they change the "
                    "outputs"}
    return Gpt2Export(config, tensors, io, mode, pad)


def _mlp(shape: ModelShape, w: dict[str, np.ndarray], p: str, out: str, rows: _Rows,
         width: int, switch: np.ndarray, neutral_weight: float, neutral_anchor
         ) -> dict[str, np.ndarray]:
    """``ln_2`` and the MLP of one block; a block without an MLP gets zeros (``act(0) 0``)."""
    d_mlp = max(shape.d_mlp, 1)
    if not shape.has_mlp:
        return {out + "ln_2.weight": np.full(width, neutral_weight),
                out + "ln_2.bias": np.zeros(width),
                out + "mlp.c_fc.weight": np.zeros((width, d_mlp)),
                out + "mlp.c_fc.bias": np.zeros(d_mlp),
                out + "mlp.c_proj.weight": np.zeros((d_mlp, width)),
                out + "mlp.c_proj.bias": switch.copy()}
    w_in = w[p + "mlp.W_in"]
    if shape.ln2:  # a real LayerNorm over E rows standing for rawc's over D
        ratio = math.sqrt(shape.d_model / width)
        ln_weight = np.full(width, ratio)
        ln_weight[:rows.d] = ratio * w[p + "ln2.w"]
        ln_bias = np.zeros(width)
        ln_bias[:rows.d] = w[p + "ln2.b"]
        anchor = (width - shape.d_model) / shape.d_model * (w[p + "ln2.w"] @ w_in)
    else:
        ln_weight, ln_bias = np.full(width, neutral_weight), np.zeros(width)
        anchor = neutral_anchor(w_in)
    c_proj = np.zeros((d_mlp, width))
    c_proj[:, :rows.d] = w[p + "mlp.W_out"]
    bias = switch.copy()
    bias[:rows.d] += w[p + "mlp.b_out"]
    return {out + "ln_2.weight": ln_weight, out + "ln_2.bias": ln_bias,
            out + "mlp.c_fc.weight": _anchored(w_in, rows, width, anchor),
            out + "mlp.c_fc.bias": w[p + "mlp.b_in"].copy(),
            out + "mlp.c_proj.weight": c_proj, out + "mlp.c_proj.bias": bias}


def write_directory(export: Gpt2Export, directory: str, dtype: str) -> list[str]:
    """``config.json``, ``model.safetensors`` (in ``dtype``) and ``rawc_io.json`` into
    ``directory``, all or nothing: written into a fresh sibling, then renamed into place (an
    existing directory is replaced only once the new one is whole)."""
    import json
    import os
    import shutil
    import tempfile

    import torch
    from safetensors.torch import save_file

    from construct.compiler.config import torch_dtype
    from construct.model.checkpoint import current_umask

    target = os.path.abspath(directory)
    if os.path.exists(target) and not os.path.isdir(target):
        raise ExportRefusal(f"{directory} exists and is not a directory")
    parent = os.path.dirname(target)
    if not os.path.isdir(parent):
        raise ExportRefusal(f"no directory {parent} to write {os.path.basename(target)} into")
    staging = tempfile.mkdtemp(prefix=".rawc-export-", dir=parent)
    try:
        tensors = {name: torch.as_tensor(value).to(torch_dtype(dtype)).contiguous()
                   for name, value in export.tensors.items()}
        save_file(tensors, os.path.join(staging, "model.safetensors"), metadata={"format": "pt"})
        for name, content in (("config.json", export.config), ("rawc_io.json", export.io)):
            with open(os.path.join(staging, name), "w", encoding="utf-8") as handle:
                json.dump(content, handle, indent=2)
                handle.write("\n")
        os.chmod(staging, 0o777 & ~current_umask())  # as mkdir would (mkdtemp gives 0700)
        if os.path.isdir(target):
            retired = tempfile.mkdtemp(prefix=".rawc-old-", dir=parent)
            os.rename(target, os.path.join(retired, "old"))
            os.rename(staging, target)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return sorted(os.listdir(target))

