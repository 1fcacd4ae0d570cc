"""IB quotes: reqMktData bid/ask through ``pendingTickersEvent`` into TICK_DTYPE batches.

Subscribes on every (re)connect (the broker's ``on_connected``); quotes with a missing or
non-positive side are skipped. ``stale_instruments()`` names the instrument when no quote
arrived for ``price_stale_secs``; ``status`` follows the broker's link.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator

import numpy as np

from stairway.core.broker import FeedStatus
from stairway.core.types import TICK_DTYPE
from stairway.daemon.brokers.ib.broker import IBBroker, _ts_ns


class IBFeed:
    def __init__(self, broker: IBBroker, price_stale_secs: float = 30.0, max_batch: int = 1024) -> None:
        self.broker, self.price_stale_secs, self.max_batch = broker, price_stale_secs, max_batch
        self.instruments = [broker.instrument]
        self.queue: asyncio.Queue[tuple[int, float, float]] = asyncio.Queue(maxsize=100_000)
        self.ticker = None
        self.subscriptions = 0
        self.dropped = 0
        self.last_price_monotonic = time.monotonic()
        broker.on_connected.append(self._subscribe)
        broker.ib.pendingTickersEvent += self._on_tickers
        self.reconnects = 0
        self.last_batch_backfilled = False  # IB sends quotes only

    @property
    def status(self) -> FeedStatus:
        return FeedStatus.CONNECTED if self.broker.link_up else FeedStatus.DISCONNECTED

    def stale_instruments(self, now: float | None = None) -> list[str]:
        now = time.monotonic() if now is None else now
        return self.instruments if now - self.last_price_monotonic > self.price_stale_secs else []

    def _subscribe(self) -> None:
        self.ticker = self.broker.ib.reqMktData(self.broker.contract)
        self.subscriptions += 1
        self.reconnects = self.broker.reconnects

    def _on_tickers(self, tickers) -> None:
        for t in tickers:
            if not self.broker._mine(t.contract):
                continue
            bid, ask = t.bid, t.ask
            if t.time is None or not (bid > 0 and ask > 0) or math.isnan(bid) or math.isnan(ask):
                continue
            try:
                self.queue.put_nowait((_ts_ns(t.time), float(bid), float(ask)))
            except asyncio.QueueFull:
                self.dropped += 1

    async def ticks(self) -> AsyncIterator[np.ndarray]:
        if self.ticker is None and self.broker.ib.isConnected():
            self._subscribe()
        while True:
            first = await self.queue.get()
            rows = [first]
            while not self.queue.empty() and len(rows) < self.max_batch:
                rows.append(self.queue.get_nowait())
            self.last_price_monotonic = time.monotonic()
            yield np.array(rows, dtype=TICK_DTYPE)
