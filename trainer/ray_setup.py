"""One way to get a Ray session, shared by the sweep and the walk-forward: a cluster at
``address``, or a local Ray with ``workers`` CPUs (``address`` None or "local"). A session
this process started is shut down on exit; one already running is left alone."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from stairway.core.errors import ConfigError


@contextlib.contextmanager
def ray_session(address: str | None, workers: int = 2, what: str = "this command") -> Iterator[object]:
    try:
        import ray
    except ImportError:
        raise ConfigError(f"{what} needs Ray: pip install -c constraints.txt '.[sweep]'") from None
    started_here = not ray.is_initialized()
    if started_here:
        if address in (None, "local"):
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        if started_here:
            ray.shutdown()
