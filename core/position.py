"""Position accounting and the 9 position features, as numba functions over a state vector.

One state vector per instrument (daemon) or per environment (trainer, a 2-D array); the
same functions update both. Money is in quote currency, sizes in units (signed: + long).
A long position is marked at the bid, a short one at the ask: the price it would close at.

Position features (DESIGN.md), continuous ones scaled as (2/pi)·atan(x/scale):
``equity_pips`` (unrealised pips of the open trade, scale 150), ``bars_in_trade`` (2000),
``efficiency`` (unrealised / max(best unrealised so far, 1 pip), clipped to [-1, 1]), ``pips_from_peak`` (150),
``max_dd_pips`` (worst fall from the trade's peak, 150), ``amddp`` (unrealised pips minus
1 % of the max drawdown, the seed's AMDDP1 reward, 150), ``is_long``, ``is_short``,
``has_position``.
"""

from __future__ import annotations

import math

import numba
import numpy as np

POSITION_FEATURES = (
    "equity_pips",
    "bars_in_trade",
    "efficiency",
    "pips_from_peak",
    "max_dd_pips",
    "amddp",
    "is_long",
    "is_short",
    "has_position",
)
AMDDP_WEIGHT = 0.01
# state vector layout
PS_UNITS, PS_AVG, PS_REALIZED, PS_BARS, PS_PEAK, PS_MAXDD, PS_SIDE, PS_COMMISSION, PS_FINANCING = range(9)
STATE_SIZE = 9


def new_state(n: int | None = None) -> np.ndarray:
    return np.zeros(STATE_SIZE) if n is None else np.zeros((n, STATE_SIZE))


@numba.njit(cache=True)
def apply_fill(state: np.ndarray, units: float, price: float, commission: float) -> None:
    """Apply a signed fill of ``units`` at ``price``; commission is charged to realised PnL."""
    pos = state[PS_UNITS]
    if pos == 0.0 or (pos > 0.0) == (units > 0.0):
        new = pos + units
        state[PS_AVG] = (state[PS_AVG] * pos + price * units) / new
        state[PS_UNITS] = new
    else:
        closing = min(abs(units), abs(pos))
        sign = 1.0 if pos > 0.0 else -1.0
        state[PS_REALIZED] += (price - state[PS_AVG]) * closing * sign
        new = pos + units
        if abs(new) < 1e-9:
            state[PS_UNITS] = 0.0
            state[PS_AVG] = 0.0
        elif (new > 0.0) != (pos > 0.0):
            state[PS_UNITS] = new
            state[PS_AVG] = price
        else:
            state[PS_UNITS] = new
    state[PS_REALIZED] -= commission
    state[PS_COMMISSION] += commission


@numba.njit(cache=True, inline="always")
def apply_financing(state: np.ndarray, amount: float) -> None:
    """Charge holding costs (core.execution.financing_charge) to realised PnL."""
    state[PS_REALIZED] -= amount
    state[PS_FINANCING] += amount


@numba.njit(cache=True, inline="always")
def unrealized(state: np.ndarray, bid: float, ask: float) -> float:
    u, avg = float(state[PS_UNITS]), float(state[PS_AVG])
    if u > 0.0:
        return (bid - avg) * u
    if u < 0.0:
        return (ask - avg) * u
    return 0.0


@numba.njit(cache=True, inline="always")
def equity(state: np.ndarray, bid: float, ask: float, initial: float) -> float:
    return initial + float(state[PS_REALIZED]) + unrealized(state, bid, ask)


@numba.njit(cache=True, inline="always")
def _trade_pips(state: np.ndarray, bid: float, ask: float, pip: float) -> float:
    u, avg = float(state[PS_UNITS]), float(state[PS_AVG])
    if u > 0.0:
        return (bid - avg) / pip
    if u < 0.0:
        return (avg - ask) / pip
    return 0.0


@numba.njit(cache=True)
def mark_bar(state: np.ndarray, bid: float, ask: float, pip: float) -> None:
    """Update the trade trackers at a bar close, marking at the bar's last quote."""
    u = state[PS_UNITS]
    side = 0.0 if u == 0.0 else (1.0 if u > 0.0 else -1.0)
    if side != state[PS_SIDE]:  # flat, or a new trade (opened or reversed) since the last bar
        state[PS_SIDE] = side
        state[PS_BARS] = 0.0
        state[PS_MAXDD] = 0.0
        state[PS_PEAK] = _trade_pips(state, bid, ask, pip)
    elif side != 0.0:
        state[PS_BARS] += 1.0
    if side != 0.0:
        p = _trade_pips(state, bid, ask, pip)
        if p > state[PS_PEAK]:
            state[PS_PEAK] = p
        dd = state[PS_PEAK] - p
        if dd > state[PS_MAXDD]:
            state[PS_MAXDD] = dd


@numba.njit(cache=True, inline="always")
def _squash(x: float, scale: float) -> float:
    return (2.0 / math.pi) * math.atan(x / scale)


@numba.njit(cache=True)
def position_features(state: np.ndarray, bid: float, ask: float, pip: float, out: np.ndarray) -> None:
    """Write the 9 position features into ``out`` (call after ``mark_bar``)."""
    side = state[PS_SIDE]
    if side == 0.0:
        for j in range(9):
            out[j] = 0.0
        return
    p = _trade_pips(state, bid, ask, pip)
    peak = state[PS_PEAK]
    out[0] = _squash(p, 150.0)
    out[1] = _squash(state[PS_BARS], 2000.0)
    eff = p / (peak if peak > 1.0 else 1.0)
    out[2] = -1.0 if eff < -1.0 else (1.0 if eff > 1.0 else eff)
    out[3] = _squash(peak - p, 150.0)
    out[4] = _squash(state[PS_MAXDD], 150.0)
    out[5] = _squash(p - AMDDP_WEIGHT * state[PS_MAXDD], 150.0)
    out[6] = 1.0 if side > 0.0 else 0.0
    out[7] = 1.0 if side < 0.0 else 0.0
    out[8] = 1.0
