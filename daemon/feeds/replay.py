"""Replay feed: bar-derived quotes from a bar file, handed over in large batches."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import numpy as np
import structlog

from stairway.core.bar_files import load_period_bars, select_warm_range
from stairway.core.bar_ticks import bars_to_ticks
from stairway.core.broker import FeedStatus
from stairway.core.config import MarketConfig

log = structlog.get_logger("replay")


def replay_ticks(cfg: MarketConfig, start_ns: int, end_ns: int, warmup_bars: int = 0) -> np.ndarray:
    """Bar-derived quotes for [start, end). A range with fewer than warmup_bars + 3 bars is
    refused naming the range, the file's span and the warm-up (the daemon passes its
    features' warm-up, so a replay that could never decide does not start)."""
    raw, report = load_period_bars(cfg.data.bars_csv, cfg.bars.period_minutes, cfg.bars.max_jump, cfg.instrument.symbol)
    log.info("bar_file_loaded", **report.log_fields())
    bars = select_warm_range(cfg.data.bars_csv, raw, start_ns, end_ns, warmup_bars, "replay.range")
    return bars_to_ticks(
        bars, cfg.bars.period_ns, cfg.data.bars_side, cfg.data.modelled_spread_pips * cfg.instrument.pip_size
    )


class ReplayFeed:
    """Async iterator of (instrument, tick batch). Unpaced by default; with ``speed`` = k > 0,
    a batch is handed over when (its first quote's time - the first quote's time) / k of wall
    time has passed, so timers, watchdogs, scheduled jobs and control files run as they would
    live.

    Several instruments (a portfolio): their quotes are merged in time order (a tie in the
    order the instruments were given) and cut before every quote that closes a bar of any
    instrument (the first quote in a later ``period_ns`` bucket): a decision then sees every
    instrument's quotes, fills and positions up to its closing quote and nothing after it,
    as it would live. Between two cuts each instrument's quotes go over as one batch, the
    closing instrument's first; the account's tiers see the others' equity as of their last
    batch (as they do live, batch by batch). ``chunk_end`` is True for the last batch of each
    ``batch_ticks`` merged quotes: the daemon commits its rows there (every batch, live)."""

    source = "bar-derived"
    last_batch_backfilled = False
    chunk_end = True
    replay_ts_ns = 0  # the last quote of the batch being handled (log lines' replay_time)
    status = FeedStatus.CONNECTED  # a replay never loses its source

    def stale_instruments(self, now: float | None = None) -> list[str]:
        """A replay's prices are never stale (it hands over recorded time)."""
        return []

    def __init__(
        self, quotes: dict[str, np.ndarray], batch_ticks: int, speed: float = 0.0, period_ns: int = 60 * 10**9
    ) -> None:
        if not quotes:
            raise ValueError("a replay needs the quotes of at least one instrument")
        self.instruments = list(quotes)
        self.batch_ticks, self.speed = batch_ticks, speed
        arrays = list(quotes.values())
        if len(arrays) == 1:
            self.quotes, self.which = arrays[0], None
        else:
            merged = np.concatenate(arrays)
            which = np.concatenate([np.full(len(q), k, dtype=np.int16) for k, q in enumerate(arrays)])
            order = np.argsort(merged["ts_ns"], kind="stable")
            self.quotes, self.which = merged[order], which[order]
            self.cuts = self._closing_quotes(period_ns)
        self._t0_wall = 0.0
        self._ts = np.ascontiguousarray(self.quotes["ts_ns"])  # read per batch: a plain array, not a field view
        self._t0_tick = int(self._ts[0]) if len(self._ts) else 0

    def __len__(self) -> int:
        return len(self.quotes)

    def __repr__(self) -> str:  # as log lines show it where core.logs' processor is not configured
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.replay_ts_ns // 10**9))

    def now_ns(self, closing_ts_ns: int) -> int:
        """The decision clock of a replay: replay time, the closing quote's own time, paced or
        not. (Wall-derived time would turn 1 ms of loop lag into speed x 1 ms of 'quote gap'
        and block entries as stale data at high speeds.)"""
        return closing_ts_ns

    def replay_now_ns(self) -> int:
        """Replay time now, from the wall clock (paced replays)."""
        return self._t0_tick + int((time.monotonic() - self._t0_wall) * self.speed * 1e9)

    def _closing_quotes(self, period_ns: int) -> np.ndarray:
        """Merged positions of every quote that closes a bar of its instrument, sorted."""
        ts = self.quotes["ts_ns"]
        out = []
        for k in range(len(self.instruments)):
            idx = np.flatnonzero(self.which == k)
            bucket = ts[idx] // period_ns
            out.append(idx[1:][bucket[1:] != bucket[:-1]])
        return np.unique(np.concatenate(out))

    def _split(self, i: int, j: int) -> Iterator[tuple[str, np.ndarray]]:
        """Quotes [i, j): one batch (one instrument), or a portfolio's batches between bar closes."""
        if self.which is None:
            self.chunk_end = True
            self.replay_ts_ns = int(self._ts[min(j, len(self._ts)) - 1])
            yield self.instruments[0], self.quotes[i:j]
            return
        lo, hi = np.searchsorted(self.cuts, [i, j], "right")
        bounds = [i, *self.cuts[lo:hi].tolist(), j]
        parts = []
        for a, b in zip(bounds, bounds[1:]):
            if a >= b:
                continue
            which, quotes = self.which[a:b], self.quotes[a:b]
            first = int(which[0])
            if (which == first).all():
                parts.append((self.instruments[first], quotes))
                continue
            for k in (first, *(k for k in range(len(self.instruments)) if k != first)):
                mine = which == k
                if mine.any():
                    parts.append((self.instruments[k], quotes[mine]))
        for n, part in enumerate(parts):
            self.chunk_end = n == len(parts) - 1
            self.replay_ts_ns = int(part[1]["ts_ns"][-1])
            yield part

    async def batches(self) -> AsyncIterator[tuple[str, np.ndarray]]:
        """The quotes in batches; while one is handled, log events carry its last quote's time
        (``replay_time`` next to the wall ``timestamp``: core.logs). One generator: a replay
        handed over a quote at a time yields once per quote."""
        structlog.contextvars.bind_contextvars(replay_clock=self)
        try:
            self._t0_wall = time.monotonic()
            if not self.speed:
                handed, n, step, ts = 0.0, len(self.quotes), self.batch_ticks, self._ts
                one = self.instruments[0] if self.which is None else None
                for start in range(0, n, step):
                    if (now := time.perf_counter()) - handed >= 0.001:  # at most every ms, not every batch:
                        await asyncio.sleep(0)  # control back to the loop (signals, other tasks)
                        handed = now
                    if one is not None:  # one instrument: the batch as it is (a live feed's path, unsplit)
                        end = min(start + step, n)
                        self.replay_ts_ns = ts.item(end - 1)
                        yield one, self.quotes[start:end]
                        continue
                    for part in self._split(start, start + step):
                        yield part
                return
            # Paced: hand over the quotes whose time has come (at most batch_ticks at once), then
            # sleep until the next one is due; a large batch_ticks never delivers the future early.
            i, n = 0, len(self.quotes)
            while i < n:
                j = self._due(self._ts, i)
                if j <= i:
                    due = self._t0_wall + (int(self._ts[i]) - self._t0_tick) / 1e9 / self.speed
                    await asyncio.sleep(max(0.0, due - time.monotonic()))
                    j = max(i + 1, self._due(self._ts, i))
                else:
                    await asyncio.sleep(0)
                for part in self._split(i, j):
                    yield part
                i = j
        finally:
            structlog.contextvars.unbind_contextvars("replay_clock")

    def _due(self, ts: np.ndarray, i: int) -> int:
        """End of the quotes due by now, from ``i``, at most batch_ticks of them."""
        now_tick = self.replay_now_ns()
        return min(int(np.searchsorted(ts, now_tick, "right")), i + self.batch_ticks)

    ticks = batches  # the Feed protocol's name
