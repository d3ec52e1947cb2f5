"""The full-size runs behind docs/trained-vs-compiled.md, behind the ``slow`` marker
(``pytest -m slow``; minutes each on a 2-core CPU)."""
from __future__ import annotations

import pytest

from verify.training import phases, transience
from verify.training.icl import ICLConfig

pytestmark = pytest.mark.slow


def test_depth_orders_the_phases(tmp_path):
    """Akyürek Fig. 3 in miniature: one layer nearest a GD step, eight layers nearest OLS."""
    base = ICLConfig(d=4, n=16, steps=2000)
    points = phases.run_grid(base, (1, 8), (0.0,), str(tmp_path), 2048, 0.05, None)
    assert [phases.family(p.nearest) for p in points] == ["GD", "OLS"]


def test_transience_run_reports_both_curves(tmp_path):
    runs = transience.run_pair(transience.TransienceConfig(steps=4000), 0.01, None)
    for r in runs:
        accuracies = [e["icl"] for e in r["log"]]
        assert max(accuracies) > 0.5  # ICL emerges on novel classes (chance: 1/2 of the pair)
