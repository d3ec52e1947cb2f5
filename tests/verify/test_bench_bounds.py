"""verify.bench.bounds / `rawc bench bounds`: both bounds per algorithm, and every observed
error inside its a-posteriori bound."""
from __future__ import annotations

import json

from construct.cli.main import main as rawc
from verify.bench.bounds import configurations


def test_the_grid_covers_every_program_algorithm():
    names = {name for name, _, _ in configurations(4, 16)}
    assert names == {"gd", "sherman-morrison", "gd-batch", "sgd", "ridge"}
    assert all(d <= 4 and (n is None or n <= 16) for _, d, n in configurations(4, 16))


def test_small_grid_every_error_within_its_a_posteriori_bound(capsys):
    """Both targets by default: the gated one's hinges and Newton steps carry their bounds too."""
    assert rawc(["bench", "bounds", "--max-d", "2", "--max-n", "4", "--trials", "32",
                 "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 14  # 7 configurations, each MLP target
    assert {r["target"] for r in rows} == {"paper", "gated"}
    for row in rows:
        assert row["worst_ratio"] <= 1.0, row
        assert 0 < row["a_posteriori"] < float("inf"), row
        # the a-posteriori bound is never looser than the a-priori one where both are finite
        assert row["a_posteriori"] <= row["a_priori"] * (1 + 1e-9), row
        # PASS exactly where the bound is informative (under 1 % of the output's bound)
        assert (row["verdict"] == "PASS") == (row["a_priori_relative"] < 0.01), row
