"""``rawc export --to transformer-lens``: the stock model (``construct.model.export_stock``) as
a TransformerLens 4 native bridge: ``tl_config.json`` (``TransformerBridgeConfig`` fields) and
``tl_weights.safetensors`` in the ``HookedTransformer`` names ``convert_tl_checkpoint`` takes.

Loaded with no hooks (README, *Exports*)::

    cfg = json.load(open(f"{DIR}/tl_config.json"))
    bridge = TransformerBridge.boot_native(cfg, dtype=torch.float64)
    weights = load_file(f"{DIR}/tl_weights.safetensors")
    bridge.load_state_dict(convert_tl_checkpoint(weights, TransformerBridgeConfig.from_dict(cfg)))
    y = bridge(X @ weights["embed.W_E"][:d_in])[..., :d_out]

The native block is GPT-2's (LayerNorm at ``ln1``, ``ln2``, ``ln_final``), so the same anchor
and epsilon or pads make it rawc's. TL 4's attention refuses ``attn_scale = 1`` with
``d_head > 1``: the stock scale is ``sqrt(head_dim)``. The native gated MLP has no biases, the
native MLP and attention have them; ``b_U`` rides on the constant row (the bridge's head
bias is stored as zeros). TL 3's ``HookedTransformer`` (absent from TL 4) takes the same names and config fields.
"""
from __future__ import annotations

import numpy as np

from construct.model.export_stock import StockModel
from construct.targets.architecture import Activation

TL_ACTIVATIONS = {Activation.GELU: "gelu", Activation.GELU_NEW: "gelu_new",
                  Activation.RELU: "relu", Activation.SILU: "silu", Activation.NONE: "relu"}


def tl_files(stock: StockModel) -> dict[str, dict]:
    """``tl_config.json``, ``tl_weights.safetensors`` and ``rawc_io.json``."""
    weights = dict(stock.tensors)
    weights["unembed.b_U"] = np.zeros(stock.d_out)  # the bridge's head takes one; b_U is on a row
    if stock.gated:  # the native gated MLP has no biases: they are zero (or ride on a unit)
        for layer in range(stock.n_layers):
            for bias in ("b_in", "b_out"):
                weights.pop(f"blocks.{layer}.mlp.{bias}")
    config = {"d_model": stock.width, "d_head": stock.head_dim, "n_heads": stock.n_heads,
              "n_layers": stock.n_layers, "n_ctx": stock.n_ctx, "d_mlp": stock.d_mlp,
              "d_vocab": stock.vocab, "d_vocab_out": stock.d_out,
              "act_fn": TL_ACTIVATIONS[stock.act_fn], "normalization_type": "LN",
              "eps": stock.ln_eps, "use_attn_scale": True, "attn_scale": stock.attn_scale,
              "positional_embedding_type": "standard", "attention_dir": "causal",
              "gated_mlp": stock.gated, "original_architecture": None}
    return {"tl_config.json": config, "tl_weights.safetensors": weights,
            "rawc_io.json": stock.io()}
