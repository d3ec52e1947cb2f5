"""verify.training.compare and verify.training.probe: compiled checkpoints are the positive
control (their own algorithm at rounding level; their weights readable where the program
writes them), a trained one is compared and probed alike."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from construct.algorithms.registry import get_algorithm
from construct.compiler.config import CompileConfig
from construct.model.assemble import compile_program
from construct.model.checkpoint import load_checkpoint, save_checkpoint
from verify import solvers
from verify.training.compare import compare_checkpoint, gd_optimal_predictions
from verify.training.icl import ICLConfig, train, trained_model, training_record
from verify.training.probe import probe_checkpoint

torch.set_num_threads(1)


def _compiled(tmp_path, name: str, **params: object) -> str:
    algorithm = get_algorithm(name)
    resolved = algorithm.resolve(**params)
    compiled = compile_program(algorithm.program(resolved), CompileConfig.for_dtype("float64"))
    path = str(tmp_path / f"{name}.safetensors")
    save_checkpoint(compiled, path, name, resolved)
    return path


@pytest.mark.parametrize("name,params", [("ridge", {"d": 2, "n": 4}),
                                         ("sgd", {"d": 2, "n": 3})])
def test_a_compiled_learner_is_nearest_its_own_algorithm(tmp_path, name, params):
    found = compare_checkpoint(_compiled(tmp_path, name, **params), 256, None, (0.1, 1.0),
                               0.05, seed=0)
    assert found.nearest.endswith(f"[{name}'s own]")
    assert found.spd_mean(found.nearest) < 1e-16
    others = [found.spd_mean(r) for r in found.spd if r != found.nearest]
    assert min(others) > 1e-6  # the references do differ from each other
    assert sorted(found.ilwd[found.nearest]) == solvers.sampled_prefixes(params["n"])
    assert max(found.ilwd[found.nearest].values()) < 1e-16  # the same implicit weights
    assert min(v for k, v in found.r2.items() if k >= 1) > 0.999999  # a linear learner


def test_gd_optimal_step_is_the_mean_loss_step_at_eta_star():
    generator = torch.Generator().manual_seed(0)
    xs = torch.randn(5, 4, 3, generator=generator, dtype=torch.float64)
    ys = torch.randn(5, 3, generator=generator, dtype=torch.float64)
    k, d, noise = 2, 3, 0.5
    eta = k / (k + d + 1 + noise ** 2)
    expected = solvers.one_step_predictions(xs, ys, eta / 2, 0.0, torch.zeros(d, dtype=xs.dtype),
                                            mean=True)
    assert torch.allclose(gd_optimal_predictions(xs, ys, noise)[:, k], expected[:, k])


def test_a_trained_checkpoint_is_compared_with_the_bayes_predictor(tmp_path):
    config = ICLConfig(d=2, n=4, layers=1, d_model=16, heads=2, d_mlp=16, steps=50, batch=32,
                       noise=0.5)
    state = train(config, progress=False)
    path = str(tmp_path / "t.safetensors")
    save_checkpoint(trained_model(config, state), path, "trained-icl", {"d": 2, "n": 4},
                    training_record(config, state))
    found = compare_checkpoint(path, 128, None, (0.1,), 0.05, seed=0)
    assert found.trained and found.n == 4
    assert "ridge(0.25) = Bayes" in found.spd and "ols" in found.spd
    assert not any("own" in name for name in found.spd)
    assert all(len(v) == 5 for v in found.spd.values())


def test_the_compiled_gd_step_is_read_where_the_program_writes_it(tmp_path):
    path = _compiled(tmp_path, "gd", d=2)
    checkpoint = load_checkpoint(path)
    compiled = compile_program(checkpoint.program(), checkpoint.config())
    copy = next(i for i, op in enumerate(compiled.program.ops) if op.dst == "w_q")
    written = compiled.schedule.layer_of(copy) + 1  # row 0 of the probe table: the embedding
    result = probe_checkpoint(path, 512, None, None, seed=0, mlp=False)
    own = next(name for name in result.linear if "own" in name)
    assert result.first_readable(own) == written
    assert max(result.linear[own][:written]) < 0.5


def test_the_compiled_ridge_statistics_come_before_its_weights(tmp_path):
    result = probe_checkpoint(_compiled(tmp_path, "ridge", d=2, n=4), 512, None, None, seed=0,
                              mlp=False)
    own = next(name for name in result.linear if "own" in name)
    statistics = result.first_readable("X^T Y")
    weights = result.first_readable(own)
    assert statistics is not None and weights is not None and statistics < weights
    assert result.linear[own][-1] >= 0.999


def test_probe_prefix_out_of_range_is_refused(tmp_path):
    with pytest.raises(ValueError, match="--prefix must be between 1 and n = 1"):
        probe_checkpoint(_compiled(tmp_path, "gd", d=2), 64, 3, None, seed=0)
