"""verify.bench.sizes (``rawc bench``): the table's columns come from the compiled models and
the bounds, and the goals line says met or MISSED from those numbers."""
from __future__ import annotations

import json

from construct.cli.main import main as cli_main
from verify.bench import sizes as bench_sizes


def test_bench_json_rows_sit_at_their_bounds(capsys) -> None:
    assert cli_main(["bench", "--max-d", "2", "--trials", "16", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    rows = out["rows"]
    assert {(r["algorithm"], r["d"]) for r in rows} == {
        (name, d) for name in bench_sizes.DIMENSIONS for d in (1, 2)}
    for r in rows:
        assert r["depth_bound"] <= r["layers"] <= r["sequential_layers"] <= r["paper_layers"]
        assert r["width_bound"] <= r["d_model"] <= bench_sizes.GOAL_WIDTH_RATIO * r["width_bound"]
        assert r["float64_rel_error"] < 1e-6 and r["ok"]
    assert all(line.split(": ")[-1].startswith("met") for line in out["goals"])


def test_goals_name_what_is_missed() -> None:
    row = {"algorithm": "gd", "d": 4, "layers": 4, "depth_bound": 2, "d_model": 40,
           "width_bound": 20}
    lines = bench_sizes.goals([row])
    assert "MISSED (4 layers at d = 4" in lines[0] and "MISSED (worst 2.00" in lines[1]
