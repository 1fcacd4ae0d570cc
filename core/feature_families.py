"""Built-in feature families, registered as plug-ins (core.feature_plugins) so they pass the
same look-ahead and daemon/trainer parity checks as a user's own. Add one to a model with
``features.extra = ["mtf", ...]``; ``[features.params.<name>]`` overrides its parameters.

- ``mtf``: multi-timeframe candles of the same bars. For each horizon H in
  ``horizons_minutes`` (default 240 and 1440: 4-hour and daily, UTC-aligned; H must be a
  whole number of bars and divide a day, or be whole days), four columns named ``h4_*`` /
  ``d1_*``: ``prev_ret``, the log return of the previous H-candle (open to close);
  ``prev_range``, its high-low range; ``ret``, the current candle's return to date (its
  open to this bar's close); ``pos``, this close's position in the current candle's range to
  date, in [-1, 1]. Returns are divided by sigma * sqrt(bars), sigma being the std of the
  last 2H of one-bar log returns, and clipped to [-5, 5]; the range is squashed to [0, 1)
  as (2/pi) atan(range / close / (sigma sqrt(bars)) / 3). Warm-up: 2H of bars + 1.
- ``tod_harmonics``: sin and cos of k times the angle of the bar's open in the UTC day for
  each k in ``harmonics`` (default 2, 3), so a network can pick out hours that the first
  harmonic (the base ``tod_sin``/``tod_cos``) blurs. Warm-up: 1 bar.

The base features (core.features) already hold the volatility-normalised returns
(``ret_<k>``) and the first harmonics of time of day and day of week.
"""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np

from stairway.core.errors import ConfigError
from stairway.core.feature_plugins import NS_PER_MINUTE, Bars, feature
from stairway.core.features import _ret_std

DAY_MINUTES = 1440


def _bars_per(period: int, h: int) -> int:
    if h <= period or h % period or not (DAY_MINUTES % h == 0 or h % DAY_MINUTES == 0):
        raise ConfigError(
            f"features.params.mtf: horizon {h} minutes must be longer than and a multiple of the "
            f"{period}-minute bar, and divide a day or be whole days"
        )
    return h // period


def _mtf_warmup(period: int, p: dict[str, Any]) -> int:
    return 2 * max(_bars_per(period, h) for h in p["horizons_minutes"]) + 1


def _label(h: int) -> str:
    return f"d{h // DAY_MINUTES}" if h % DAY_MINUTES == 0 else (f"h{h // 60}" if h % 60 == 0 else f"m{h}")


def _mtf_columns(period: int, p: dict[str, Any]) -> tuple[str, ...]:
    hs = p["horizons_minutes"]
    if not hs or len(set(hs)) != len(hs):
        raise ConfigError(f"features.params.mtf: horizons_minutes = {list(hs)} must be distinct and non-empty")
    return tuple(f"{_label(h)}_{c}" for h in hs for c in ("prev_ret", "prev_range", "ret", "pos"))


@numba.njit(cache=True)
def _candle(ts, h, lo, end, bucket_ns):  # type: ignore[no-untyped-def]
    """(first bar, high, low) of the candle of bar ``end``, to ``end``: its bars are the ones
    before it in the same UTC-aligned bucket."""
    b = ts[end] // bucket_ns
    s, hi, low = end, h[end], lo[end]
    while s > 0 and ts[s - 1] // bucket_ns == b:
        s -= 1
        hi = max(hi, h[s])
        low = min(low, lo[s])
    return s, hi, low


@numba.njit(cache=True)
def _mtf_kernel(ts, o, h, lo, c, bucket_ns, m, out):  # type: ignore[no-untyped-def]
    for t in range(ts.shape[0]):
        if t < m:
            for j in range(4):
                out[t, j] = np.nan
            continue
        sig = _ret_std(c, t, m)
        s, hi, low = _candle(ts, h, lo, t, bucket_ns)
        out[t, 2] = min(5.0, max(-5.0, math.log(c[t] / o[s]) / (sig * math.sqrt(t - s + 1))))
        out[t, 3] = 0.0 if hi == low else 2.0 * (c[t] - low) / (hi - low) - 1.0
        ps, phi, plo = _candle(ts, h, lo, s - 1, bucket_ns)  # the previous candle, whole
        scale = sig * math.sqrt(s - ps)
        out[t, 0] = min(5.0, max(-5.0, math.log(c[s - 1] / o[ps]) / scale))
        out[t, 1] = (2.0 / math.pi) * math.atan((phi - plo) / c[s - 1] / scale / 3.0)


@feature("mtf", warmup_bars=_mtf_warmup, columns=_mtf_columns, horizons_minutes=(240, DAY_MINUTES))
def mtf(bars: Bars, horizons_minutes: tuple[int, ...] = (240, DAY_MINUTES)) -> np.ndarray:
    """4-hour and daily candles of the same bars: previous candle's return and range, the
    current one's return to date and position in its range."""
    n = len(bars)
    out = np.empty((n, 4 * len(horizons_minutes)))
    ts = np.ascontiguousarray(bars.ts_ns, dtype=np.int64)
    o, h, lo, c = (np.ascontiguousarray(a, dtype=np.float64) for a in (bars.open, bars.high, bars.low, bars.close))
    for k, hz in enumerate(horizons_minutes):
        m = 2 * _bars_per(bars.period_minutes, hz)
        block = np.empty((n, 4))
        _mtf_kernel(ts, o, h, lo, c, hz * NS_PER_MINUTE, m, block)
        out[:, 4 * k : 4 * k + 4] = block
    return out


def _tod_columns(period: int, p: dict[str, Any]) -> tuple[str, ...]:
    ks = p["harmonics"]
    if not ks or any(not isinstance(k, int) or k < 2 for k in ks):
        raise ConfigError(f"features.params.tod_harmonics: harmonics = {list(ks)} must be whole numbers >= 2")
    return tuple(f"tod{k}_{f}" for k in ks for f in ("sin", "cos"))


@feature("tod_harmonics", warmup_bars=1, columns=_tod_columns, harmonics=(2, 3))
def tod_harmonics(bars: Bars, harmonics: tuple[int, ...] = (2, 3)) -> np.ndarray:
    """Higher harmonics of the bar's open time in the UTC day."""
    minute = (bars.ts_ns % (DAY_MINUTES * NS_PER_MINUTE)) // NS_PER_MINUTE
    angle = 2.0 * np.pi * minute / DAY_MINUTES
    cols = []
    for k in harmonics:
        cols += [np.sin(k * angle), np.cos(k * angle)]
    return np.stack(cols, axis=1)
