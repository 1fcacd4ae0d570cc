"""Cross-instrument features: the other instruments' recent returns, aligned causally.

``features.cross_instruments`` lists instruments whose recent moves every instrument's policy
sees (in a portfolio, typically the other legs; a listed leg sees its own returns again, so
one feature spec serves every leg). For an instrument A's bar ending at T (open time + one
period) and a listed instrument B, the row is computed from B's bars *ending at or before T*:
B's last price strictly before T and its history. Per B and per lag k (``cross_lags_minutes``,
in bars of the common period):

- ``x_<B>_ret_<k>``: log(c_j / c_{j-k}) / (sigma_V(B) * sqrt(k)), clipped to [-5, 5], where j is
  B's last bar ending at or before T and sigma_V is the population std of B's one-bar log
  returns over the features' volatility window (floored at 1e-7): B's own ``ret_<k>``, as of T.
- ``x_<B>_age``: (2/pi) atan(a / 4), a = (T - end of bar j) in bars: 0 when B's bar is as fresh
  as A's, towards 1 when B has not traded for a while (another calendar, a halt). 1 when B
  has fewer than the needed bars before T, and then every ``ret`` is 0.

Alignment, as the daemon has it: a bar closes at the first quote of a later bucket, so when
A's closing quote arrives at T, B's bar ending at T may still be open; its last price before
T is known, and it is final (every quote before T has been seen: the replay merges quotes in
time order, a live feed delivers them in order). The daemon therefore reads B's closed bars
and B's open bar when that one ends at or before T (``CrossView``); the trainer joins B's
rebuilt bars on their end times. One kernel computes the row for both (``cross_row``), so the
parity test demands identical values. Nothing after T is read: the look-ahead test moves B's
later bars and A's row must not change.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from stairway.core.features import _ret_std

AGE_SCALE_BARS = 4.0


def cross_names(symbols: tuple[str, ...], lags: tuple[int, ...]) -> tuple[str, ...]:
    return tuple(n for s in symbols for n in (*(f"x_{s}_ret_{k}" for k in lags), f"x_{s}_age"))


@numba.njit(cache=True)
def cross_row(
    b_end: np.ndarray,
    b_close: np.ndarray,
    t_end: int,
    period_ns: int,
    vol_window: int,
    lags: np.ndarray,
    out: np.ndarray,
) -> None:
    """One instrument's cross columns for a bar ending at ``t_end``: reads B's bars with
    ``b_end <= t_end`` only (``b_end`` sorted ascending)."""
    j = int(np.searchsorted(b_end, t_end, side="right")) - 1
    n = lags.shape[0]
    need = vol_window
    for k in range(n):
        if lags[k] > need:
            need = lags[k]
    if j < need:
        for k in range(n):
            out[k] = 0.0
        out[n] = 1.0
        return
    sig = _ret_std(b_close, j, vol_window)
    for k in range(n):
        lag = lags[k]
        x = math.log(b_close[j] / b_close[j - lag]) / (sig * math.sqrt(lag))
        out[k] = -5.0 if x < -5.0 else (5.0 if x > 5.0 else x)
    age = (t_end - b_end[j]) / period_ns
    out[n] = (2.0 / math.pi) * math.atan(age / AGE_SCALE_BARS)


@numba.njit(cache=True)
def _cross_batch(
    t_end: np.ndarray,
    b_end: np.ndarray,
    b_close: np.ndarray,
    period_ns: int,
    vol_window: int,
    lags: np.ndarray,
    first: int,
    out: np.ndarray,
) -> None:
    for i in range(first, t_end.shape[0]):
        cross_row(b_end, b_close, t_end[i], period_ns, vol_window, lags, out[i])


def batch_cross(
    a_ts: np.ndarray, b_bars: np.ndarray, period_ns: int, vol_window: int, lags: tuple[int, ...], first: int
) -> np.ndarray:
    """(len(a_ts), len(lags) + 1) columns of one cross instrument for A's bars from ``first``
    on (NaN before): ``a_ts`` are A's bar open times, ``b_bars`` B's bars (BAR_DTYPE)."""
    out = np.full((len(a_ts), len(lags) + 1), np.nan)
    b_end = np.ascontiguousarray(b_bars["ts_ns"]) + period_ns
    b_close = np.ascontiguousarray(b_bars["close"], dtype=np.float64)
    t_end = np.ascontiguousarray(a_ts, dtype=np.int64) + period_ns
    _cross_batch(t_end, b_end, b_close, period_ns, vol_window, np.array(lags, np.int64), first, out)
    return out
