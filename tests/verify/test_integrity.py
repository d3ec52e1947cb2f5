"""Verification that can fail: changed weights, bounds that say nothing, trained weights.

The tamper sweep that found the checker passing changed weights, in small: a 1e-6 relative
change of one entry of any tensor is caught by the integrity check; a 10 % change of the
read-out with the check off is "no guarantee", not a pass, where the bound (41) exceeds the
predictions; trained linear attention, compared only with its own weights, is "no guarantee".
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from construct.algorithms.registry import get_algorithm
from construct.cli.main import main as rawc
from construct.compiler.config import CompileConfig
from construct.model.checkpoint import load_checkpoint, save_checkpoint
from construct.model.linear import LinearConstruction
from verify.check.integrity import Integrity, check_integrity
from verify.check.verdict import Verdict


def compiled_file(tmp_path, name: str, **params) -> str:
    algorithm = get_algorithm(name)
    resolved = algorithm.resolve(**params)
    path = str(tmp_path / f"{name}.safetensors")
    save_checkpoint(algorithm.construct(resolved, CompileConfig()), path, name, resolved)
    return path


def nudged(value: torch.Tensor) -> torch.Tensor:
    """One entry changed by 1e-6 of itself (or to 1e-6 where the tensor is all zero)."""
    out = value.clone().reshape(-1)
    k = int(out.abs().argmax())
    out[k] = out[k] * (1 + 1e-6) if out[k] != 0 else 1e-6
    return out.reshape(value.shape)


@pytest.mark.parametrize("name,params", [("gd", {"d": 2}), ("sherman-morrison", {"d": 2}),
                                         ("lsa-precond-gd", {"d": 2, "Sigma": "1,2"})])
def test_a_one_entry_change_of_any_tensor_is_caught(tmp_path, name, params):
    checkpoint = load_checkpoint(compiled_file(tmp_path, name, **params))
    assert check_integrity(checkpoint).status is Integrity.MATCH
    for tensor in checkpoint.weights:
        changed = dict(checkpoint.weights, **{tensor: nudged(checkpoint.weights[tensor])})
        result = check_integrity(dataclasses.replace(checkpoint, weights=changed))
        assert result.status is Integrity.DIFFERS and tensor in result.detail


def tampered(path: str, tensor: str, factor: float) -> str:
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(path, "pt") as handle:
        metadata = handle.metadata()
        weights = {k: handle.get_tensor(k) for k in handle.keys()}
    weights[tensor] = weights[tensor] * factor
    out = path.replace(".safetensors", "-tampered.safetensors")
    save_file(weights, out, metadata=metadata)
    return out


def test_verify_fails_on_a_scaled_query_and_read_out(tmp_path, capsys):
    path = compiled_file(tmp_path, "gd", d=2)
    assert rawc(["verify", path, "--trials", "64"]) == Verdict.PASS.exit_code
    for tensor, factor in (("blocks.0.attn.W_Q", 1.001), ("unembed.W_U", 1.1)):
        assert rawc(["verify", tampered(path, tensor, factor), "--trials", "64"]) == 1
        assert "FAIL: integrity" in capsys.readouterr().out


def test_a_vacuous_a_priori_bound_is_no_guarantee(tmp_path, capsys):
    """ridge by stacked Sherman-Morrison, d=2 n=3: the a-priori bound over the box (about 41)
    exceeds the predictions."""
    path = compiled_file(tmp_path, "ridge", d=2, n=3, method="sherman-morrison")
    code = rawc(["verify", path, "--trials", "64"])
    out = capsys.readouterr().out
    assert code == Verdict.NO_GUARANTEE.exit_code and "a-priori" in out
    assert "PASS" not in out


def test_the_a_posteriori_bound_catches_what_the_vacuous_a_priori_bound_cannot(tmp_path,
                                                                               capsys):
    """W_U scaled by 1.1 (every prediction 10 % off) with integrity off: the a-priori bound
    (41) covers it, each task's a-posteriori bound (about 1e-6) does not."""
    path = tampered(compiled_file(tmp_path, "ridge", d=2, n=3, method="sherman-morrison"),
                    "unembed.W_U", 1.1)
    code = rawc(["verify", path, "--trials", "64", "--no-integrity"])
    out = capsys.readouterr().out
    assert code == Verdict.FAIL.exit_code
    assert "PASS" not in out and "FAIL" in out


def test_an_uninformative_bound_is_no_guarantee(tmp_path, capsys):
    """gd with --bound 1e6: every bound is finite, the a-priori one is not below 1 % of the
    output's magnitude bound."""
    path = str(tmp_path / "wide.safetensors")
    assert rawc(["compile", "gd", "--bound", "1e6", "-o", path]) == 0
    code = rawc(["verify", path, "--trials", "64"])
    out = capsys.readouterr().out
    assert code == Verdict.NO_GUARANTEE.exit_code and "informative" in out


def test_trained_linear_attention_is_no_guarantee(tmp_path, capsys):
    algorithm = get_algorithm("lsa-gd")
    built = algorithm.construct(algorithm.resolve(d=2, n=4))
    trained = LinearConstruction("trained-lsa", built.model, "# weights from training\n")
    path = str(tmp_path / "trained.safetensors")
    save_checkpoint(trained, path, "trained-lsa", {"steps": 10})
    assert check_integrity(load_checkpoint(path)).status is Integrity.NOT_APPLICABLE
    assert rawc(["verify", path, "--trials", "16"]) == Verdict.NO_GUARANTEE.exit_code
    assert "NO GUARANTEE" in capsys.readouterr().out


def _trained_file(tmp_path, scale: float) -> str:
    """A 'trained' lsa-precond-gd block (the optimum, its W_V scaled by ``scale``) that
    claims to be lsa-precond-gd, as ``rawc train-lsa -o`` records it."""
    algorithm = get_algorithm("lsa-precond-gd")
    params = algorithm.resolve(d=2, n=8)
    built = algorithm.construct(params)
    path = str(tmp_path / f"trained-{scale}.safetensors")
    save_checkpoint(LinearConstruction("trained-lsa", built.model, "# trained\n"), path,
                    "trained-lsa", {"steps": 10},
                    {"trained": True, "claims": {"name": "lsa-precond-gd", "params": params}})
    if scale != 1.0:
        path = tampered(path, "blocks.0.attn.W_V", scale)
    return path


def test_trained_weights_are_held_to_their_claim_within_tol(tmp_path, capsys):
    exact, off = _trained_file(tmp_path, 1.0), _trained_file(tmp_path, 1.02)
    assert rawc(["verify", exact, "--trials", "32"]) == Verdict.PASS.exit_code
    assert "claimed lsa-precond-gd" in capsys.readouterr().out
    assert rawc(["verify", off, "--trials", "32", "--tol", "1e-3"]) == Verdict.FAIL.exit_code
    assert rawc(["verify", off, "--trials", "32", "--tol", "0.1"]) == Verdict.PASS.exit_code
    assert rawc(["verify", off, "--trials", "32", "--tol", "-1"]) == 2


@pytest.mark.parametrize("option", [["--batch", "0"], ["--metric-tasks", "0"], ["--tol", "nan"],
                                    ["--tol", "-1"], ["--trials", "0"]])
def test_bad_verify_options_exit_2_with_one_line(tmp_path, capsys, option):
    path = compiled_file(tmp_path, "gd", d=2)
    assert rawc(["verify", path, *option]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and option[0] in err[0]


def test_ridge_by_solve_is_a_pass_where_the_stack_has_no_guarantee(tmp_path, capsys):
    """ridge d=2 n=3 by statistics and Gauss-Jordan: 7 layers instead of 11, and an a-priori
    bound below 1 % of the output bound, where the Sherman-Morrison stack's is vacuous."""
    path = compiled_file(tmp_path, "ridge", d=2, n=3, method="solve")
    code = rawc(["verify", path, "--trials", "64"])
    out = capsys.readouterr().out
    assert code == Verdict.PASS.exit_code, out


@pytest.mark.parametrize("rule", ["lemma4", "richardson", "polarized"])
def test_the_gelu_product_rule_is_recorded_and_rebuilt(tmp_path, rule, capsys):
    path = str(tmp_path / f"gd-{rule}.safetensors")
    assert rawc(["compile", "gd", "--d", "2", "--gelu-product", rule, "-o", path]) == 0
    checkpoint = load_checkpoint(path)
    assert checkpoint.config().gelu_product.value == rule
    assert check_integrity(checkpoint).status is Integrity.MATCH
    # The two rules build different weights: the check tells them apart.
    other = "lemma4" if rule != "lemma4" else "polarized"
    bounds = dict(checkpoint.bounds, constants={**checkpoint.bounds["constants"],
                                                "gelu_product": other})
    relabelled = dataclasses.replace(checkpoint, metadata={**checkpoint.metadata,
                                                           "rawc.bounds": bounds})
    assert check_integrity(relabelled).status is Integrity.DIFFERS


def test_a_file_from_before_the_richardson_rule_reads_as_lemma4(tmp_path):
    path = str(tmp_path / "gd.safetensors")
    assert rawc(["compile", "gd", "--d", "2", "--gelu-product", "lemma4", "-o", path]) == 0
    checkpoint = load_checkpoint(path)
    constants = {k: v for k, v in checkpoint.bounds["constants"].items()
                 if k != "gelu_product"}
    older = dataclasses.replace(checkpoint, metadata={
        **checkpoint.metadata, "rawc.bounds": dict(checkpoint.bounds, constants=constants)})
    assert older.config().gelu_product.value == "lemma4"
    assert check_integrity(older).status is Integrity.MATCH
