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


def test_transience_run_learns_the_training_classes_in_weights(tmp_path):
    """The docs run at its full size: IWL reaches 0.8 on the training classes (what the CPU
    run shows; ICL did not emerge above the context chance there, see the docs page)."""
    runs = transience.run_pair(transience.TransienceConfig(steps=20000), 0.01, None)
    assert all(r["log"][-1]["iwl"] > 0.8 for r in runs)
