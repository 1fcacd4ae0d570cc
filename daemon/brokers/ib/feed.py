"""IB quotes: reqMktData bid/ask through ``pendingTickersEvent`` into TICK_DTYPE batches.

Subscribes on every (re)connect (the broker's ``on_connected``); quotes with a missing or
non-positive side are skipped. Backfill: after a reconnect, the first quote of each
instrument that comes more than a minute after its last one is preceded by the minutes in
between, from 1-minute BID and ASK historical bars (bar-derived quotes, TICKS_PER_BAR per
minute; not recorded), so bars spanning a gateway restart or an outage are built from data. One subscription per contract of the broker (a portfolio
has several); a batch holds one instrument's quotes. ``stale_instruments()`` names every
instrument without a quote for ``price_stale_secs``; ``status`` follows the broker's link.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Callable

import numpy as np
import structlog

from stairway.core.bar_ticks import TICKS_PER_BAR, bar_paths
from stairway.core.broker import FeedStatus
from stairway.core.types import TICK_DTYPE
from stairway.daemon.brokers.ib.broker import IBBroker, _ts_ns

log = structlog.get_logger("ib_feed")
MINUTE_NS = 60_000_000_000


class IBFeed:
    def __init__(
        self,
        broker: IBBroker,
        price_stale_secs: float = 30.0,
        max_batch: int = 1024,
        clock: Callable[[], int] | None = None,
    ) -> None:
        """``clock``: the quote's time (ns) when it arrives; default ib_async's arrival time of the
        ticker's update (IB sends no time with a quote): the same, in wall time."""
        self.broker, self.price_stale_secs, self.max_batch = broker, price_stale_secs, max_batch
        self.clock = clock
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
        self.last_batch_backfilled = False  # True while a backfilled batch is handed over (not recorded)
        self.backfilled = 0
        self.last_ts: dict[str, int] = {}  # the last quote handed over, per instrument
        self._resumed: set[str] = set()  # reconnected: the next quote's gap is backfilled first

    @property
    def status(self) -> FeedStatus:
        return FeedStatus.CONNECTED if self.broker.link_up else FeedStatus.DISCONNECTED

    def stale_instruments(self, now: float | None = None) -> list[str]:
        now = time.monotonic() if now is None else now
        return [i for i in self.instruments if now - self.last_price_monotonic[i] > self.price_stale_secs]

    def _subscribe(self) -> None:
        if self.subscriptions:  # a reconnect: what was missed comes back before the next quote
            self._resumed = set(self.instruments)
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
                ts = self.clock() if self.clock is not None else _ts_ns(t.time)
                self.queue.put_nowait((name, ts, float(bid), float(ask)))
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
            inst = first[0]
            self.last_price_monotonic[inst] = time.monotonic()
            batch = np.array([r[1:] for r in rows], dtype=TICK_DTYPE)
            if inst in self._resumed:
                self._resumed.discard(inst)
                gap = await self._backfill(inst, int(batch["ts_ns"][0]))
                if gap is not None:
                    self.last_batch_backfilled = True
                    yield inst, gap
                    self.last_batch_backfilled = False
            self.last_ts[inst] = int(batch["ts_ns"][-1])
            yield inst, batch

    async def _backfill(self, inst: str, first_ts: int) -> np.ndarray | None:
        last = self.last_ts.get(inst)
        if last is None or first_ts - last < MINUTE_NS:
            return None
        lo = last - last % MINUTE_NS + MINUTE_NS  # whole minutes strictly after the last quote
        try:
            bid = await self.broker.history_bars(inst, 1, "bid", lo, first_ts)
            ask = await self.broker.history_bars(inst, 1, "ask", lo, first_ts)
        except Exception as e:  # history is a help, not a condition: trade on without it
            log.error("backfill_failed", instrument=inst, error=repr(e))
            return None
        quotes = quotes_from_sides(bid, ask, MINUTE_NS)
        quotes = quotes[(quotes["ts_ns"] > last) & (quotes["ts_ns"] < first_ts)]
        self.backfilled += len(quotes)
        log.info("backfilled", instrument=inst, quotes=len(quotes), gap_secs=round((first_ts - last) / 1e9, 1))
        return quotes if len(quotes) else None


def quotes_from_sides(bid: np.ndarray, ask: np.ndarray, period_ns: int) -> np.ndarray:
    """Bar-derived quotes from bid and ask bars of the same times (core.bar_ticks' path,
    TICKS_PER_BAR per bar): the layout OANDA's candle backfill uses."""
    common, bi, ai = np.intersect1d(bid["ts_ns"], ask["ts_ns"], return_indices=True)
    if not len(common):
        return np.empty(0, dtype=TICK_DTYPE)
    b, a = bid[bi], ask[ai]
    pb = bar_paths(b["open"], b["high"], b["low"], b["close"])
    pa = bar_paths(a["open"], a["high"], a["low"], a["close"])
    step = period_ns // TICKS_PER_BAR
    out = np.empty(len(common) * TICKS_PER_BAR, dtype=TICK_DTYPE)
    out["ts_ns"] = (common[:, None] + np.arange(TICKS_PER_BAR)[None, :] * step).ravel()
    out["bid"], out["ask"] = pb.ravel(), pa.ravel()
    return out
