"""OANDA's transaction stream: an ORDER_FILL (ours or a manual trade at the broker) wakes
reconciliation at once instead of at the next 5-minute pass. The stream only triggers; the
fills themselves are always read through transactions/sinceid (deduplicated, in order),
so a missed or repeated stream line changes nothing. Watchdog: no line (heartbeats
included) for ``timeout_secs`` -> reconnect, with capped jittered backoff."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

from stairway.core.errors import TransientError
from stairway.daemon.aio import backoff_delay, next_within, sleep_or_stop
from stairway.daemon.brokers.oanda.broker import OandaBroker

log = structlog.get_logger("oanda_transactions")


class TransactionWatcher:
    def __init__(
        self,
        broker: OandaBroker,
        on_fill: Callable[[], None],
        timeout_secs: float = 10.0,
        backoff_base_secs: float = 0.5,
        backoff_cap_secs: float = 30.0,
    ) -> None:
        self.broker, self.on_fill = broker, on_fill
        self.timeout, self.base, self.cap = timeout_secs, backoff_base_secs, backoff_cap_secs
        self.fills_seen = 0
        self.reconnects = 0

    async def run(self, stop: asyncio.Event) -> None:
        attempt = 0
        while not stop.is_set():
            stream = self.broker.stream_transactions().__aiter__()
            try:
                while not stop.is_set():
                    try:
                        tx = await next_within(stream, self.timeout, stop)
                    except TimeoutError:
                        tx = None
                    if tx is None:
                        break
                    attempt = 0
                    if tx.get("type") == "ORDER_FILL":
                        self.fills_seen += 1
                        self.on_fill()
                reason = "no line" if not stop.is_set() else "stopping"
            except StopAsyncIteration:
                reason = "stream ended"
            except TransientError as e:
                reason = str(e)
            finally:
                await stream.aclose()
            if stop.is_set():
                return
            attempt += 1
            self.reconnects += 1
            delay = backoff_delay(attempt, self.base, self.cap)
            log.warning("transaction_stream_reconnecting", reason=reason, attempt=attempt, delay_secs=round(delay, 3))
            await sleep_or_stop(stop, delay)
