"""verify.training.phases and verify.training.transience: the grids run as Ray tasks and
produce their tables, maps and verdicts (tiny budgets: the behaviour, not the science)."""
from __future__ import annotations

import json

import pytest
import torch

from verify.training import phases, transience
from verify.training.icl import ICLConfig

torch.set_num_threads(1)


def test_phase_grid_runs_on_ray_and_writes_its_checkpoints(tmp_path):
    pytest.importorskip("ray")
    base = ICLConfig(d=2, n=4, d_model=16, heads=2, d_mlp=16, steps=30, batch=32)
    points = phases.run_grid(base, (1, 2), (0.0, 0.5), str(tmp_path), 64, 0.05, None)
    assert [(p.layers, p.noise) for p in points] == [(1, 0.0), (1, 0.5), (2, 0.0), (2, 0.5)]
    for p in points:
        assert (tmp_path / p.checkpoint.split("/")[-1]).is_file()
        assert p.nearest in p.spd and p.spd[p.nearest] == min(p.spd.values())
    assert "ridge(0.25) = Bayes" in points[1].spd and "ridge(0.25) = Bayes" not in points[0].spd
    phases.heat_map(points, str(tmp_path / "map.png"))
    phases.write_json(points, str(tmp_path / "p.json"))
    assert (tmp_path / "map.png").stat().st_size > 0
    assert json.loads((tmp_path / "p.json").read_text())[0]["nearest"] == points[0].nearest
    assert "nearest" in phases.table(points)


def test_reference_families():
    assert [phases.family(r) for r in ("gd1*", "sgd(0.05)", "ridge(0.1)", "ols")] == \
        ["GD", "GD", "ridge", "OLS"]


def test_transience_pair_runs_on_ray_with_and_without_l2(tmp_path):
    pytest.importorskip("ray")
    config = transience.TransienceConfig(dim=8, classes=16, labels=4, context=4, burst=2,
                                         d_model=16, heads=2, steps=40, batch=16,
                                         eval_every=20, eval_sequences=64)
    runs = transience.run_pair(config, 0.1, None)
    assert [r["config"]["weight_decay"] for r in runs] == [0.0, 0.1]
    for r in runs:
        assert [e["step"] for e in r["log"]] == [20, 40]
        assert all(0 <= e["icl"] <= 1 and 0 <= e["iwl"] <= 1 for e in r["log"])
    transience.plot(runs, str(tmp_path / "t.png"))
    assert "transient:" in transience.report(runs)


def test_sequences_hold_what_each_evaluation_needs():
    config = transience.TransienceConfig(dim=8, classes=16, labels=4, context=6, burst=2)
    mixture = transience.Mixture(config)
    g = torch.Generator().manual_seed(0)
    tokens, targets = mixture.bursty(32, g)
    shown = tokens[:, 1::2, config.dim:].argmax(-1)  # the context's labels
    assert bool((shown == targets[:, None]).any(1).all())  # the answer is in the context
    tokens, targets = mixture.bursty(32, g, in_context=False)
    assert tokens.shape == (32, 13, 12)
    tokens, targets = mixture.novel(32, g)
    shown = tokens[:, 1::2, config.dim:].argmax(-1)
    assert bool(((shown == targets[:, None]).sum(1) == config.burst).all())


def test_verdict_needs_icl_above_the_context_chance_then_a_fall_while_the_loss_falls():
    rising = [{"step": s, "loss": 1 / s, "icl": 0.3 * s, "iwl": 0.0} for s in (1, 2, 3)]
    assert not transience.verdict(rising)["transient"]  # 0.9 at the end: still rising
    fading = rising + [{"step": 4, "loss": 0.1, "icl": 0.5, "iwl": 0.9}]
    assert transience.verdict(fading)["transient"]
    stalled = rising + [{"step": 4, "loss": 0.5, "icl": 0.5, "iwl": 0.9}]
    assert not transience.verdict(stalled)["transient"]  # the loss rose
    at_chance = [{"step": 1, "loss": 1.0, "icl": 0.51, "iwl": 0.0},
                 {"step": 2, "loss": 0.1, "icl": 0.14, "iwl": 0.9}]
    found = transience.verdict(at_chance)  # the first CPU run: IWL took over, ICL never came
    assert not found["emerged"] and not found["transient"]



def test_a_training_bar_inside_a_ray_task_is_drawn_by_the_driver():
    """A grid point trains for minutes inside a Ray task; its bar must be Ray's (which the
    driver draws), not a terminal tqdm the worker's hidden stderr swallows."""
    pytest.importorskip("ray")
    from verify.sweeps import ray_map

    def bar_kind_and_count(total: int) -> tuple[str, int]:  # local: Ray ships it by value
        from verify.sweeps import step_bar

        bar = step_bar(total, "probe", initial=2)
        for _ in range(total - 2):
            bar.update()
        bar.set_postfix(loss="0.5")
        bar.close()
        return type(bar).__name__, total

    assert list(ray_map(bar_kind_and_count, [(5,)], num_cpus=1)) == [("_TaskBar", 5)]
    assert bar_kind_and_count(5) == ("tqdm", 5)
