"""Risk rules shared by the daemon's RiskEngine (daemon.risk) and the trainer's environment
(trainer.env), so a policy is trained and evaluated under the limits it trades with.

- Drawdown tiers on intraday equity against the session's opening equity (the previous
  UTC day's closing equity): warn, halve size, stop opening, flatten; a tier is left only
  ``tier_exit_fraction`` below its threshold (hysteresis). The flatten tier closes
  the position at once (no decision on that bar) and latches a halt: no new positions until the
  next UTC session (``halt_resume = "next_session"``) or, with ``"operator"``, until an operator
  resumes (the env, having no operator: to the end of its episode or window).
- Blocked orders may still reduce: a reversal becomes a close, an enlargement keeps the
  position as it is.
- Limits: the position is clamped to the position limit, the order to the order cap; at most
  ``max_trades_per_day`` orders a UTC day open or enlarge a position.

The env checks the tiers at every bar close. The daemon also checks them at the last quote
of every batch of quotes (every quote, live): protection between bar closes the env does not
model, so a replay matches the env exactly when no batch ends inside a bar where a tier is
crossed first (one whole-replay batch, or bar-aligned batches).
"""

from __future__ import annotations

import math

import numba

TIER_NAMES = ("normal", "warn", "halve_size", "stop_opening", "flatten")
WARN, HALVE_SIZE, STOP_OPENING, FLATTEN = 1, 2, 3, 4


@numba.njit(cache=True)
def drawdown_tier(
    equity: float, session_open: float, t_warn: float, t_halve: float, t_stop: float, t_flatten: float
) -> int:
    """Tier from the intraday drawdown in % of the session's opening equity (1.8 % is
    1.7999... in floats: a tolerance of 1e-9 %)."""
    dd = (session_open - equity) / session_open * 100.0
    if dd < 0.0:
        dd = 0.0
    tier = 0
    for t in (t_warn, t_halve, t_stop, t_flatten):
        if dd + 1e-9 >= t:
            tier += 1
    return tier


@numba.njit(cache=True)
def held_tier(
    equity: float,
    session_open: float,
    prev: int,
    t_warn: float,
    t_halve: float,
    t_stop: float,
    t_flatten: float,
    exit_fraction: float,
) -> int:
    """The tier with hysteresis: entered at its threshold, left only once the drawdown is
    below (1 - ``exit_fraction``) x that threshold (a drawdown hovering at 1.5 % does not flap
    warn <-> normal at every quote). Used by the daemon and the env alike."""
    raw = drawdown_tier(equity, session_open, t_warn, t_halve, t_stop, t_flatten)
    if raw >= prev:
        return raw
    k = 1.0 - exit_fraction
    lowered = drawdown_tier(equity, session_open, t_warn * k, t_halve * k, t_stop * k, t_flatten * k)
    return max(raw, min(prev, lowered))


@numba.njit(cache=True)
def size_factor(tier: int) -> float:
    return 0.5 if tier >= HALVE_SIZE else 1.0


@numba.njit(cache=True)
def reduce_only(current: float, target: float) -> float:
    """The target allowed when opening is blocked: a close for a reversal or a new position,
    the current position for an enlargement, the target itself when it reduces."""
    if current == 0.0 or (target > 0.0) != (current > 0.0) or target == 0.0:
        return 0.0
    if abs(target) > abs(current):
        return current
    return target


@numba.njit(cache=True)
def clamp_target(current: float, target: float, position_limit: float, order_cap: float) -> float:
    """The position limit on the target, then the order cap on the order, for an opening order."""
    if target > position_limit:
        target = position_limit
    elif target < -position_limit:
        target = -position_limit
    order = target - current
    if order > order_cap:
        order = order_cap
    elif order < -order_cap:
        order = -order_cap
    return current + order


def regime_scale(regime: float, bands: tuple[float, ...], scales: tuple[float, ...]) -> float:
    """The size scale of the band ``regime`` falls in (edges belong to the band above);
    1.0 when no bands are configured."""
    if not bands:
        return 1.0
    k = 0
    while k < len(bands) and regime >= bands[k]:
        k += 1
    return scales[k]


def trade_band(minute_band: tuple[int, int], period_minutes: int) -> tuple[int, int]:
    """A trades-per-session band given for one-minute bars, scaled to this bar period (the
    floor of the low end, the ceiling of the high one): the daemon's alert band and the
    shadow gate's allowed range."""
    lo, hi = minute_band
    return math.floor(lo / period_minutes), math.ceil(hi / period_minutes)
