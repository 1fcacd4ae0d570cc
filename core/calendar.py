"""Trading hours, shared by the daemon's risk engine and the trainer's environment.

FX: Sunday 17:00 to Friday 17:00 New York time. US equities: 09:30-16:00 New York,
Monday to Friday. Holidays close the whole local day. ``always`` never closes.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import numpy as np

NY = ZoneInfo("America/New_York")


@functools.lru_cache(maxsize=4096)
def _open_at_minute(minute: int, market: str, holidays: tuple[dt.date, ...]) -> bool:
    return _market_open(minute * 60_000_000_000, market, holidays)


@dataclass(frozen=True)
class Calendar:
    """One instrument's trading hours: its market's (``fx``, ``us_equity``, ``always``) and
    the holidays that close whole local days."""

    market: str = "fx"
    holidays: tuple[dt.date, ...] = ()

    def is_open(self, ts_ns: int) -> bool:
        return market_open(ts_ns, self.market, self.holidays)


def market_open(ts_ns: int, market: str, holidays: tuple[dt.date, ...] = ()) -> bool:
    """Cached per minute: the calendar never changes inside one."""
    if market == "always":
        return True
    return _open_at_minute(ts_ns // 60_000_000_000, market, tuple(holidays))


def _market_open(ts_ns: int, market: str, holidays: tuple[dt.date, ...] = ()) -> bool:
    if market == "always":
        return True
    t = dt.datetime.fromtimestamp(ts_ns / 1e9, dt.UTC).astimezone(NY)
    if t.date() in holidays:
        return False
    wd, minutes = t.weekday(), t.hour * 60 + t.minute
    if market == "us_equity":
        return wd < 5 and 570 <= minutes < 960
    if market != "fx":
        raise ValueError(f"unknown market calendar {market!r}")
    if wd == 5:
        return False
    if wd == 4:
        return minutes < 17 * 60
    if wd == 6:
        return minutes >= 17 * 60
    return True


def open_mask(ts_ns: np.ndarray, market: str, holidays: tuple[dt.date, ...] = ()) -> np.ndarray:
    return np.array([market_open(int(t), market, holidays) for t in ts_ns], dtype=np.bool_)
