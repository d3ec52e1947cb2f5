"""A compiled checkpoint as a stock pre-LayerNorm transformer (GPT-2's block, TransformerLens's
native one): the weights over ``E`` rows, in TransformerLens's names, no hooks.

``construct.model.export_gpt2`` and ``construct.model.export_tl`` write them in each library's
format. Such a block differs from rawc's in four ways, each bridged exactly or to a stated
error (measurements: ``shared/reference/export-gpt2-tl.md``):

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

*Gated MLPs* (TransformerLens's native ``GatedMLP`` has no biases): ``b_out`` rides on one
more unit that gates and reads the constant row (``relu(1) 1 = 1``), exact in epsilon mode;
``b_in`` must be zero (it is, for compiled ones). Through a real LayerNorm a constant row reads
``1 / sigma``, not 1, so a gated checkpoint with LayerNorm has no such form.

Linear attention, the ``context`` mask and ``ln1`` have no form here: refused by name.
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


class ExportRefusal(ValueError):
    """A checkpoint the target cannot express, with the reason."""


class LayerNormMode(enum.StrEnum):
    EPSILON = "epsilon"  # every LayerNorm exactly z - mu
    PADS = "pads"  # +-P rows make LayerNorm near the identity where rawc has none


@dataclasses.dataclass(frozen=True)
class StockModel:
    """The exported weights in TransformerLens's names (``blocks.{l}.attn.W_Q``
    ``[n_heads, E, head_dim]``, ``blocks.{l}.ln1.w``, ``ln_final.w``, ``unembed.W_U``; no
    ``b_U``: neither GPT-2's head nor TL's native one has a bias), with what a loader needs."""

    tensors: dict[str, np.ndarray]
    width: int  # E = n_heads * head_dim
    n_heads: int
    head_dim: int
    n_layers: int
    d_mlp: int
    n_ctx: int
    vocab: int  # rows of W_E: max(d_in, d_out)
    d_in: int
    d_out: int
    act_fn: Activation
    gated: bool
    ln_eps: float  # the one epsilon every LayerNorm uses
    mode: LayerNormMode
    pad: float | None
    rows: dict[str, object]  # where the anchor, pads and constant row sit

    @property
    def attn_scale(self) -> float:
        """What scores are divided by: ``sqrt(head_dim)`` (folded into ``W_Q`` against rawc's
        own scale), GPT-2's fixed choice."""
        return math.sqrt(self.head_dim)

    def io(self) -> dict[str, object]:
        """``rawc_io.json``: how rawc tokens go in and the prediction comes out."""
        return {"inputs_embeds": f"X @ W_E[:{self.d_in}] (X: the rawc tokens "
                                 f"[..., T, {self.d_in}])",
                "prediction": f"logits[..., :{self.d_out}]", "d_in": self.d_in,
                "d_out": self.d_out, "layer_norm_mode": self.mode.value, "pad": self.pad,
                "rows": self.rows,
                "do_not": "apply TransformerLens weight processing (fold_ln, centering, "
                          "load_and_process_state_dict) or compatibility mode: they change "
                          "the outputs"}


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
    """Why a stock softmax pre-LayerNorm block cannot run ``shape``, or None."""
    if shape.attn_kind is not AttnKind.SOFTMAX:
        return (f"attn_kind {shape.attn_kind.value}: GPT-2 and TransformerLens's native blocks "
                "have only softmax attention (linear attention needs unnormalised scores, "
                "which only hooks on the pattern could give)")
    if shape.attn_mask is not AttnMask.CAUSAL:
        return f"attn_mask {shape.attn_mask.value}: the stock attention is causal only"
    if shape.ln1:
        return "ln1: rawc compiles LayerNorm before the MLP only; the stock ln1 stays neutral"
    if shape.gated_mlp and shape.ln2:
        return ("gated_mlp with LayerNorm: TransformerLens's gated MLP has no biases, and "
                "through a real LayerNorm a constant row reads 1 / sigma, so the biases "
                "(and the pads' switching) have no exact form")
    return None


def _anchored(read: np.ndarray, rows: _Rows, width: int, anchor_weight: np.ndarray
              ) -> np.ndarray:
    """``read`` ``[D, k]`` on the first rows of ``[width, k]``, ``anchor_weight`` on the anchor."""
    out = np.zeros((width, read.shape[1]))
    out[:rows.d] = read
    out[rows.anchor] = anchor_weight
    return out


def to_stock(shape: ModelShape, weights: dict[str, np.ndarray], largest: float,
             dtype: str = "float64") -> StockModel:
    """``largest``: a data-free bound on every residual entry (``rawc export`` takes the
    compile-time bounds and the position table)."""
    reason = refusal_reason(shape)
    if reason is not None:
        raise ExportRefusal(reason)
    w = {k: np.asarray(v, dtype=np.float64) for k, v in weights.items()}
    blocks = shape.executed_blocks
    if shape.gated_mlp and any(np.any(w[f"blocks.{b}.mlp.b_in"] != 0) for b in blocks):
        raise ExportRefusal("gated_mlp with a nonzero b_in: TransformerLens's gated MLP adds "
                            "no bias inside the product")
    constant_unit = shape.gated_mlp and any(np.any(w[f"blocks.{b}.mlp.b_out"] != 0)
                                            for b in blocks)
    epsilon_fits = largest ** 2 < EPSILON_MODE_EPS * 2.0 ** -(54 if dtype == "float64" else 25)
    mode = LayerNormMode.EPSILON if not shape.ln2 and epsilon_fits else LayerNormMode.PADS
    if shape.gated_mlp and mode is LayerNormMode.PADS:
        raise ExportRefusal(f"gated_mlp with residual values up to {largest:.3g}: past the "
                            "epsilon mode's range, and a gated MLP's bias unit needs it")
    rows = _Rows(shape.d_model, mode is LayerNormMode.PADS,
                 bool(np.any(w["unembed.b_U"] != 0)) or constant_unit)
    head_dim = max(shape.d_head, math.ceil(rows.needed / shape.n_heads))
    width = shape.n_heads * head_dim
    pad = (10.0 ** math.ceil(math.log10(PAD_FACTOR[dtype] * max(largest, 1.0)))
           if rows.pads else None)
    switch = np.zeros(width)  # what the attention bias takes away before a real ln2
    if rows.pads and shape.ln2:
        switch[rows.pad_plus], switch[rows.pad_minus] = pad, -pad
        if rows.one:
            switch[rows.one_row] = 1.0
    if mode is LayerNormMode.EPSILON:
        eps, neutral = EPSILON_MODE_EPS, EPSILON_MODE_WEIGHT
    else:
        eps = shape.ln_eps * shape.d_model / width
        neutral = math.sqrt(2 * pad ** 2 / width + eps)
    vocab = max(shape.d_in, shape.d_out)
    out: dict[str, np.ndarray] = {}
    out["embed.W_E"] = np.zeros((vocab, width))
    out["embed.W_E"][:shape.d_in, :rows.d] = w["embed.W_E"]
    out["pos_embed.W_pos"] = np.zeros((shape.n_ctx, width))
    out["pos_embed.W_pos"][:, :rows.d] = w["pos_embed.W_pos"]
    if rows.pads:
        out["pos_embed.W_pos"][:, rows.pad_plus] = pad
        out["pos_embed.W_pos"][:, rows.pad_minus] = -pad
    if rows.one:
        out["pos_embed.W_pos"][:, rows.one_row] = 1.0
    fold = math.sqrt(head_dim) / shape.attn_scale
    d_mlp = max(shape.d_mlp, 1) + constant_unit
    for layer, block in enumerate(blocks):
        p, q = f"blocks.{block}.", f"blocks.{layer}."
        out[q + "ln1.w"], out[q + "ln1.b"] = np.full(width, neutral), np.zeros(width)
        for name, scale in (("Q", fold), ("K", 1.0), ("V", 1.0)):
            matrix, bias = np.zeros((shape.n_heads, width, head_dim)), np.zeros(
                (shape.n_heads, head_dim))
            for h in range(shape.n_heads):
                read = w[p + f"attn.W_{name}"][h] * scale
                matrix[h, :, :shape.d_head] = _anchored(read, rows, width, -read.sum(axis=0))
                bias[h, :shape.d_head] = w[p + f"attn.b_{name}"][h] * scale
            out[q + f"attn.W_{name}"], out[q + f"attn.b_{name}"] = matrix, bias
        w_o = np.zeros((shape.n_heads, head_dim, width))
        w_o[:, :shape.d_head, :rows.d] = w[p + "attn.W_O"]
        out[q + "attn.W_O"] = w_o
        out[q + "attn.b_O"] = np.zeros(width)
        out[q + "attn.b_O"][:rows.d] = w[p + "attn.b_O"]
        out[q + "attn.b_O"] -= switch
        out.update(_mlp(shape, w, p, q, rows, width, d_mlp, switch, neutral))
    out["ln_final.w"], out["ln_final.b"] = np.full(width, neutral), np.zeros(width)
    out["unembed.W_U"] = _anchored(w["unembed.W_U"], rows, width, -w["unembed.W_U"].sum(axis=0))
    if rows.one:  # the constant row minus the anchor reads 1 whatever the mean
        out["unembed.W_U"][rows.one_row] += w["unembed.b_U"]
        out["unembed.W_U"][rows.anchor] -= w["unembed.b_U"]
    where = {"rawc": shape.d_model, "anchor": rows.anchor,
             "pads": [rows.pad_plus, rows.pad_minus] if rows.pads else None,
             "one": rows.one_row if rows.one else None}
    return StockModel(out, width, shape.n_heads, head_dim, len(blocks), d_mlp, shape.n_ctx,
                      vocab, shape.d_in, shape.d_out, shape.act_fn, shape.gated_mlp, eps, mode,
                      pad, where)


def _mlp(shape: ModelShape, w: dict[str, np.ndarray], p: str, q: str, rows: _Rows, width: int,
         d_mlp: int, switch: np.ndarray, neutral: float) -> dict[str, np.ndarray]:
    """``ln2`` and the MLP of one block; a block without an MLP gets zeros (``act(0) 0``)."""
    out = {q + "ln2.w": np.full(width, neutral), q + "ln2.b": np.zeros(width),
           q + "mlp.W_in": np.zeros((width, d_mlp)), q + "mlp.b_in": np.zeros(d_mlp),
           q + "mlp.W_out": np.zeros((d_mlp, width)), q + "mlp.b_out": switch.copy()}
    if shape.gated_mlp:
        out[q + "mlp.W_gate"] = np.zeros((width, d_mlp))
    if not shape.has_mlp:
        return out
    units = shape.d_mlp
    reads = {"W_in": w[p + "mlp.W_in"]}
    if shape.gated_mlp:
        reads["W_gate"] = w[p + "mlp.W_gate"]
    for name, read in reads.items():
        if shape.ln2:  # a real LayerNorm over E rows standing for rawc's over D
            anchor = (width - shape.d_model) / shape.d_model * (w[p + "ln2.w"] @ read)
        else:
            anchor = -read.sum(axis=0)
        out[q + f"mlp.{name}"][:, :units] = _anchored(read, rows, width, anchor)
    if shape.ln2:
        ratio = math.sqrt(shape.d_model / width)
        out[q + "ln2.w"] = np.full(width, ratio)
        out[q + "ln2.w"][:rows.d] = ratio * w[p + "ln2.w"]
        out[q + "ln2.b"][:rows.d] = w[p + "ln2.b"]
    out[q + "mlp.b_in"][:units] = w[p + "mlp.b_in"]
    out[q + "mlp.W_out"][:units, :rows.d] = w[p + "mlp.W_out"]
    out[q + "mlp.b_out"][:rows.d] += w[p + "mlp.b_out"]
    if shape.gated_mlp and d_mlp > units:  # relu(1) * 1 carries b_out (epsilon mode: exact)
        for name in ("W_gate", "W_in"):
            out[q + f"mlp.{name}"][rows.one_row, units] = 1.0
            out[q + f"mlp.{name}"][rows.anchor, units] = -1.0
        out[q + "mlp.W_out"][units] = out[q + "mlp.b_out"]
        out[q + "mlp.b_out"] = np.zeros(width)
    return out


def write_directory(files: dict[str, dict], directory: str, dtype: str) -> list[str]:
    """``files`` (a name ending ``.safetensors``: tensors, saved in ``dtype``; ``.json``: a JSON
    object) into ``directory``, all or nothing: written into a fresh sibling, then renamed into
    place (an existing directory is replaced only once the new one is whole)."""
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
        for name, content in files.items():
            if name.endswith(".safetensors"):
                tensors = {key: torch.as_tensor(value).to(torch_dtype(dtype)).contiguous()
                           for key, value in content.items()}
                save_file(tensors, os.path.join(staging, name), metadata={"format": "pt"})
                continue
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

