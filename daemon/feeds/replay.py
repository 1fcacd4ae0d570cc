"""Replay feed: bar-derived quotes from a bar file, handed over in large batches."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np
import structlog

from core.bar_files import load_bars, select_range
from core.bar_ticks import bars_to_ticks
from core.config import MarketConfig
from core.errors import DataError


log = structlog.get_logger("replay")


def replay_ticks(cfg: MarketConfig, start_ns: int, end_ns: int) -> np.ndarray:
    raw, report = load_bars(cfg.data.bars_csv)
    log.info("bar_file_loaded", **report.log_fields())
    if report.period_minutes != cfg.bars.period_minutes:
        raise DataError(f"{cfg.data.bars_csv}: bars are {report.period_minutes}-minute but the config says "
                        f"bars.period_minutes = {cfg.bars.period_minutes}")
    bars = select_range(raw, start_ns, end_ns)
    if len(bars) == 0:
        raise DataError(f"{cfg.data.bars_csv}: no bars between the replay's start and end")
    return bars_to_ticks(bars, cfg.bars.period_ns, cfg.data.bars_side,
                         cfg.data.modelled_spread_pips * cfg.instrument.pip_size)


class ReplayFeed:
    """Async iterator of tick batches; paced when ``ticks_per_second`` > 0."""

    source = "bar-derived"

    def __init__(self, ticks: np.ndarray, batch_ticks: int, ticks_per_second: float = 0.0) -> None:
        self.ticks, self.batch_ticks, self.ticks_per_second = ticks, batch_ticks, ticks_per_second

    async def batches(self) -> AsyncIterator[np.ndarray]:
        for start in range(0, len(self.ticks), self.batch_ticks):
            batch = self.ticks[start : start + self.batch_ticks]
            yield batch
            # hand control back to the loop between batches (signals, other tasks)
            await asyncio.sleep(len(batch) / self.ticks_per_second if self.ticks_per_second else 0)
