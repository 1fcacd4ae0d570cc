"""One way to get a Ray session, shared by the sweep and the walk-forward: a cluster at
``address``, or a local Ray with ``workers`` CPUs (``address`` None or "local"). A session
this process started is shut down on exit; one already running is left alone.

A cluster address is probed first (a TCP connect, 5 s at most): ``ray.init`` itself waits
minutes for an address where nothing answers, and says little when it gives up."""

from __future__ import annotations

import contextlib
import os
import secrets
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


AUTH_VARS = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


@contextlib.contextmanager
def local_auth() -> Iterator[None]:
    """Token authentication for a Ray this process starts: a fresh random token in this
    process's environment (inherited by the Ray processes it spawns, and by nothing else), so
    a local Ray's ports, which Ray 2.60 opens on every interface whatever node address it is
    given, refuse anyone without the token. The environment is restored afterwards."""
    saved = {k: os.environ.get(k) for k in AUTH_VARS}
    os.environ.pop("RAY_AUTH_TOKEN_PATH", None)
    os.environ["RAY_AUTH_MODE"], os.environ["RAY_AUTH_TOKEN"] = "token", secrets.token_hex(32)
    _reload_auth()
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        _reload_auth()


def _reload_auth() -> None:
    """Ray reads its auth settings once; make it read them again (as Ray's own tests do)."""
    try:
        from ray._raylet import AuthenticationTokenLoader, Config  # type: ignore[attr-defined]
    except ImportError:  # an older Ray without token authentication
        return
    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


@contextlib.contextmanager
def ray_session(address: str | None, workers: int = 2, what: str = "this command") -> Iterator[Any]:
    """A local Ray (``address`` None or "local") listens for this process only: its node
    address is 127.0.0.1 and it requires a token only this process and its workers hold."""
    try:
        import ray
    except ImportError:
        raise ConfigError(f"{what} needs Ray: pip install -c constraints.txt '.[sweep]'") from None
    started_here = not ray.is_initialized()
    with contextlib.ExitStack() as stack:
        if started_here:
            if address in (None, "local"):
                stack.enter_context(local_auth())
                ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
            else:
                probe_address(address, what)
                ray.init(address=address, include_dashboard=False, log_to_driver=False)
        try:
            yield ray
        finally:
            if started_here:
                ray.shutdown()
