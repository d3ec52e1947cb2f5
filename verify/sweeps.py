"""Grid points as Ray tasks: the one way rawc runs work side by side (fuzz campaigns, the
phase grid, the transience pair).

``ray_map(function, calls)`` starts a local Ray instance (``num_cpus`` workers; default: every
core) or joins the cluster at ``address`` (``ray start --head`` on one machine, ``ray start
--address HEAD:6379`` on the others; every node needs rawc installed), runs ``function(*call)``
for every call as a task of one CPU, and yields the results as they finish. An instance it
started is shut down when the generator ends or is closed.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any


def ray_map(function: Callable[..., Any], calls: Sequence[tuple], *, address: str | None = None,
            num_cpus: int | None = None) -> Iterator[Any]:
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(address=address, num_cpus=None if address else num_cpus,
                 include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        remote = ray.remote(num_cpus=1)(function)
        pending = [remote.remote(*call) for call in calls]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            yield ray.get(done[0])
    finally:
        if started:
            ray.shutdown()
