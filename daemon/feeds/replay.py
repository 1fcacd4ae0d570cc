"""Replay feed: bar-derived quotes from a bar file, handed over in large batches."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import numpy as np
import structlog

from stairway.core.bar_files import load_period_bars, select_warm_range
from stairway.core.bar_ticks import bars_to_ticks
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
    """Async iterator of tick batches. Unpaced by default; with ``speed`` = k > 0, a batch is
    handed over when (its first quote's time - the first quote's time) / k of wall time has
    passed, so timers, watchdogs, scheduled jobs and control files run as they would live."""

    source = "bar-derived"
    last_batch_backfilled = False

    def stale_instruments(self, now: float | None = None) -> list[str]:
        """A replay's prices are never stale (it hands over recorded time)."""
        return []

    def __init__(self, ticks: np.ndarray, batch_ticks: int, speed: float = 0.0) -> None:
        self.quotes, self.batch_ticks, self.speed = ticks, batch_ticks, speed
        self._t0_wall = 0.0
        self._t0_tick = int(ticks["ts_ns"][0]) if len(ticks) else 0

    def now_ns(self, closing_ts_ns: int) -> int:
        """The decision clock of a replay: replay time, the closing quote's own time, paced or
        not. (Wall-derived time would turn 1 ms of loop lag into speed x 1 ms of 'quote gap'
        and block entries as stale data at high speeds.)"""
        return closing_ts_ns

    def replay_now_ns(self) -> int:
        """Replay time now, from the wall clock (paced replays)."""
        return self._t0_tick + int((time.monotonic() - self._t0_wall) * self.speed * 1e9)

    async def batches(self) -> AsyncIterator[np.ndarray]:
        self._t0_wall = time.monotonic()
        if not self.speed:
            for start in range(0, len(self.quotes), self.batch_ticks):
                await asyncio.sleep(0)  # hand control back to the loop (signals, other tasks)
                yield self.quotes[start : start + self.batch_ticks]
            return
        # Paced: hand over the quotes whose time has come (at most batch_ticks at once), then
        # sleep until the next one is due; a large batch_ticks never delivers the future early.
        ts = self.quotes["ts_ns"]
        i, n = 0, len(self.quotes)
        while i < n:
            j = self._due(ts, i)
            if j <= i:
                due = self._t0_wall + (int(ts[i]) - self._t0_tick) / 1e9 / self.speed
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                j = max(i + 1, self._due(ts, i))
            else:
                await asyncio.sleep(0)
            yield self.quotes[i:j]
            i = j

    def _due(self, ts: np.ndarray, i: int) -> int:
        """End of the quotes due by now, from ``i``, at most batch_ticks of them."""
        now_tick = self.replay_now_ns()
        return min(int(np.searchsorted(ts, now_tick, "right")), i + self.batch_ticks)

    ticks = batches  # the Feed protocol's name
