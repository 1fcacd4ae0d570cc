"""Bar-derived quote ticks: how a bar file is replayed as a stream of quotes.

Each bar becomes four quotes at open, +1/4, +1/2 and +3/4 of its period: open, then the
extreme the bar's shape implies came first (low first for a rising bar, high first for a
falling one), then the other extreme, then close. The file's side is exact; the other side
is modelled with a constant spread. These are *bar-derived* ticks, not recorded ones, and
every summary that shows results on them says so.
"""

from __future__ import annotations

import numpy as np

from core.types import TICK_DTYPE

TICKS_PER_BAR = 4


def bars_to_ticks(bars: np.ndarray, period_ns: int, side: str, spread: float) -> np.ndarray:
    """TICK_DTYPE array of 4 quotes per bar. ``spread`` is in price units."""
    if period_ns % TICKS_PER_BAR:
        raise ValueError(f"bar period {period_ns} ns is not divisible by {TICKS_PER_BAR}")
    n = len(bars)
    o, h, lo, c = bars["open"], bars["high"], bars["low"], bars["close"]
    rising = c >= o
    path = np.empty((n, TICKS_PER_BAR))
    path[:, 0] = o
    path[:, 1] = np.where(rising, lo, h)
    path[:, 2] = np.where(rising, h, lo)
    path[:, 3] = c
    ticks = np.empty(n * TICKS_PER_BAR, dtype=TICK_DTYPE)
    offsets = np.arange(TICKS_PER_BAR, dtype=np.int64) * (period_ns // TICKS_PER_BAR)
    ticks["ts_ns"] = (bars["ts_ns"][:, None] + offsets[None, :]).ravel()
    p = path.ravel()
    if side == "ask":
        ticks["ask"], ticks["bid"] = p, p - spread
    elif side == "bid":
        ticks["bid"], ticks["ask"] = p, p + spread
    elif side == "mid":
        ticks["bid"], ticks["ask"] = p - spread / 2, p + spread / 2
    else:
        raise ValueError(f"side must be ask, bid or mid, not {side!r}")
    return ticks
