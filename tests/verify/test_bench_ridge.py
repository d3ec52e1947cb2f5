"""verify.bench.ridge / `rawc bench ridge`: the ridge methods' depth-width table."""
from __future__ import annotations

import json

from construct.cli.main import main as rawc
from verify.bench.ridge import stack_layers, tasks_for


def test_a_small_table_has_every_method_and_target_and_the_bounds(capsys):
    assert rawc(["bench", "ridge", "--max-d", "2", "--max-n", "16", "--trials", "4",
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    rows = report["rows"]
    assert {(r["method"], r["target"]) for r in rows} == {
        (m, t) for m in ("solve", "newton", "sherman-morrison") for t in ("paper", "gated")}
    for row in rows:
        assert row["critical_path"] <= row["layers"]
        assert row["paper_layers"] == 50 and row["exact_solve_bound"] == 3
        assert 0 <= row["error_float64"] < 1e-6, row
    solve = [r for r in rows if r["method"] == "solve"]
    # paper 2d + 3; gated (3 + k) d + 2, each of d pivots a division of 2 + k layers (k = 3
    # Newton steps in float64) and a product (tests/algorithms/test_ridge_solve.py)
    assert {r["target"]: r["layers"] for r in solve} == {"paper": 7, "gated": 14}
    assert any(line.startswith("solve gated float64 error") for line in report["goals"])


def test_deep_stacks_are_skipped_by_name(capsys):
    assert rawc(["bench", "ridge", "--max-d", "2", "--max-n", "16", "--trials", "2",
                 "--max-stack-layers", "10", "--target", "gated"]) == 0
    out = capsys.readouterr().out
    assert "not compiled: the stack is 50 layers deep" in out


def test_long_contexts_run_few_tasks_in_small_batches():
    assert stack_layers(4096) == 12290
    count, batch = tasks_for(4096, 1000)
    assert count == 2 and batch == 1
    assert tasks_for(16, 1000) == (1000, 2 ** 26 // 34 ** 2)


def test_the_horizon_table_names_every_learner_and_stops_deep_stacks(capsys):
    assert rawc(["bench", "horizon", "--max-n", "16", "--trials", "2", "--target", "gated",
                 "--max-stack-layers", "40", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    learners = {r["learner"] for r in rows}
    assert learners == {"ridge --method solve", "ridge --method newton",
                        "ridge --method sherman-morrison", "sgd", "gd-batch"}
    for row in rows:
        deep = row["learner"] in ("sgd", "ridge --method sherman-morrison")
        assert (row["errors"] == {}) == deep, row  # 3 * 16 + 2 = 50 layers > 40
        assert row["horizon"] is None
