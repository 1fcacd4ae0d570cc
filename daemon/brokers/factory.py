"""Builds the broker adapter and its price feed named by ``[broker]`` in the daemon config."""

from __future__ import annotations

from typing import Any

from stairway.core.errors import ConfigError
from stairway.core.redaction import register_secret
from stairway.daemon.brokers.credentials import read_secret
from stairway.daemon.config import DaemonConfig


def make_broker_and_feed(cfg: DaemonConfig, environ: dict[str, str] | None = None) -> tuple[Any, Any]:
    kind = cfg.broker.kind
    if kind == "oanda":
        from stairway.daemon.brokers.oanda.broker import OandaBroker
        from stairway.daemon.brokers.oanda.feed import OandaFeed

        o = cfg.broker.oanda
        token = read_secret(o.token_credential, o.token_env, environ)
        account = read_secret(o.account_credential, o.account_env, environ)
        broker = OandaBroker(o.rest_url, account, token, o.stream_url, o.request_timeout_secs)
        feed = OandaFeed(
            broker,
            [cfg.instrument.symbol],
            o.heartbeat_timeout_secs,
            o.backoff_base_secs,
            o.backoff_cap_secs,
            o.price_stale_secs,
        )
        return broker, feed
    if kind == "ib":
        from stairway.daemon.brokers.ib.broker import IBBroker
        from stairway.daemon.brokers.ib.feed import IBFeed

        register_secret(cfg.broker.ib.account)  # an account number is not for logs either
        broker = IBBroker(cfg.broker.ib, cfg.instrument.symbol)
        return broker, IBFeed(broker, cfg.broker.ib.price_stale_secs)
    raise ConfigError(f"broker.kind = {kind!r}: no live adapter (paper replays bundled bars)")
