"""A command's phases as one tqdm bar on stderr, shown only when the command runs past 2 s.

``with phases("compile ridge", ("building", "writing", "bounding")) as next_phase:`` starts
at the first phase; each ``next_phase()`` moves on and names the next one. tqdm draws the bar
at the first move after its ``delay``, so a quick command prints nothing and a slow one shows
which phase it is in (a phase that has its own bar, such as lowering the layers, shows that
one inside).
"""
from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator, Sequence

from tqdm import tqdm

DELAY_SECONDS = 2.0


@contextlib.contextmanager
def phases(desc: str, names: Sequence[str]) -> Iterator[Callable[[], None]]:
    bar = tqdm(total=len(names), desc=f"{desc}: {names[0]}", unit="phase", file=sys.stderr,
               leave=False, delay=DELAY_SECONDS, bar_format="{desc} ({n}/{total} done) "
                                                            "[{elapsed}]")
    coming = iter(names[1:])

    def next_phase() -> None:
        bar.set_description_str(f"{desc}: {next(coming, 'done')}", refresh=False)
        bar.update()

    try:
        yield next_phase
    finally:
        bar.close()
