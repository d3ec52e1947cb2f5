"""verify.training.icl: the trained model is the DESIGN forward, learns, resumes, saves."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from construct.model.checkpoint import load_checkpoint, save_checkpoint
from construct.model.transformer import Transformer
from verify.training.icl import (ICLConfig, new_state, sample_batch, train, trained_model,
                                 training_record)

torch.set_num_threads(1)
TINY = ICLConfig(d=2, n=4, layers=2, d_model=16, heads=2, d_mlp=16, steps=300, batch=64)


@pytest.mark.parametrize("attention,momentum", [("softmax", 0.0), ("linear", 0.0),
                                                ("linear-momentum", 0.5)])
def test_saved_model_runs_the_same_in_the_checkpoint_transformer(tmp_path, attention, momentum):
    """Two implementations of the forward: the trainer's and construct.model.transformer."""
    config = dataclasses.replace(TINY, steps=20, attention=attention, momentum=momentum,
                                 lr=1e-3)
    state = train(config, progress=False)
    path = tmp_path / "t.safetensors"
    save_checkpoint(trained_model(config, state), path, "trained-icl", {"d": 2, "n": 4},
                    training_record(config, state))
    checkpoint = load_checkpoint(str(path))
    assert checkpoint.algorithm["trained"] is True
    assert checkpoint.algorithm["training"]["steps_done"] == 20
    tokens, _, _ = sample_batch(config, 16, torch.Generator().manual_seed(3))
    ours = Transformer(checkpoint.shape, checkpoint.weights).outputs(tokens.double())[..., 0]
    theirs = state.model(tokens).detach().double()
    assert torch.allclose(ours, theirs, rtol=1e-5, atol=1e-5)


def test_training_lowers_the_loss():
    state = train(TINY, progress=False)
    first = sum(loss for _, loss in state.losses[:5]) / 5
    last = sum(loss for _, loss in state.losses[-5:]) / 5
    assert last < 0.8 * first, (first, last)


def test_resumed_run_equals_an_uninterrupted_one(tmp_path):
    config = dataclasses.replace(TINY, steps=40)
    whole = train(config, progress=False)
    resume = str(tmp_path / "state")
    half = train(config, resume_path=resume, progress=False, until=20)
    assert half.step == 20
    state = new_state(config)
    state.load(resume)
    finished = train(config, state, progress=False)
    for name in whole.model.names:
        assert torch.equal(whole.model.tensor(name), finished.model.tensor(name)), name


def test_bad_configurations_are_refused():
    with pytest.raises(ValueError, match="not a multiple of --heads"):
        ICLConfig(d_model=10, heads=4)
    with pytest.raises(ValueError, match="--momentum"):
        ICLConfig(attention="softmax", momentum=0.5)
