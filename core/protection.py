"""Protective stop distance and position size from risk (issue 21 §1, §5), one kernel for the
env and the daemon.

At each decision to open or reverse:
- the stop distance is ``execution.stop_pips``, or ``stop_atr_multiple`` times the average
  true range of the last ``stop_atr_bars`` closed bars (``atr``: the decision's bar and the
  ones before it, each bar's range widened to the previous close);
- the size is ``trade_lots``, or with ``risk_per_trade_pct`` that share of the balance
  (initial equity plus realised P&L: costs and financing included, open P&L not) over the stop
  distance (scaled by the model's safe-f with ``safe_f_sizing``), in whole units, capped by
  the position limit; a BUY while long (a SELL while
  short) keeps the position as it is instead of resizing it to each bar's figure;
- then ``stop_max_loss`` (account currency) caps the distance: the stop moves closer until
  size x distance is at most that loss.
With a stop configured but no distance to put it at (no range yet, a flat market) nothing is
opened: a position never goes out without its stop.
"""

from __future__ import annotations

import math

import numba
import numpy as np


@numba.njit(cache=True)
def atr(high: np.ndarray, low: np.ndarray, close: np.ndarray, i: int, n: int) -> float:
    """Mean true range of bars i-n+1 .. i (each needs the close before it); NaN when there
    are not n + 1 bars up to i."""
    if n < 1 or i < n:
        return math.nan
    s = 0.0
    for k in range(i - n + 1, i + 1):
        pc = close[k - 1]
        s += max(high[k] - low[k], abs(high[k] - pc), abs(low[k] - pc))
    return s / n


@numba.njit(cache=True)
def atr_series(high: np.ndarray, low: np.ndarray, close: np.ndarray, n: int) -> np.ndarray:
    """``atr`` at every bar (the env's table; the daemon computes the same at its last bar)."""
    out = np.empty(len(close))
    for i in range(len(close)):
        out[i] = atr(high, low, close, i, n)
    return out


@numba.njit(cache=True)
def size_and_stop(
    action: int,
    units: float,
    trade_units: float,
    max_units: float,
    fixed_distance: float,
    atr_multiple: float,
    atr_value: float,
    max_loss: float,
    risk_fraction: float,
    size_scale: float,
    balance: float,
) -> tuple[float, float]:
    """(size a BUY/SELL targets, stop distance in price units for an order toward it; 0:
    none). Size 0 where a stop is configured but has no distance, or risk sizing gives less
    than one unit. ``size_scale`` (in [0, 1]) scales the risk: the model's safe-f, or 1."""
    stops = fixed_distance > 0.0 or atr_multiple > 0.0
    distance = fixed_distance
    if atr_multiple > 0.0:
        distance = atr_multiple * atr_value if atr_value == atr_value and atr_value > 0.0 else 0.0
    size = trade_units
    if risk_fraction > 0.0:
        if (action == 1 and units > 0.0) or (action == 2 and units < 0.0):
            size = abs(units)
        elif distance > 0.0 and balance > 0.0:
            size = math.floor(min(risk_fraction * size_scale * balance / distance, max_units))
        else:
            size = 0.0
    if stops and distance <= 0.0:
        size = 0.0
    if max_loss > 0.0 and size > 0.0 and distance > max_loss / size:
        distance = max_loss / size
    return size, distance
