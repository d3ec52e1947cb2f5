"""``rawc export --to hf-gpt2``: the stock model (``construct.model.export_stock``) as a Hugging
Face ``GPT2LMHeadModel`` directory that ``from_pretrained`` loads unmodified and offline.

GPT-2 fuses ``q, k, v`` into ``c_attn`` (``[E, 3E]``, heads side by side, ``Conv1D`` is
``x @ W``), merges the heads into ``c_proj``, names the LayerNorms ``ln_1``, ``ln_2``, ``ln_f``,
and keeps one ``vocab_size`` for ``wte`` and ``lm_head``. Its MLP has no gate: gated
checkpoints are refused.
"""
from __future__ import annotations

import numpy as np

from construct.model.export_stock import ExportRefusal, StockModel, refusal_reason
from construct.targets.architecture import Activation, ModelShape

HF_ACTIVATIONS = {Activation.GELU: "gelu", Activation.GELU_NEW: "gelu_new",
                  Activation.RELU: "relu", Activation.SILU: "silu", Activation.NONE: "relu"}


GATED_REASON = ("gated_mlp: GPT-2's MLP is act(z W_fc) W_proj, with no gate (--to "
                 "transformer-lens has a gated MLP)")


def gpt2_refusal(shape: ModelShape) -> str | None:
    """Why GPT-2 cannot run ``shape`` (the stock block's reasons, and the missing gate)."""
    return refusal_reason(shape) or (GATED_REASON if shape.gated_mlp else None)


def gpt2_files(stock: StockModel, dtype: str) -> dict[str, dict]:
    """``config.json``, ``model.safetensors`` and ``rawc_io.json``."""
    if stock.gated:
        raise ExportRefusal(GATED_REASON)
    t, width = stock.tensors, stock.width
    tensors: dict[str, np.ndarray] = {"transformer.wte.weight": t["embed.W_E"],
                                      "transformer.wpe.weight": t["pos_embed.W_pos"]}
    for layer in range(stock.n_layers):
        q, h = f"blocks.{layer}.", f"transformer.h.{layer}."
        fused = [t[q + f"attn.W_{n}"].transpose(1, 0, 2).reshape(width, width) for n in "QKV"]
        tensors.update({
            h + "ln_1.weight": t[q + "ln1.w"], h + "ln_1.bias": t[q + "ln1.b"],
            h + "attn.c_attn.weight": np.concatenate(fused, axis=1),
            h + "attn.c_attn.bias": np.concatenate([t[q + f"attn.b_{n}"].reshape(width)
                                                    for n in "QKV"]),
            h + "attn.c_proj.weight": t[q + "attn.W_O"].reshape(width, width),
            h + "attn.c_proj.bias": t[q + "attn.b_O"],
            h + "ln_2.weight": t[q + "ln2.w"], h + "ln_2.bias": t[q + "ln2.b"],
            h + "mlp.c_fc.weight": t[q + "mlp.W_in"], h + "mlp.c_fc.bias": t[q + "mlp.b_in"],
            h + "mlp.c_proj.weight": t[q + "mlp.W_out"],
            h + "mlp.c_proj.bias": t[q + "mlp.b_out"]})
    tensors["transformer.ln_f.weight"] = t["ln_final.w"]
    tensors["transformer.ln_f.bias"] = t["ln_final.b"]
    lm_head = np.zeros((stock.vocab, width))
    lm_head[:stock.d_out] = t["unembed.W_U"].T
    tensors["lm_head.weight"] = lm_head
    config = {
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": stock.vocab,
        "n_positions": stock.n_ctx, "n_embd": width, "n_layer": stock.n_layers,
        "n_head": stock.n_heads, "n_inner": stock.d_mlp,
        "activation_function": HF_ACTIVATIONS[stock.act_fn], "resid_pdrop": 0.0,
        "embd_pdrop": 0.0, "attn_pdrop": 0.0, "layer_norm_epsilon": stock.ln_eps,
        "scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False, "tie_word_embeddings": False, "use_cache": False,
        "bos_token_id": None, "eos_token_id": None, "dtype": dtype}
    io = stock.io()
    io["inputs_embeds"] = io["inputs_embeds"].replace("W_E", "transformer.wte.weight")
    return {"config.json": config, "model.safetensors": tensors, "rawc_io.json": io}
