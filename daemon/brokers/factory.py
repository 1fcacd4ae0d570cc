"""Builds the live adapter bundle named by ``[broker]`` in the daemon config: the broker, its
price feed, and the extra tasks it needs, by name. Adding a broker touches its adapter and
one entry in ``BUILDERS``; the app never asks an adapter what it can do."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from stairway.core.broker import Broker, Feed
from stairway.core.errors import ConfigError
from stairway.core.redaction import register_secret
from stairway.daemon.brokers.credentials import read_secret
from stairway.daemon.config import DaemonConfig

# an extra task: (wake reconciliation, stop) -> the coroutine to run for the daemon's lifetime
ExtraTask = Callable[[Callable[[], None], asyncio.Event], Coroutine[Any, Any, None]]


@dataclass
class AdapterBundle:
    broker: Broker
    feed: Feed
    tasks: dict[str, ExtraTask] = field(default_factory=dict)
    parts: dict[str, Any] = field(default_factory=dict)  # what the tasks run on, by name (status, tests)


def _oanda(cfg: DaemonConfig, environ: dict[str, str] | None) -> AdapterBundle:
    from stairway.daemon.brokers.oanda.broker import OandaBroker
    from stairway.daemon.brokers.oanda.feed import OandaFeed
    from stairway.daemon.brokers.oanda.transactions import TransactionWatcher

    o = cfg.broker.oanda
    token = read_secret(o.token_credential, o.token_env, environ)
    account = read_secret(o.account_credential, o.account_env, environ)
    broker = OandaBroker(o.rest_url, account, token, o.stream_url, o.request_timeout_secs)
    feed = OandaFeed(
        broker,
        [leg.symbol for leg in cfg.legs(look_on_disk=False)],
        o.heartbeat_timeout_secs,
        o.backoff_base_secs,
        o.backoff_cap_secs,
        o.price_stale_secs,
    )

    watcher = TransactionWatcher(
        broker, lambda: None, o.heartbeat_timeout_secs, o.backoff_base_secs, o.backoff_cap_secs
    )

    def transactions(wake: Callable[[], None], stop: asyncio.Event):
        """The transaction stream: every fill wakes reconciliation at once."""
        watcher.on_fill = wake
        return watcher.run(stop)

    return AdapterBundle(broker, feed, {"transactions": transactions}, {"transactions": watcher})


def _ib(
    cfg: DaemonConfig, environ: dict[str, str] | None, ib: Any = None, clock: Callable[[], int] | None = None
) -> AdapterBundle:
    """``ib``: the ib_async client to use (default: a new ``IB()``); ``clock``: the quotes'
    time (default: ib_async's arrival time; a test's gateway emulator gives its own)."""
    from stairway.daemon.brokers.ib.broker import IBBroker
    from stairway.daemon.brokers.ib.feed import IBFeed

    register_secret(cfg.broker.ib.account)  # an account number is not for logs either
    legs = cfg.legs(look_on_disk=False)
    contracts = {leg.symbol: leg.cfg.broker.ib for leg in legs}  # one contract per instrument
    broker = IBBroker(cfg.broker.ib, contracts, ib=ib)
    return AdapterBundle(broker, IBFeed(broker, cfg.broker.ib.price_stale_secs, clock=clock))


ib_bundle = _ib


BUILDERS: dict[str, Callable[[DaemonConfig, dict[str, str] | None], AdapterBundle]] = {"oanda": _oanda, "ib": _ib}


def make_adapters(cfg: DaemonConfig, environ: dict[str, str] | None = None) -> AdapterBundle:
    build = BUILDERS.get(cfg.broker.kind)
    if build is None:
        raise ConfigError(f"broker.kind = {cfg.broker.kind!r}: no live adapter (paper replays bundled bars)")
    return build(cfg, environ)
