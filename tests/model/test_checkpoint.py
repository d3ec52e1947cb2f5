"""Checkpoint format rawc.checkpoint/1: round trip, a reader written from DESIGN.md alone, and
every kind of bad file refused with a message that names the problem."""
from __future__ import annotations

import dataclasses
import json
import math
import os
import random

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from construct.language import interpreter
from construct.algorithms.theorems import gd_program, sherman_morrison_program
from construct.model.assemble import compile_program
from construct.model.checkpoint_format import SCHEMA, CheckpointError, expected_shapes
from construct.model.checkpoint import (Checkpoint,
                                  load_checkpoint, save_checkpoint)
from construct.model.transformer import Transformer

CASES = {
    "gd": (lambda: gd_program(3), {"d": 3, "alpha": "1/10", "lam": "1/100"}),
    "sherman-morrison": (lambda: sherman_morrison_program(2), {"d": 2, "lam": "1/2"}),
}


def make_tokens(d: int, batch: int = 16, n_tokens: int = 3, seed: int = 0) -> torch.Tensor:
    """x-tokens ``[0, x]`` at even positions, y-tokens ``[y, 0]`` at odd, entries in [-2, 2]."""
    gen = torch.Generator().manual_seed(seed)
    values = torch.rand(batch, n_tokens, d + 1, generator=gen, dtype=torch.float64) * 4 - 2
    tokens = torch.zeros_like(values)
    tokens[:, 0::2, 1:] = values[:, 0::2, 1:]
    tokens[:, 1::2, 0] = values[:, 1::2, 0]
    return tokens


@pytest.fixture(scope="module", params=list(CASES))
def saved(request, tmp_path_factory):
    name = request.param
    build, params = CASES[name]
    program = build()
    compiled = compile_program(program)
    path = tmp_path_factory.mktemp(name) / "model.safetensors"
    save_checkpoint(compiled, path, algorithm=name, params=params)
    return name, compiled, path


@pytest.fixture(scope="module")
def gd_file(tmp_path_factory):
    compiled = compile_program(gd_program(3))
    path = tmp_path_factory.mktemp("gd-bad") / "model.safetensors"
    save_checkpoint(compiled, path, algorithm="gd")
    return compiled, path


# --------------------------------------------------------------------------- round trip


def test_round_trip_matches_in_memory_model(saved):
    name, compiled, path = saved
    ck = load_checkpoint(path)
    assert isinstance(ck, Checkpoint)
    assert ck.shape == compiled.shape
    assert set(ck.weights) == set(compiled.weights)
    for key, value in ck.weights.items():
        assert value.dtype == torch.float64
        assert torch.equal(value, torch.as_tensor(compiled.weights[key]))
    tokens = make_tokens(compiled.program.d)
    ours = Transformer(ck.shape, ck.weights)(tokens).output
    theirs = Transformer(compiled.shape, compiled.weights)(tokens).output
    assert torch.equal(ours, theirs)


def test_metadata_contents(saved):
    name, compiled, path = saved
    ck = load_checkpoint(path)
    assert ck.metadata["rawc.schema"] == SCHEMA
    assert ck.metadata["format"] == "pt"
    assert ck.algorithm["name"] == name
    assert ck.algorithm["params"] == CASES[name][1]
    config = ck.metadata["rawc.config"]
    for field in ("d_model", "n_layers", "n_heads", "d_head", "d_mlp", "n_ctx", "d_in",
                  "d_out", "act_fn", "ln1", "ln2", "ln_eps", "attn_kind", "attn_mask",
                  "attn_scale", "input_format"):
        assert field in config
    assert config["input_format"]["kind"] == "interleaved-xy"
    assert ck.metadata["rawc.layout"] == json.loads(json.dumps(compiled.layout.to_json()))
    assert ck.config() == compiled.config
    bounds = ck.bounds
    assert bounds["input_bound"] == compiled.config.input_bound
    assert len(bounds["ops"]) == len(compiled.program.ops)
    if "predicted" in bounds:
        assert ck.predicted_bound("float64") > 0
    assert ck.metadata["rawc.version"]


def test_program_text_round_trips(saved):
    name, compiled, path = saved
    ck = load_checkpoint(path)
    program = ck.program()
    assert program.text() == compiled.program.text()
    tokens = make_tokens(compiled.program.d, seed=3)
    assert torch.allclose(interpreter.run(program, tokens).prediction(),
                          interpreter.run(compiled.program, tokens).prediction(),
                          rtol=0, atol=1e-12)


def test_fraction_params_are_strings(tmp_path):
    from fractions import Fraction

    compiled = compile_program(gd_program(2))
    path = tmp_path / "m.safetensors"
    params = {"d": 2, "alpha": Fraction(1, 10), "w0": [Fraction(1, 2), Fraction(-1)]}
    save_checkpoint(compiled, path, algorithm="gd", params=params)
    ck = load_checkpoint(path)
    assert ck.algorithm == {"name": "gd",
                            "params": {"d": 2, "alpha": "1/10", "w0": ["1/2", "-1"]},
                            "compile": {"form": "stacked", "schedule": "packed", "target": "paper",
                                        "gelu_product": "polarized",
                                        "listing": False, "constants_dtype": "float64",
                                        "input_bound": 4.0, "n_ctx": 256}}


# ---------------------------------------------------------------- a reader from DESIGN.md


def design_reader(path: str, tokens: torch.Tensor) -> torch.Tensor:
    """Run a rawc.checkpoint/1 file knowing only DESIGN.md: predictions at x-token positions.

    Uses torch, safetensors and json only (nothing from construct or verify).
    """
    with safe_open(path, framework="pt") as f:
        meta = f.metadata()
        W = {k: f.get_tensor(k).to(torch.float64) for k in f.keys()}
    assert meta["rawc.schema"] == "rawc.checkpoint/1"
    cfg = json.loads(meta["rawc.config"])
    assert cfg["attn_kind"] == "softmax" and cfg["attn_mask"] == "causal"
    fmt = cfg["input_format"]
    assert fmt["kind"] == "interleaved-xy"

    def layer_norm(z, w, b):
        mean = z.mean(-1, keepdim=True)
        var = ((z - mean) ** 2).mean(-1, keepdim=True)  # biased variance
        return (z - mean) / torch.sqrt(var + cfg["ln_eps"]) * w + b

    def act(z):
        kind = cfg["act_fn"]
        if kind == "gelu":
            return 0.5 * z * (1 + torch.erf(z / math.sqrt(2)))
        if kind == "gelu_new":
            return 0.5 * z * (1 + torch.tanh(math.sqrt(2 / math.pi) * (z + 0.044715 * z ** 3)))
        if kind == "relu":
            return torch.clamp(z, min=0)
        raise ValueError(kind)

    T = tokens.shape[-2]
    resid = tokens @ W["embed.W_E"] + W["pos_embed.W_pos"][:T]
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    for l in range(cfg["n_layers"]):
        p = f"blocks.{l}."
        z = resid
        if cfg["ln1"]:
            z = layer_norm(z, W[p + "ln1.w"], W[p + "ln1.b"])
        heads = []
        for h in range(cfg["n_heads"]):
            q = z @ W[p + "attn.W_Q"][h] + W[p + "attn.b_Q"][h]
            k = z @ W[p + "attn.W_K"][h] + W[p + "attn.b_K"][h]
            v = z @ W[p + "attn.W_V"][h] + W[p + "attn.b_V"][h]
            scores = q @ k.transpose(-1, -2) / cfg["attn_scale"]
            scores = scores.masked_fill(~causal, float("-inf"))
            heads.append(torch.softmax(scores, dim=-1) @ v @ W[p + "attn.W_O"][h])
        resid = resid + sum(heads) + W[p + "attn.b_O"]
        z = resid
        if cfg["ln2"]:
            z = layer_norm(z, W[p + "ln2.w"], W[p + "ln2.b"])
        if cfg["act_fn"] != "none":
            hidden = act(z @ W[p + "mlp.W_in"] + W[p + "mlp.b_in"])
            resid = resid + hidden @ W[p + "mlp.W_out"] + W[p + "mlp.b_out"]
    out = resid @ W["unembed.W_U"] + W["unembed.b_U"]
    first_x = 1 if fmt.get("prior_column") else 0
    return out[..., first_x::2, 0]


def test_design_reader_matches_interpreter(saved):
    name, compiled, path = saved
    tokens = make_tokens(compiled.program.d, seed=1)
    got = design_reader(str(path), tokens)
    want = interpreter.run(compiled.program, tokens).prediction()
    assert got.shape == want.shape
    assert torch.allclose(got, want, rtol=0, atol=1e-6), (got - want).abs().max()


# --------------------------------------------------------------------------- bad files


def rewrite(src, dst, tensors=None, metadata=None):
    """Copy a checkpoint with some tensors and metadata entries changed (None value = drop)."""
    with safe_open(str(src), framework="pt") as f:
        meta = dict(f.metadata())
        weights = {k: f.get_tensor(k) for k in f.keys()}
    for key, value in (tensors or {}).items():
        if value is None:
            weights.pop(key)
        else:
            weights[key] = value
    for key, value in (metadata or {}).items():
        if value is None:
            meta.pop(key)
        else:
            meta[key] = value
    save_file(weights, str(dst), metadata=meta)
    return dst


def assert_refused(path, *fragments):
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)


def test_truncated_file(gd_file, tmp_path):
    _, path = gd_file
    data = path.read_bytes()
    bad = tmp_path / "half.safetensors"
    bad.write_bytes(data[: len(data) // 2])
    assert_refused(bad, "not a readable safetensors file", str(bad))


def test_random_bytes(tmp_path):
    bad = tmp_path / "noise.safetensors"
    bad.write_bytes(random.Random(0).randbytes(4096))
    assert_refused(bad, "not a readable safetensors file")


def test_foreign_safetensors(tmp_path):
    bad = tmp_path / "foreign.safetensors"
    save_file({"weight": torch.zeros(2, 2)}, str(bad), metadata={"format": "pt"})
    assert_refused(bad, "not a rawc checkpoint (no rawc.schema metadata)")
    save_file({"weight": torch.zeros(2, 2)}, str(bad))
    assert_refused(bad, "not a rawc checkpoint")


def test_other_schema(gd_file, tmp_path):
    _, path = gd_file
    bad = rewrite(path, tmp_path / "v2.safetensors", metadata={"rawc.schema": "rawc.checkpoint/2"})
    assert_refused(bad, "schema 'rawc.checkpoint/2' is not supported",
                   "this rawc reads rawc.checkpoint/1")


@pytest.mark.parametrize("key", ["rawc.config", "rawc.bounds", "rawc.program"])
def test_missing_metadata_key(gd_file, tmp_path, key):
    _, path = gd_file
    bad = rewrite(path, tmp_path / "nokey.safetensors", metadata={key: None})
    assert_refused(bad, key, "missing")


def test_invalid_json_metadata(gd_file, tmp_path):
    _, path = gd_file
    bad = rewrite(path, tmp_path / "json.safetensors", metadata={"rawc.layout": "{not json"})
    assert_refused(bad, "rawc.layout", "not valid JSON")


def test_invalid_config_field(gd_file, tmp_path):
    _, path = gd_file
    with safe_open(str(path), framework="pt") as f:
        config = json.loads(f.metadata()["rawc.config"])
    config["n_heads"] = "two"
    bad = rewrite(path, tmp_path / "cfg.safetensors", metadata={"rawc.config": json.dumps(config)})
    assert_refused(bad, "rawc.config", "n_heads")
    del config["n_heads"]
    bad = rewrite(path, tmp_path / "cfg2.safetensors", metadata={"rawc.config": json.dumps(config)})
    assert_refused(bad, "rawc.config", "n_heads")


def test_wrong_shape(gd_file, tmp_path):
    compiled, path = gd_file
    D, M = compiled.shape.d_model, compiled.shape.d_mlp
    bad = rewrite(path, tmp_path / "shape.safetensors",
                  tensors={"blocks.1.mlp.W_in": torch.zeros(D, M + 1, dtype=torch.float64)})
    assert_refused(bad, "blocks.1.mlp.W_in", f"[{D}, {M + 1}]", f"expected [{D}, {M}]")


def test_missing_tensor(gd_file, tmp_path):
    _, path = gd_file
    bad = rewrite(path, tmp_path / "missing.safetensors", tensors={"blocks.0.attn.W_K": None})
    assert_refused(bad, "missing tensor", "blocks.0.attn.W_K")


def test_extra_tensor(gd_file, tmp_path):
    _, path = gd_file
    bad = rewrite(path, tmp_path / "extra.safetensors",
                  tensors={"blocks.0.ln2.w": torch.ones(3, dtype=torch.float64)})
    assert_refused(bad, "unexpected tensor", "blocks.0.ln2.w")


def test_nan_weight(gd_file, tmp_path):
    compiled, path = gd_file
    value = torch.as_tensor(compiled.weights["unembed.W_U"]).clone()
    value[0, 0] = float("nan")
    bad = rewrite(path, tmp_path / "nan.safetensors", tensors={"unembed.W_U": value})
    assert_refused(bad, "unembed.W_U", "non-finite")


def test_nonexistent_path(tmp_path):
    assert_refused(tmp_path / "nowhere.safetensors", "no such file")


def test_expected_shapes_cover_the_compiled_weights(gd_file):
    compiled, _ = gd_file
    shapes = expected_shapes(compiled.shape)
    assert shapes == {k: tuple(v.shape) for k, v in compiled.weights.items()}
    with_ln = dataclasses.replace(compiled.shape, ln1=True, ln2=True)
    assert shapes.keys() < expected_shapes(with_ln).keys()
    assert expected_shapes(with_ln)["blocks.0.ln1.w"] == (compiled.shape.d_model,)


# --------------------------------------------------------------------------- failed saves


def test_save_into_missing_directory(gd_file, tmp_path):
    compiled, _ = gd_file
    target = tmp_path / "no" / "such" / "dir" / "m.safetensors"
    with pytest.raises(CheckpointError, match="does not exist"):
        save_checkpoint(compiled, target)
    assert not (tmp_path / "no").exists()


def test_failed_save_leaves_nothing(gd_file, tmp_path):
    compiled, _ = gd_file
    broken = dataclasses.replace(compiled, weights={**compiled.weights, "embed.W_E": object()})
    with pytest.raises(CheckpointError, match="embed.W_E"):
        save_checkpoint(broken, tmp_path / "m.safetensors")
    assert os.listdir(tmp_path) == []


def test_refuses_to_save_nonfinite_weights(gd_file, tmp_path):
    compiled, _ = gd_file
    value = compiled.weights["unembed.b_U"].copy()
    value[0] = float("inf")
    broken = dataclasses.replace(compiled, weights={**compiled.weights, "unembed.b_U": value})
    with pytest.raises(CheckpointError, match="unembed.b_U"):
        save_checkpoint(broken, tmp_path / "m.safetensors")
    assert os.listdir(tmp_path) == []


def test_error_while_writing_keeps_old_file(gd_file, tmp_path, monkeypatch):
    compiled, path = gd_file
    target = tmp_path / "m.safetensors"
    target.write_bytes(path.read_bytes())
    before = target.read_bytes()

    def half_write(tensors, filename, metadata=None):
        with open(filename, "wb") as out:
            out.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr("construct.model.checkpoint.save_file", half_write)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(compiled, target)
    assert os.listdir(tmp_path) == ["m.safetensors"]
    assert target.read_bytes() == before
