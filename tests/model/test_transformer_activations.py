"""The model honours ``act_fn``: hand-made checkpoints of every activation against a plain
numpy forward written from ``shared/DESIGN.md`` alone.

Random weights (not a construction) so every unit is exercised on both sides of zero; the
numpy forward is independent of ``construct.model.transformer``: its own softmax, LayerNorm,
erf and tanh GeLU.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from construct.model.checkpoint import load_checkpoint, save_checkpoint
from construct.model.checkpoint_format import expected_shapes
from construct.targets.architecture import Activation, ModelShape

ERF = np.vectorize(math.erf)
NUMPY_ACTIVATIONS = {
    "gelu": lambda z: 0.5 * z * (1 + ERF(z / math.sqrt(2))),
    "gelu_new": lambda z: 0.5 * z * (1 + np.tanh(math.sqrt(2 / math.pi) * (z + 0.044715 * z ** 3))),
    "relu": lambda z: np.maximum(z, 0),
    "silu": lambda z: z * 0.5 * (1 + np.tanh(z / 2)),  # z sigmoid(z), no overflow
}


@dataclasses.dataclass(frozen=True)
class HandMade:
    """A checkpointable model with given weights (``Checkpointable``)."""

    name: str
    shape: ModelShape
    weights: dict[str, np.ndarray]

    def program_text(self) -> str:
        return "# hand-made weights\n"

    def layout_json(self) -> dict[str, object]:
        return {"slots": {}, "fixed": {}, "d_model": self.shape.d_model}

    def bounds_json(self) -> dict[str, object]:
        return {"input_bound": None, "constants": {}}


def hand_made(act_fn: str, ln2: bool, seed: int, gated: bool = False) -> HandMade:
    shape = ModelShape(d_model=6, n_layers=2, n_heads=2, d_head=3, d_mlp=5, n_ctx=7, d_in=3,
                       d_out=1, act_fn=act_fn, ln1=False, ln2=ln2, ln_eps=1e-5, attn_scale=1.7,
                       gated_mlp=gated)
    rng = np.random.default_rng(seed)
    weights = {name: rng.normal(size=size) for name, size in expected_shapes(shape).items()}
    return HandMade(f"hand-{act_fn}", shape, weights)


def numpy_forward(shape: ModelShape, w: dict[str, np.ndarray], tokens: np.ndarray) -> np.ndarray:
    """``out [T, d_out]`` for one sequence ``tokens [T, d_in]`` (DESIGN.md's forward)."""
    n = tokens.shape[0]
    resid = tokens @ w["embed.W_E"] + w["pos_embed.W_pos"][:n]
    for l in range(shape.n_layers):
        p = f"blocks.{l}."
        heads = np.zeros_like(resid)
        for h in range(shape.n_heads):
            q = resid @ w[p + "attn.W_Q"][h] + w[p + "attn.b_Q"][h]
            k = resid @ w[p + "attn.W_K"][h] + w[p + "attn.b_K"][h]
            v = resid @ w[p + "attn.W_V"][h] + w[p + "attn.b_V"][h]
            scores = q @ k.T / shape.attn_scale
            scores[np.triu_indices(n, 1)] = -np.inf
            pattern = np.exp(scores - scores.max(axis=1, keepdims=True))
            pattern /= pattern.sum(axis=1, keepdims=True)
            heads += pattern @ v @ w[p + "attn.W_O"][h]
        resid = resid + heads + w[p + "attn.b_O"]
        if shape.act_fn == "none":
            continue
        z = resid
        if shape.ln2:
            centred = z - z.mean(axis=1, keepdims=True)
            z = centred / np.sqrt((centred ** 2).mean(axis=1, keepdims=True) + shape.ln_eps)
            z = z * w[p + "ln2.w"] + w[p + "ln2.b"]
        act = NUMPY_ACTIVATIONS[shape.act_fn]
        if shape.gated_mlp:  # TransformerLens GatedMLP: no gate bias, b_in after the product
            hidden = act(z @ w[p + "mlp.W_gate"]) * (z @ w[p + "mlp.W_in"]) + w[p + "mlp.b_in"]
        else:
            hidden = act(z @ w[p + "mlp.W_in"] + w[p + "mlp.b_in"])
        resid = resid + hidden @ w[p + "mlp.W_out"] + w[p + "mlp.b_out"]
    return resid @ w["unembed.W_U"] + w["unembed.b_U"]


@pytest.mark.parametrize("act_fn", [a.value for a in Activation])
@pytest.mark.parametrize("ln2", [False, True])
def test_checkpoint_of_each_activation_runs_as_the_format_says(act_fn, ln2, tmp_path):
    model = hand_made(act_fn, ln2, seed=len(act_fn) + ln2)
    path = tmp_path / "hand.safetensors"
    save_checkpoint(model, path)
    checkpoint = load_checkpoint(path)
    assert checkpoint.shape.act_fn is Activation(act_fn)
    tokens = np.random.default_rng(7).normal(size=(4, 7, 3))
    got = checkpoint.model()(torch.as_tensor(tokens)).output.numpy()
    want = np.stack([numpy_forward(checkpoint.shape, model.weights, t) for t in tokens])
    assert np.max(np.abs(got - want)) <= 1e-12 * max(1.0, np.max(np.abs(want)))


def test_activations_differ_so_the_test_can_tell_them_apart():
    tokens = np.random.default_rng(7).normal(size=(7, 3))
    outputs = {}
    for act_fn in NUMPY_ACTIVATIONS:
        model = hand_made("gelu", False, seed=1)
        shape = dataclasses.replace(model.shape, act_fn=act_fn)
        outputs[act_fn] = numpy_forward(shape, model.weights, tokens)
    values = list(outputs.values())
    assert min(np.max(np.abs(a - b)) for i, a in enumerate(values) for b in values[i + 1:]) > 1e-3


def test_unknown_activation_is_refused_with_its_name(tmp_path):
    with pytest.raises(ValueError, match="act_fn 'swish' is not one of"):
        hand_made("swish", False, seed=0)


@pytest.mark.parametrize("act_fn", ["relu", "gelu", "silu"])
@pytest.mark.parametrize("ln2", [False, True])
def test_a_gated_checkpoint_runs_as_the_format_says(act_fn, ln2, tmp_path):
    model = hand_made(act_fn, ln2, seed=11 + ln2, gated=True)
    path = tmp_path / "gated.safetensors"
    save_checkpoint(model, path)
    checkpoint = load_checkpoint(path)
    assert checkpoint.shape.gated_mlp and "blocks.1.mlp.W_gate" in checkpoint.weights
    tokens = np.random.default_rng(8).normal(size=(4, 7, 3))
    got = checkpoint.model()(torch.as_tensor(tokens)).output.numpy()
    want = np.stack([numpy_forward(checkpoint.shape, model.weights, t) for t in tokens])
    assert np.max(np.abs(got - want)) <= 1e-12 * max(1.0, np.max(np.abs(want)))
    plain = np.stack([numpy_forward(dataclasses.replace(checkpoint.shape, gated_mlp=False),
                                    model.weights, t) for t in tokens])
    assert np.max(np.abs(plain - want)) > 1e-3  # the gate matters


def test_a_gated_config_without_its_gate_tensor_is_refused(tmp_path):
    from construct.model.checkpoint_format import CheckpointError, check_tensors

    model = hand_made("relu", False, seed=3, gated=True)
    weights = {k: torch.as_tensor(v) for k, v in model.weights.items() if "W_gate" not in k}
    with pytest.raises(CheckpointError, match="missing tensor.*blocks.0.mlp.W_gate"):
        check_tensors(model.shape, weights, "x")
