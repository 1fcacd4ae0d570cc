"""The one execution and cost model: used by the trainer's environment and by the daemon's
paper broker, so a backtest, a training episode and a paper run fill identically.

An order decided at a bar close is worked against the quotes *after* the bar's closing
quote, no earlier than the closing quote's time plus the latency. Each quote fills at most
``liquidity_lots_per_quote`` lots (partial fills); buys pay the ask plus slippage, sells
receive the bid minus slippage; commission is charged per unit filled. Whatever is still
unfilled when the next bar closes is cancelled. Holding a position costs financing at each
daily roll its bars span (``charge_holding_costs``: at the bar close after the roll, on the
position then held, at that bar's last mid). Quotes the bar builder rejects are never traded
on (the same ``accepted`` mask is passed in).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numba
import numpy as np

from stairway.core.config import ExecutionConfig, InstrumentConfig
from stairway.core.position import PS_UNITS, apply_financing, equity
from stairway.core.protection import size_and_stop
from stairway.core.risk_rules import held_tier
from stairway.core.types import NS_PER_DAY


@numba.njit(cache=True)
def work_order(
    remaining: float,
    ts: np.ndarray,
    bid: np.ndarray,
    ask: np.ndarray,
    accepted: np.ndarray,
    start: int,
    stop: int,
    not_before_ns: int,
    cap_units: float,
    slip: float,
    out_idx: np.ndarray,
    out_units: np.ndarray,
    out_price: np.ndarray,
    n_out: int,
    bound: float = np.nan,
) -> tuple[int, float, bool]:
    """Fill up to ``remaining`` signed units against quotes [start, stop), no buy above and
    no sell below ``bound`` (``price_bound``; NaN: none): ``work_quotes`` for a flat position
    without a protective stop.

    Appends fills to the out arrays from position ``n_out``; returns (n_out, remaining,
    bounded): at the first quote whose fill price is beyond the bound the rest is cancelled
    (remaining 0, bounded True), as a broker cancels a market order that would fill there.
    """
    kinds = np.empty(out_idx.shape[0])
    n_out, _units, remaining, _stop, bounded, _trail = work_quotes(
        0.0, remaining, 0.0, 0.0, ts, bid, ask, accepted, start, stop, not_before_ns, cap_units, slip, bound,
        out_idx, out_units, out_price, kinds, n_out, 0.0, 0.0,
    )  # fmt: skip
    return n_out, remaining, bounded


@numba.njit(cache=True, inline="always")
def stop_triggered(units: float, stop: float, bid: float, ask: float) -> bool:
    """A position's protective stop (0: none) is reached: a long's at the bid, a short's at the ask."""
    if stop <= 0.0 or units == 0.0:
        return False
    return bid <= stop if units > 0.0 else ask >= stop


@numba.njit(cache=True, inline="always")
def trailed(units: float, stop: float, trail: float, bid: float, ask: float) -> float:
    """A trailing stop (``trail``: its distance; 0: a fixed stop) after a quote that did not
    reach it: a long's follows the bid up, a short's the ask down, never back (OANDA's
    trailingStopLossOnFill)."""
    if trail <= 0.0 or stop <= 0.0 or units == 0.0:
        return stop
    return max(stop, bid - trail) if units > 0.0 else min(stop, ask + trail)


@numba.njit(cache=True)
def quiet_until(
    state: np.ndarray,
    stop: float,
    bid: np.ndarray,
    ask: np.ndarray,
    accepted: np.ndarray,
    start: int,
    end: int,
    initial: float,
    others: float,
    session_open: float,
    tier: int,
    tiers: np.ndarray,
    exit_fraction: float,
    trail: float = 0.0,
) -> tuple[int, int, float]:
    """For a position (``state``) without a working order: the first accepted quote in
    [start, end) at which something happens, as quote-by-quote handling would find it: its
    protective ``stop`` triggers (as work_quotes checks it) or the account's drawdown tier
    (``held_tier`` of this equity plus ``others``, the other instruments' P&L, against
    ``session_open``) leaves ``tier``. Returns (that index, or ``end``; the last accepted
    quote before it, or -1; the stop then, moved by a ``trail`` as work_quotes moves it).
    Between the two nothing changes but the marks and a trailing stop."""
    last = -1
    units = float(state[PS_UNITS])
    t_warn, t_halve, t_stop, t_flatten = tiers[0], tiers[1], tiers[2], tiers[3]
    for i in range(start, end):
        if not accepted[i]:
            continue
        if stop_triggered(units, stop, bid[i], ask[i]):
            return i, last, stop
        eq = equity(state, bid[i], ask[i], initial) + others
        if held_tier(eq, session_open, tier, t_warn, t_halve, t_stop, t_flatten, exit_fraction) != tier:
            return i, last, stop
        stop = trailed(units, stop, trail, bid[i], ask[i])
        last = i
    return end, last, stop


@numba.njit(cache=True)
def work_quotes(
    units: float,
    remaining: float,
    order_stop: float,
    stop: float,
    ts: np.ndarray,
    bid: np.ndarray,
    ask: np.ndarray,
    accepted: np.ndarray,
    start: int,
    end: int,
    not_before_ns: int,
    cap_units: float,
    slip: float,
    bound: float,
    out_idx: np.ndarray,
    out_units: np.ndarray,
    out_price: np.ndarray,
    out_stop: np.ndarray,
    n_out: int,
    order_trail: float = 0.0,
    trail: float = 0.0,
) -> tuple[int, float, float, float, bool, float]:
    """Quotes [start, end) for a position of ``units`` with a protective ``stop`` (0: none) and
    a working order (``remaining`` signed units, 0: none) that arms ``order_stop`` (0: none).
    A trailing stop (``trail``, the order's ``order_trail``: its distance; 0: fixed) is armed at
    the fill quote's price less (a long's, at the bid) or plus (a short's, at the ask) the
    distance, as OANDA arms trailingStopLossOnFill, and follows the price (``trailed``).

    At each accepted quote, in this order: the order fills (at most ``cap_units``, a buy at the ask
    plus slippage, a sell at the bid less it, not before ``not_before_ns``, nothing beyond ``bound``:
    the rest is then cancelled); a fill that leaves a position open in the order's direction (opened, added
    to, reversed) sets the stop to ``order_stop``, one that leaves it flat removes it. On a quote without an order fill the
    stop is checked: a long's at the bid (bid <= stop), a short's at the ask (ask >= stop); it
    closes the whole position there, the quote's price less slippage (a stop becomes a market
    order: a gap through it fills at the quote, worse than the stop). Fills are appended from
    ``n_out`` (``out_stop`` 1 for a stop's); returns (n_out, units, remaining, stop, bounded, trail)."""
    bounded = False
    i = start
    while i < end and (remaining != 0.0 or (stop > 0.0 and units != 0.0)):  # else nothing can happen
        if accepted[i]:
            if remaining != 0.0 and ts[i] >= not_before_ns:
                q = min(abs(remaining), cap_units)
                if remaining > 0.0:
                    p = ask[i] + slip
                    if p > bound:
                        remaining, bounded = 0.0, True
                        i += 1
                        continue
                    remaining -= q
                else:
                    p = bid[i] - slip
                    if p < bound:
                        remaining, bounded = 0.0, True
                        i += 1
                        continue
                    q = -q
                    remaining -= q
                if abs(remaining) < 1e-9:
                    remaining = 0.0
                out_idx[n_out], out_units[n_out], out_price[n_out], out_stop[n_out] = i, q, p, 0.0
                n_out += 1
                units += q
                if abs(units) < 1e-9:
                    units, stop, trail = 0.0, 0.0, 0.0
                elif (units > 0.0) == (q > 0.0):  # opened, added to or reversed: the order's stop (0: none)
                    stop, trail = order_stop, order_trail
                    if trail > 0.0 and stop > 0.0:  # trailing: from the fill quote's price
                        stop = bid[i] - trail if units > 0.0 else ask[i] + trail
            elif stop_triggered(units, stop, bid[i], ask[i]):
                p = bid[i] - slip if units > 0.0 else ask[i] + slip
                out_idx[n_out], out_units[n_out], out_price[n_out], out_stop[n_out] = i, -units, p, 1.0
                n_out += 1
                units, stop, trail = 0.0, 0.0, 0.0
            else:
                stop = trailed(units, stop, trail, bid[i], ask[i])
        i += 1
    return n_out, units, remaining, stop, bounded, trail


@numba.njit(cache=True, inline="always")
def stop_price(target: float, bid: float, ask: float, distance: float) -> float:
    """The protective stop an order toward ``target`` units arms: ``distance`` (price units)
    below the decision's bid for a long, above its ask for a short; 0 (none) for a flat target
    or without a distance."""
    if distance <= 0.0 or target == 0.0:
        return 0.0
    return bid - distance if target > 0.0 else ask + distance


@numba.njit(cache=True, inline="always")
def price_bound(units: float, bid: float, ask: float, tolerance: float) -> float:
    """The worst fill price a decision's order accepts: the decision's quote (the bar's last
    ask to buy, bid to sell) moved ``tolerance`` (price units) against it; NaN (no bound)
    when the tolerance is 0."""
    if tolerance <= 0.0:
        return np.nan
    return ask + tolerance if units > 0.0 else bid - tolerance


@numba.njit(cache=True, inline="always")
def target_units(action: int, current: float, trade_units: float) -> float:
    """Target-position semantics: BUY -> +size, SELL -> -size, CLOSE -> 0, HOLD -> unchanged."""
    if action == 1:
        return trade_units
    if action == 2:
        return -trade_units
    if action == 3:
        return 0.0
    return current


WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


@numba.njit(cache=True)
def financing_days(after_ns: int, until_ns: int, roll_offset_ns: int, triple_weekday: int) -> float:
    """Days of financing charged by the daily rolls in (after, until]: a Monday-Friday roll
    charges one day, ``triple_weekday``'s three (it carries the weekend), Saturday's and
    Sunday's none: seven days a week, as OANDA and FX spot value dates do."""
    if until_ns <= after_ns:
        return 0.0
    d = (after_ns - roll_offset_ns) // NS_PER_DAY + 1  # the first roll after ``after``
    days = 0.0
    while d * NS_PER_DAY + roll_offset_ns <= until_ns:
        wd = (d + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
        if wd < 5:
            days += 3.0 if wd == triple_weekday else 1.0
        d += 1
    return days


@numba.njit(cache=True)
def financing_charge(units: float, bid: float, ask: float, long_rate: float, short_rate: float, days: float) -> float:
    """What holding ``units`` costs over ``days`` (quote currency; < 0 is a credit): the
    notional at the mid times the side's yearly rate, per 365-day year."""
    if units == 0.0 or days == 0.0:
        return 0.0
    rate = long_rate if units > 0.0 else short_rate
    return abs(units) * 0.5 * (bid + ask) * rate * days / 365.0


@numba.njit(cache=True)
def charge_holding_costs(
    state: np.ndarray,
    bid: float,
    ask: float,
    after_ns: int,
    until_ns: int,
    long_rate: float,
    short_rate: float,
    roll_offset_ns: int,
    triple_weekday: int,
) -> tuple[float, float]:
    """Charge a position state (core.position) the daily rolls in (after, until] at this mid,
    to realised PnL; returns (days, charge). The one call the env and the daemon's slot make."""
    units = state[PS_UNITS]
    if units == 0.0 or (long_rate == 0.0 and short_rate == 0.0):
        return 0.0, 0.0
    days = financing_days(after_ns, until_ns, roll_offset_ns, triple_weekday)
    charge = financing_charge(units, bid, ask, long_rate, short_rate, days)
    if charge != 0.0:
        apply_financing(state, charge)
    return days, charge


@dataclass(frozen=True)
class ExecutionModel:
    """Execution parameters in price units and units, derived from the config."""

    pip: float
    lot_units: float
    commission_per_unit: float
    slippage: float
    latency_ns: int
    cap_units: float
    max_position_units: float
    trade_units: float
    financing_long: float = 0.0  # yearly rate as a fraction of notional; > 0 is a cost
    financing_short: float = 0.0
    roll_offset_ns: int = 21 * 3_600_000_000_000  # the daily roll's time of day (UTC)
    triple_weekday: int = 2  # Monday = 0: this roll charges three days
    bound_tolerance: float = 0.0  # price units a decision's fill may be worse than its quote; 0: none
    stop_distance: float = 0.0  # price units from the decision's quote to the protective stop; 0: none
    stop_atr_multiple: float = 0.0  # instead: this many ATRs (core.protection); 0: not from the range
    stop_atr_bars: int = 24
    stop_max_loss: float = 0.0  # account currency a stop may lose at most; 0: no cap
    risk_fraction: float = 0.0  # of the balance a stop may lose: sizes entries; 0: trade_units
    safe_f_sizing: bool = False  # the risk scaled by the model's safe-f (core.robustness.safe_f)
    stop_trailing: bool = False  # the protective stop trails the price by its distance (work_quotes)

    @classmethod
    def from_config(cls, ex: ExecutionConfig, inst: InstrumentConfig) -> ExecutionModel:
        return cls(
            pip=inst.pip_size,
            lot_units=inst.lot_units,
            commission_per_unit=ex.commission_pips * inst.pip_size,
            slippage=ex.slippage_pips * inst.pip_size,
            latency_ns=int(round(ex.latency_ms * 1e6)),
            cap_units=ex.liquidity_lots_per_quote * inst.lot_units,
            max_position_units=ex.max_position_lots * inst.lot_units,
            trade_units=ex.trade_lots * inst.lot_units,
            financing_long=ex.financing_long_pct_per_year / 100.0,
            financing_short=ex.financing_short_pct_per_year / 100.0,
            roll_offset_ns=int(round(ex.financing_roll_hour_utc * 3_600_000_000_000)),
            triple_weekday=WEEKDAYS.index(ex.financing_triple_weekday),
            bound_tolerance=(ex.price_bound_pips or 0.0) * inst.pip_size,
            stop_distance=(ex.stop_pips or 0.0) * inst.pip_size,
            stop_atr_multiple=ex.stop_atr_multiple or 0.0,
            stop_atr_bars=ex.stop_atr_bars,
            stop_max_loss=ex.stop_max_loss or 0.0,
            risk_fraction=(ex.risk_per_trade_pct or 0.0) / 100.0,
            safe_f_sizing=ex.safe_f_sizing,
            stop_trailing=ex.stop_trailing,
        )

    @property
    def stops(self) -> bool:
        return self.stop_distance > 0.0 or self.stop_atr_multiple > 0.0

    def size_and_stop(
        self, action: int, units: float, atr: Callable[[int], float], balance: float, safe_f: float | None = None
    ) -> tuple[float, float]:
        """core.protection.size_and_stop with this model's settings (``atr(n)``: the average
        true range of the last n bars at the decision; read only for a stop from the range;
        ``safe_f``: the acting model's, used with safe_f_sizing)."""
        a = atr(self.stop_atr_bars) if self.stop_atr_multiple > 0.0 else 0.0
        return size_and_stop(
            action, units, self.trade_units, self.max_position_units, self.stop_distance, self.stop_atr_multiple,
            a, self.stop_max_loss, self.risk_fraction, self.size_scale(safe_f), balance,
        )  # fmt: skip

    def size_scale(self, safe_f: float | None) -> float:
        """What the risk is scaled by under a model of this safe-f: the safe-f, in [0, 1], with
        safe_f_sizing; else, or when the model has none (as while it trains), 1."""
        if not self.safe_f_sizing or safe_f is None:
            return 1.0
        return min(max(safe_f, 0.0), 1.0)

    @property
    def finances(self) -> bool:
        return self.financing_long != 0.0 or self.financing_short != 0.0

    def commission(self, units: float) -> float:
        return abs(units) * self.commission_per_unit
