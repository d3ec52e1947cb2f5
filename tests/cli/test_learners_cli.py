"""``rawc train``, ``compare``, ``probe`` end to end through the command line, and what the
commands for compiled checkpoints say about a trained one."""
from __future__ import annotations

import pathlib

import pytest
import torch

from construct.cli.main import main
from construct.model.checkpoint import load_checkpoint

torch.set_num_threads(1)
TINY = ["--d", "2", "--n", "4", "--layers", "1", "--d-model", "16", "--heads", "2",
        "--d-mlp", "16", "--steps", "30", "--batch", "16"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("trained") / "t.safetensors")
    assert main(["train", *TINY, "--noise", "0.5", "-o", path]) == 0
    return path


def test_train_writes_a_trained_checkpoint_and_removes_its_resume_state(trained):
    record = load_checkpoint(trained).algorithm
    assert record["trained"] is True and record["name"] == "trained-icl"
    assert record["training"]["config"]["noise"] == 0.5
    assert not __import__("os").path.exists(trained + ".train-state")


def test_compare_and_probe_print_their_tables_and_plots(trained, tmp_path, capsys):
    compiled = str(tmp_path / "ridge.safetensors")
    assert main(["compile", "ridge", "--d", "2", "--n", "4", "-o", compiled]) == 0
    capsys.readouterr()
    assert main(["compare", trained, compiled, "--tasks", "64",
                 "--plot", str(tmp_path / "spd.png")]) == 0
    out = capsys.readouterr().out
    assert "ridge(0.25) = Bayes" in out and "[ridge's own]" in out
    assert (tmp_path / "spd.png").stat().st_size > 0
    assert main(["probe", compiled, "--tasks", "64", "--linear-only"]) == 0
    assert "linear X^T Y" in capsys.readouterr().out


def test_resume_continues_a_kept_state(tmp_path, capsys):
    path = str(tmp_path / "r.safetensors")
    from verify.training.icl import ICLConfig, train

    config = ICLConfig(d=2, n=4, layers=1, d_model=16, heads=2, d_mlp=16, steps=30, batch=16)
    train(config, resume_path=path + ".train-state", progress=False, until=10)
    assert main(["train", *TINY, "--resume", "-o", path]) == 0
    assert "resuming" in capsys.readouterr().err
    assert load_checkpoint(path).algorithm["training"]["steps_done"] == 30


@pytest.mark.parametrize("command", ["verify", "explain"])
def test_a_trained_checkpoint_without_a_claim_is_pointed_to_compare(trained, command, capsys):
    assert main([command, trained]) == 2
    assert f"rawc compare {trained}" in capsys.readouterr().err


def test_a_stored_run_is_shown_again_without_training(tmp_path, capsys):
    docs = pathlib.Path(__file__).resolve().parents[2] / "docs" / "trained"
    assert main(["transience", "--from", str(docs / "transience.json"), "--out",
                 str(tmp_path)]) == 0
    assert "transient: no" in capsys.readouterr().out
    assert (tmp_path / "transience.png").stat().st_size > 0
    assert main(["phases", "--from", str(docs / "phases.json")]) == 0
    assert "nearest" in capsys.readouterr().out
    assert main(["phases", "--from", str(tmp_path / "transience.png")]) == 2
    assert "not a readable `rawc phases` record" in capsys.readouterr().err
