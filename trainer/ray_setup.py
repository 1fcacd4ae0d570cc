"""One way to get a Ray session, shared by the sweep and the walk-forward: a cluster at
``address``, or a local Ray with ``workers`` CPUs (``address`` None or "local"). A session
this process started is shut down on exit; one already running is left alone.

A cluster address is probed first (a TCP connect, 5 s at most): ``ray.init`` itself waits
minutes for an address where nothing answers, and says little when it gives up."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from typing import Any

from stairway.core.errors import ConfigError


def probe_address(address: str, what: str, timeout: float = 5.0) -> None:
    """ConfigError naming the address unless something accepts a TCP connection there."""
    if address == "auto":
        return  # Ray finds the cluster this machine belongs to
    hostport = address.split("://", 1)[-1]
    host, sep, port = hostport.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"{what} = {address!r}: expected HOST:PORT of a Ray cluster, 'local' or 'auto'")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        raise ConfigError(f"{what} = {address!r}: no Ray cluster answers there ({e.strerror or e})") from None


@contextlib.contextmanager
def ray_session(address: str | None, workers: int = 2, what: str = "this command") -> Iterator[Any]:
    try:
        import ray
    except ImportError:
        raise ConfigError(f"{what} needs Ray: pip install -c constraints.txt '.[sweep]'") from None
    started_here = not ray.is_initialized()
    if started_here:
        if address in (None, "local"):
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        else:
            probe_address(address, what)
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        if started_here:
            ray.shutdown()
