"""OANDA pricing feed: PRICE lines to TICK_DTYPE batches, with watchdogs, reconnects and
gap backfill.

- Stream watchdog: no line (price or heartbeat) for ``heartbeat_timeout_secs`` -> the
  stream is treated as dead and reopened.
- Price watchdog: ``stale_instruments()`` names every instrument without a PRICE for
  ``price_stale_secs`` (heartbeats do not count); the daemon blocks entries for it while
  its market is open.
- Reconnects back off exponentially with jitter, capped; new connections are limited to
  2/s by the adapter.
- Backfill: after a reconnect, per instrument, the quotes missed between the last price before the cut
  and the first one after it are fetched as S5 bid/ask candles and passed on first (as
  bar-derived quotes, four per candle), so bars spanning the gap are built from data.
- Non-tradeable prices (weekend, halts) are counted and not passed on as quotes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import numpy as np
import structlog

from stairway.core.broker import FeedStatus
from stairway.core.errors import TRANSIENT, BadPayload, TransientError
from stairway.core.types import TICK_DTYPE
from stairway.daemon.aio import backoff_delay, next_within
from stairway.daemon.brokers.oanda.broker import OandaBroker
from stairway.daemon.brokers.oanda.parsing import PriceLine

log = structlog.get_logger("oanda_feed")
BACKFILL_MIN_GAP_NS = 5_000_000_000  # below one S5 candle there is nothing to fetch


class OandaFeed:
    def __init__(
        self,
        broker: OandaBroker,
        instruments: list[str],
        heartbeat_timeout_secs: float = 10.0,
        backoff_base_secs: float = 0.5,
        backoff_cap_secs: float = 30.0,
        price_stale_secs: float = 30.0,
        backfill: bool = True,
    ) -> None:
        self.broker, self.instruments = broker, list(instruments)
        self.timeout, self.base, self.cap = heartbeat_timeout_secs, backoff_base_secs, backoff_cap_secs
        self.price_stale_secs, self.backfill = price_stale_secs, backfill
        self.status = FeedStatus.DISCONNECTED
        self.status_since = time.monotonic()
        self.reconnects = 0
        self.non_tradeable = 0
        self.backfilled = 0
        self.chunk_end = True  # every batch is committed when handled
        self.last_batch_backfilled = False  # candle-derived quotes: the recorder skips them
        self.last_drop_monotonic: float | None = None
        self.last_price_monotonic: dict[str, float] = {}
        self.last_price_ts: dict[str, int] = {}
        self._started = time.monotonic()

    def _set_status(self, status: FeedStatus) -> None:
        if status is not self.status:
            self.status, self.status_since = status, time.monotonic()

    def stale_instruments(self, now: float | None = None) -> list[str]:
        now = time.monotonic() if now is None else now
        return [
            i for i in self.instruments if now - self.last_price_monotonic.get(i, self._started) > self.price_stale_secs
        ]

    async def _backfill(self, inst: str, first_ts: int) -> np.ndarray | None:
        last = self.last_price_ts.get(inst)
        if not self.backfill or last is None or first_ts - last < BACKFILL_MIN_GAP_NS:
            return None
        try:
            quotes = await self.broker.candles(inst, last + 1, first_ts)
        except TRANSIENT as e:
            log.error("backfill_failed", instrument=inst, error=str(e))
            return None
        self.backfilled += len(quotes)
        log.info("backfilled", instrument=inst, quotes=len(quotes), gap_secs=round((first_ts - last) / 1e9, 1))
        return quotes if len(quotes) else None

    async def ticks(self) -> AsyncIterator[tuple[str, np.ndarray]]:
        attempt = 0
        resumed: set[str] = set()  # after a reconnect: instruments whose gap is not backfilled yet
        while True:
            stream = self.broker.stream_prices(self.instruments).__aiter__()
            # the first line may also wait for a connection slot (<= 2 new connections/s)
            first_wait = self.timeout + 1.0 / self.broker.connections.rate
            try:
                while True:
                    item = await next_within(stream, first_wait)
                    first_wait = self.timeout
                    if self.status is not FeedStatus.CONNECTED:
                        self._set_status(FeedStatus.CONNECTED)
                        attempt = 0
                        log.info("feed_connected", reconnects=self.reconnects)
                    if not isinstance(item, PriceLine) or item.instrument not in self.instruments:
                        continue
                    if not item.tradeable:
                        self.non_tradeable += 1
                        continue
                    if item.instrument in resumed:
                        resumed.discard(item.instrument)
                        gap = await self._backfill(item.instrument, item.ts_ns)
                        if gap is not None:
                            self.last_batch_backfilled = True
                            yield item.instrument, gap
                            self.last_batch_backfilled = False
                    self.last_price_monotonic[item.instrument] = time.monotonic()
                    self.last_price_ts[item.instrument] = item.ts_ns
                    batch = np.empty(1, dtype=TICK_DTYPE)
                    batch[0] = (item.ts_ns, item.bid, item.ask)
                    yield item.instrument, batch
            except StopAsyncIteration:
                reason = "stream ended"
            except TimeoutError:
                reason = f"no line for {self.timeout:g} s"
            except (TransientError, BadPayload) as e:
                reason = str(e)
            finally:
                await stream.aclose()
            self._set_status(FeedStatus.DISCONNECTED)
            self.last_drop_monotonic = time.monotonic()
            resumed = set(self.instruments)
            attempt += 1
            self.reconnects += 1
            delay = backoff_delay(attempt, self.base, self.cap)
            log.warning("feed_reconnecting", reason=reason, attempt=attempt, delay_secs=round(delay, 3))
            await asyncio.sleep(delay)
