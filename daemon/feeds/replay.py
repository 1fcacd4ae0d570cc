"""Replay feed: bar-derived quotes from a bar file, handed over in large batches."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import numpy as np
import structlog

from core.bar_files import load_period_bars, select_range
from core.bar_ticks import bars_to_ticks
from core.config import MarketConfig
from core.errors import DataError


log = structlog.get_logger("replay")


def replay_ticks(cfg: MarketConfig, start_ns: int, end_ns: int) -> np.ndarray:
    raw, report = load_period_bars(cfg.data.bars_csv, cfg.bars.period_minutes, cfg.bars.max_jump)
    log.info("bar_file_loaded", **report.log_fields())
    bars = select_range(raw, start_ns, end_ns)
    if len(bars) == 0:
        raise DataError(f"{cfg.data.bars_csv}: no bars between the replay's start and end")
    return bars_to_ticks(bars, cfg.bars.period_ns, cfg.data.bars_side,
                         cfg.data.modelled_spread_pips * cfg.instrument.pip_size)


class ReplayFeed:
    """Async iterator of tick batches. Unpaced by default; with ``speed`` = k > 0, a batch is
    handed over when (its first quote's time - the first quote's time) / k of wall time has
    passed, so timers, watchdogs, scheduled jobs and control files run as they would live."""

    source = "bar-derived"

    def __init__(self, ticks: np.ndarray, batch_ticks: int, speed: float = 0.0) -> None:
        self.quotes, self.batch_ticks, self.speed = ticks, batch_ticks, speed
        self._t0_wall = 0.0
        self._t0_tick = int(ticks["ts_ns"][0]) if len(ticks) else 0

    def now_ns(self, closing_ts_ns: int) -> int:
        """Replay time at a decision: wall-clock replay time when paced (so a slow loop shows
        up as stale data), else the closing quote's own time."""
        if not self.speed:
            return closing_ts_ns
        return self._t0_tick + int((time.monotonic() - self._t0_wall) * self.speed * 1e9)

    async def batches(self) -> AsyncIterator[np.ndarray]:
        self._t0_wall = time.monotonic()
        for start in range(0, len(self.quotes), self.batch_ticks):
            batch = self.quotes[start : start + self.batch_ticks]
            if self.speed:
                due = self._t0_wall + (int(batch["ts_ns"][0]) - self._t0_tick) / 1e9 / self.speed
                await asyncio.sleep(max(0.0, due - time.monotonic()))
            else:
                await asyncio.sleep(0)  # hand control back to the loop (signals, other tasks)
            yield batch

    ticks = batches  # the Feed protocol's name
