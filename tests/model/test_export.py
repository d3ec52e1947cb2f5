"""construct.model.export_stock, export_gpt2, export_tl / `rawc export`: every softmax
checkpoint as a stock GPT-2 and a TransformerLens 4 native bridge, loaded by the real
libraries, against rawc's own forward.

Goal (issue 19): float64 within 1e-7 of the output scale at every position; float32 within
rawc's float32 bound. Measured: 2e-12 (gd) to 1e-10 (ridge) in float64.
"""
from __future__ import annotations

import json
import os

import pytest

from construct.cli.main import main as rawc
from construct.model.checkpoint import load_checkpoint
from verify.check.verdict import Verdict
from verify.export.gpt2_check import check_gpt2

pytest.importorskip("transformers")

ALGORITHMS = [
    ("gd", ["--d", "3"]),
    ("sherman-morrison", ["--d", "3"]),
    ("gd-batch", ["--d", "2", "--n", "4"]),
    ("sgd", ["--d", "2", "--n", "4"]),
    ("sgd", ["--d", "2", "--n", "4", "--form", "shared"]),
    ("ridge", ["--d", "2", "--n", "4"]),
    ("ridge", ["--d", "2", "--n", "4", "--form", "shared"]),
    ("ridge", ["--d", "2", "--n", "4", "--method", "newton"]),
    ("ridge", ["--d", "2", "--n", "3", "--method", "sherman-morrison"]),
    ("ridge", ["--d", "2", "--n", "3", "--method", "sherman-morrison", "--form", "shared"]),
    ("ridge", ["--d", "2", "--n", "4", "--position-code", "dyadic"]),
]
# every softmax algorithm, method and form, in both dtypes (constants tuned for each)
CASES = [(name, flags + (["--dtype", dtype] if dtype == "float32" else []), dtype)
         for name, flags in ALGORITHMS for dtype in ("float64", "float32")]


def compiled(tmp_path, name: str, flags: list[str]) -> str:
    path = str(tmp_path / f"{name}.safetensors")
    assert rawc(["compile", name, *flags, "-o", path]) == 0
    return path


@pytest.mark.parametrize("name,flags,dtype", CASES, ids=lambda v: str(v))
def test_export_agrees_with_rawc_in_transformers(tmp_path, name, flags, dtype, capsys):
    path = compiled(tmp_path, name, flags)
    directory = str(tmp_path / "hf")
    assert rawc(["export", path, "--to", "hf-gpt2", directory]) == 0
    assert sorted(os.listdir(directory)) == ["config.json", "model.safetensors", "rawc_io.json"]
    checkpoint = load_checkpoint(path)
    result = check_gpt2(directory, checkpoint, dtype, trials=16, seed=3)
    if dtype == "float64":
        assert result.relative_difference <= 1e-7, result
        assert result.verdict(None) is Verdict.PASS
    else:
        assert result.verdict(checkpoint.predicted_bound("float32")) is not Verdict.FAIL, result
        assert result.relative_difference <= 1e-2, result  # float32 rounding, not a wrong model
    # against the closed form the export is as good as rawc's own forward, up to that rounding
    assert result.closed_form <= 10 * result.rawc_closed_form + result.relative_difference


def test_gpt2_model_loads_the_directory_unmodified(tmp_path):
    """The plain GPT2Model (no head) loads it too; its hidden state times lm_head is the
    prediction."""
    import torch
    from safetensors.torch import load_file
    from transformers import GPT2Model

    path = compiled(tmp_path, "gd", ["--d", "2"])
    directory = str(tmp_path / "hf")
    assert rawc(["export", path, "--to", "hf-gpt2", directory]) == 0
    model = GPT2Model.from_pretrained(directory, dtype=torch.float64).eval()
    head = load_file(os.path.join(directory, "model.safetensors"))["lm_head.weight"]
    checkpoint = load_checkpoint(path)
    result = check_gpt2(directory, checkpoint, "float64", trials=4, seed=1)
    from verify.tasks import make_tasks
    from construct.model.transformer import Transformer

    tasks = make_tasks(2, 4, 4.0, 1, n_examples=1)
    with torch.no_grad():
        hidden = model(inputs_embeds=tasks.tokens @ model.wte.weight[:3]).last_hidden_state
    ours = Transformer(checkpoint.shape, checkpoint.weights).outputs(tasks.tokens)
    assert (hidden @ head.T[:, :1] - ours).abs().max() <= 1e-7 * ours.abs().max()
    assert result.relative_difference <= 1e-7


TL_CASES = [
    ("gd", ["--d", "3"], "float64"),
    ("gd", ["--d", "3", "--target", "gated"], "float64"),
    ("sgd", ["--d", "2", "--n", "3", "--target", "gated", "--form", "shared"], "float64"),
    ("sherman-morrison", ["--d", "2"], "float64"),
    ("sherman-morrison", ["--d", "2", "--target", "gated"], "float64"),  # its division: no LN
    ("ridge", ["--d", "2", "--n", "3", "--method", "sherman-morrison", "--form", "shared"],
     "float64"),
    ("gd", ["--d", "3", "--dtype", "float32"], "float32"),
    ("ridge", ["--d", "2", "--n", "3", "--position-code", "dyadic"],
     "float64"),
]


@pytest.mark.parametrize("name,flags,dtype", TL_CASES, ids=lambda v: str(v))
def test_transformer_lens_4_native_bridge_agrees_with_rawc(tmp_path, name, flags, dtype):
    """``--to transformer-lens``: TL 4's own native modules (gated MLP included) built from
    the written config, the weights through ``convert_tl_checkpoint``, strict, no hooks."""
    pytest.importorskip("transformer_lens")
    path = compiled(tmp_path, name, flags)
    directory = str(tmp_path / "tl")
    assert rawc(["export", path, "--to", "transformer-lens", directory]) == 0
    assert sorted(os.listdir(directory)) == ["rawc_io.json", "tl_config.json",
                                             "tl_weights.safetensors"]
    checkpoint = load_checkpoint(path)
    result = check_gpt2(directory, checkpoint, dtype, trials=8, loader="transformer-lens")
    if dtype == "float64":
        assert result.relative_difference <= 1e-7, result
    else:
        assert result.max_difference <= checkpoint.predicted_bound("float32"), result


def test_transformer_lens_4_boots_the_gpt2_directory(tmp_path):
    pytest.importorskip("transformer_lens")
    path = compiled(tmp_path, "sherman-morrison", ["--d", "2"])
    directory = str(tmp_path / "hf")
    assert rawc(["export", path, "--to", "hf-gpt2", directory]) == 0
    result = check_gpt2(directory, load_checkpoint(path), "float64", trials=8,
                        loader="transformer-lens-gpt2")
    assert result.relative_difference <= 1e-7, result


def test_a_corrupted_export_is_caught(tmp_path):
    """The check can fail: one c_attn weight changed in the written directory."""
    import torch
    from safetensors.torch import load_file, save_file

    path = compiled(tmp_path, "gd", ["--d", "2"])
    directory = str(tmp_path / "hf")
    assert rawc(["export", path, "--to", "hf-gpt2", directory]) == 0
    file = os.path.join(directory, "model.safetensors")
    tensors = load_file(file)
    tensors["transformer.h.1.attn.c_attn.weight"] = tensors["transformer.h.1.attn.c_attn.weight"] * 1.001
    save_file(tensors, file, metadata={"format": "pt"})
    result = check_gpt2(directory, load_checkpoint(path), "float64", trials=8)
    assert result.verdict(None) is Verdict.FAIL, result


def test_the_io_rule_and_config_are_written(tmp_path):
    path = compiled(tmp_path, "sherman-morrison", ["--d", "2"])
    directory = str(tmp_path / "hf")
    assert rawc(["export", path, "--to", "hf-gpt2", directory]) == 0
    config = json.load(open(os.path.join(directory, "config.json")))
    io = json.load(open(os.path.join(directory, "rawc_io.json")))
    assert config["model_type"] == "gpt2" and config["activation_function"] == "gelu"
    assert config["n_embd"] % config["n_head"] == 0
    assert io["layer_norm_mode"] == "pads" and io["pad"] >= 1e7
    assert io["prediction"] == "logits[..., :1]"


@pytest.mark.parametrize("name,flags,to,reason", [
    ("lsa-gd", ["--d", "2"], "hf-gpt2", "linear"),
    ("lsa-gd", ["--d", "2"], "transformer-lens", "linear"),
    ("gd", ["--d", "2", "--target", "gated"], "hf-gpt2", "gated_mlp"),
])
def test_checkpoints_without_a_stock_form_are_refused_by_name(tmp_path, name, flags, to, reason,
                                                              capsys):
    path = compiled(tmp_path, name, flags)
    capsys.readouterr()
    directory = tmp_path / "out"
    assert rawc(["export", path, "--to", to, str(directory)]) == 2
    err = capsys.readouterr().err
    assert f"no {to} form" in err and reason in err and len(err.strip().splitlines()) == 1
    assert not directory.exists() and not list(tmp_path.glob(".rawc-*"))


def test_a_missing_parent_directory_is_refused(tmp_path, capsys):
    path = compiled(tmp_path, "gd", ["--d", "2"])
    assert rawc(["export", path, "--to", "hf-gpt2", str(tmp_path / "no" / "dir")]) == 2
    assert "no directory" in capsys.readouterr().err


def test_check_without_the_library_is_a_usage_error(tmp_path, capsys, monkeypatch):
    """--check needs transformers: without it, exit 2 and say so (not an internal error)."""
    import sys

    path = compiled(tmp_path, "gd", ["--d", "2"])
    monkeypatch.setitem(sys.modules, "transformers", None)  # `import transformers` fails
    capsys.readouterr()
    assert rawc(["export", path, "--to", "hf-gpt2", str(tmp_path / "hf"), "--check"]) == 2
    err = capsys.readouterr().err
    assert "--check needs transformers" in err and "Traceback" not in err
    assert (tmp_path / "hf" / "config.json").exists()
