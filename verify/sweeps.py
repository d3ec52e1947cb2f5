"""Grid points as Ray tasks: the one way rawc runs work side by side (fuzz campaigns, the
phase grid, the transience pair).

``ray_map(function, calls)`` starts a local Ray instance (``num_cpus`` workers; default: every
core) or joins the cluster at ``address`` (``ray start --head`` on one machine, ``ray start
--address HEAD:6379`` on the others; every node needs rawc installed), runs ``function(*call)``
for every call as a task of one CPU, and yields the results as they finish. An instance it
started is shut down when the generator ends or is closed.

Inside a task, ``step_bar`` is Ray's own ``tqdm_ray`` bar: the driver draws every running
task's bar (a phase point's training steps, a transience run's) beside the grid's own bar, so
a point that trains for minutes still shows its progress. Outside Ray it is a plain tqdm bar.
"""
from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from tqdm import tqdm


def ray_map(function: Callable[..., Any], calls: Sequence[tuple], *, address: str | None = None,
            num_cpus: int | None = None) -> Iterator[Any]:
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(address=address, num_cpus=None if address else num_cpus,
                 include_dashboard=False, log_to_driver=True, configure_logging=False)
    try:
        remote = ray.remote(num_cpus=1)(function)
        pending = [remote.remote(*call) for call in calls]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            yield ray.get(done[0])
    finally:
        if started:
            ray.shutdown()


def in_ray_task() -> bool:
    import ray

    return ray.is_initialized() and ray.get_runtime_context().worker.mode == ray.WORKER_MODE


def step_bar(total: int, desc: str, initial: int = 0, enabled: bool = True):
    """A progress bar over ``total`` steps that reaches the user from a Ray task too (drawn
    by the driver) and shows only past 2 s elsewhere; ``enabled=False``: none. Either kind
    takes ``update``, ``set_postfix`` and ``close``."""
    if enabled and in_ray_task():
        return _TaskBar(total, desc, initial)
    return tqdm(total=total, initial=initial, desc=desc, unit="step", file=sys.stderr,
                leave=False, disable=not enabled, delay=2.0)


class _TaskBar:
    """``tqdm_ray``'s bar (no ``initial``, no postfix) behind tqdm's three calls."""

    def __init__(self, total: int, desc: str, initial: int) -> None:
        from ray.experimental import tqdm_ray

        self.desc = desc
        self.bar = tqdm_ray.tqdm(total=total, desc=desc, unit="step")
        if initial:
            self.bar.update(initial)

    def update(self, n: int = 1) -> None:
        self.bar.update(n)

    def set_postfix(self, refresh: bool = False, **values: object) -> None:
        self.bar.set_description(self.desc + " " + " ".join(f"{k}={v}" for k, v in values.items()))

    def close(self) -> None:
        self.bar.close()
