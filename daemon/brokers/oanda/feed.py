"""OANDA pricing feed: PRICE lines to TICK_DTYPE batches, with a watchdog and reconnects.

No line (price or heartbeat) for ``heartbeat_timeout_secs`` -> the stream is treated as
dead and reopened. Reconnects back off exponentially with jitter, capped. Non-tradeable
prices (weekend, halts) are counted and not passed on as quotes.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator

import numpy as np
import structlog

from core.broker import FeedStatus
from core.errors import TransientError
from core.types import TICK_DTYPE
from daemon.brokers.oanda.broker import OandaBroker
from daemon.brokers.oanda.parsing import PriceLine

log = structlog.get_logger("oanda_feed")


class OandaFeed:
    def __init__(self, broker: OandaBroker, instruments: list[str], heartbeat_timeout_secs: float = 10.0,
                 backoff_base_secs: float = 0.5, backoff_cap_secs: float = 30.0, max_batch: int = 256) -> None:
        self.broker, self.instruments = broker, instruments
        self.timeout, self.base, self.cap, self.max_batch = heartbeat_timeout_secs, backoff_base_secs, backoff_cap_secs, max_batch
        self.status = FeedStatus.DISCONNECTED
        self.reconnects = 0
        self.non_tradeable = 0
        self.last_drop_monotonic: float | None = None

    async def ticks(self) -> AsyncIterator[np.ndarray]:
        attempt = 0
        while True:
            stream = self.broker.stream_prices(self.instruments).__aiter__()
            try:
                while True:
                    item = await asyncio.wait_for(stream.__anext__(), self.timeout)
                    if self.status is not FeedStatus.CONNECTED:
                        self.status, attempt = FeedStatus.CONNECTED, 0
                        log.info("feed_connected", reconnects=self.reconnects)
                    if isinstance(item, PriceLine):
                        if not item.tradeable:
                            self.non_tradeable += 1
                            continue
                        batch = np.empty(1, dtype=TICK_DTYPE)
                        batch[0] = (item.ts_ns, item.bid, item.ask)
                        yield batch
            except StopAsyncIteration:
                reason = "stream ended"
            except TimeoutError:
                reason = f"no line for {self.timeout:g} s"
            except TransientError as e:
                reason = str(e)
            finally:
                await stream.aclose()
            self.status = FeedStatus.DISCONNECTED
            self.last_drop_monotonic = time.monotonic()
            attempt += 1
            self.reconnects += 1
            delay = min(self.cap, self.base * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)
            log.warning("feed_reconnecting", reason=reason, attempt=attempt, delay_secs=round(delay, 3))
            await asyncio.sleep(delay)
