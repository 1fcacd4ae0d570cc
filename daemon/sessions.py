"""Per-session (UTC day) metrics for the session_metrics table."""

from __future__ import annotations

import time
from dataclasses import dataclass

from stairway.core.types import NS_PER_DAY
from stairway.daemon.rows import SessionMetricsRow


@dataclass
class SessionStats:
    day: int
    equity_open: float
    bars: int = 0
    decisions: int = 0
    holds: int = 0
    orders: int = 0
    fills: int = 0
    equity_close: float = 0.0
    peak: float = 0.0
    max_dd: float = 0.0

    def row(self, run_id: str, instrument: str) -> SessionMetricsRow:
        date = time.strftime("%Y-%m-%d", time.gmtime(self.day * NS_PER_DAY // 10**9))
        return SessionMetricsRow(
            run_id,
            instrument,
            date,
            self.bars,
            self.decisions,
            self.holds,
            self.orders,
            self.fills,
            self.equity_open,
            self.equity_close,
            self.equity_close - self.equity_open,
            100.0 * self.max_dd,
        )


class SessionTracker:
    """Rolls a SessionStats per UTC day; ``on_bar`` returns the finished day's stats, if any."""

    def __init__(self) -> None:
        self.current: SessionStats | None = None

    def on_bar(self, ts_ns: int, equity: float) -> SessionStats | None:
        day = ts_ns // NS_PER_DAY
        done = None
        if self.current is not None and self.current.day != day:
            done, self.current = self.current, None
        if self.current is None:
            prev_close = done.equity_close if done else equity
            self.current = SessionStats(day, prev_close, peak=prev_close)
        s = self.current
        s.bars += 1
        s.equity_close = equity
        s.peak = max(s.peak, equity)
        s.max_dd = max(s.max_dd, (s.peak - equity) / s.peak)
        return done

    def close(self) -> SessionStats | None:
        done, self.current = self.current, None
        return done
