"""IB quotes: reqMktData bid/ask through ``pendingTickersEvent`` into TICK_DTYPE batches.

Subscribes on every (re)connect (the broker's ``on_connected``); quotes with a missing or
non-positive side are skipped. One subscription per contract of the broker (a portfolio
has several); a batch holds one instrument's quotes. ``stale_instruments()`` names every
instrument without a quote for ``price_stale_secs``; ``status`` follows the broker's link.
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
        self.instruments = list(broker.contracts)
        self.queue: asyncio.Queue[tuple[str, int, float, float]] = asyncio.Queue(maxsize=100_000)
        self.tickers: dict[str, object] = {}
        self.subscriptions = 0
        self.dropped = 0
        started = time.monotonic()
        self.last_price_monotonic = {i: started for i in self.instruments}
        broker.on_connected.append(self._subscribe)
        broker.ib.pendingTickersEvent += self._on_tickers
        self.reconnects = 0
        self.chunk_end = True  # every batch is committed when handled
        self.last_batch_backfilled = False  # IB sends quotes only

    @property
    def status(self) -> FeedStatus:
        return FeedStatus.CONNECTED if self.broker.link_up else FeedStatus.DISCONNECTED

    @property
    def ticker(self):
        return next(iter(self.tickers.values()), None)

    def stale_instruments(self, now: float | None = None) -> list[str]:
        now = time.monotonic() if now is None else now
        return [i for i in self.instruments if now - self.last_price_monotonic[i] > self.price_stale_secs]

    def _subscribe(self) -> None:
        for name, contract in self.broker.contracts.items():
            self.tickers[name] = self.broker.ib.reqMktData(contract)
        self.subscriptions += 1
        self.reconnects = self.broker.reconnects

    def _on_tickers(self, tickers) -> None:
        for t in tickers:
            name = self.broker.instrument_of(t.contract)
            if name is None:
                continue
            bid, ask = t.bid, t.ask
            if t.time is None or not (bid > 0 and ask > 0) or math.isnan(bid) or math.isnan(ask):
                continue
            try:
                self.queue.put_nowait((name, _ts_ns(t.time), float(bid), float(ask)))
            except asyncio.QueueFull:
                self.dropped += 1

    async def ticks(self) -> AsyncIterator[tuple[str, np.ndarray]]:
        if not self.tickers and self.broker.ib.isConnected():
            self._subscribe()
        held = None  # a quote of another instrument that ended the previous batch
        while True:
            first, held = (held, None) if held is not None else (await self.queue.get(), None)
            rows = [first]
            # one instrument per batch: the run of quotes of the first one's instrument
            while not self.queue.empty() and len(rows) < self.max_batch:
                row = self.queue.get_nowait()
                if row[0] != first[0]:
                    held = row
                    break
                rows.append(row)
            self.last_price_monotonic[first[0]] = time.monotonic()
            yield first[0], np.array([r[1:] for r in rows], dtype=TICK_DTYPE)
