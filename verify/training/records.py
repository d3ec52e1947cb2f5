"""The runs rawc stores as JSON and can show again without training: ``rawc phases`` and
``rawc transience`` write one, ``--from RECORD`` prints its table and draws its picture, and
``rawc docs`` regenerates the trained-vs-compiled page from the committed ones."""
from __future__ import annotations

import dataclasses
from collections.abc import Callable

from verify.training import phases, transience


@dataclasses.dataclass(frozen=True)
class StoredRun:
    write: Callable[[list, str], None]
    read: Callable[[str], list]
    text: Callable[[list], str]
    draw: Callable[[list, str], None]
    record: str  # the file names in a run's folder
    picture: str


RUNS = {"phases": StoredRun(phases.write_json, phases.read_json, phases.table, phases.heat_map,
                            "phases.json", "phases.png"),
        "transience": StoredRun(transience.write_json, transience.read_json, transience.report,
                                transience.plot, "transience.json", "transience.png")}
