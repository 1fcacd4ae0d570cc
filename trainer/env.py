"""Vectorised trading environment over a MarketHistory: N sessions stepped at once.

One step = one closed bar. The action is turned into an order with core.execution's target
semantics, worked by core.execution.work_quotes against the quotes after the bar's closing
quote (latency, liquidity cap, slippage, commission), applied with core.position.apply_fill,
and the position is marked at the next bar's last quote. Reward = change in equity after
costs, in pips per traded unit, times ``reward_scale``; the last step of a session also pays
the cost of closing what is still open. The observation is core's market features of the bar
plus core's 9 position features: the same numbers the daemon's slot computes.
"""

from __future__ import annotations

import numba
import numpy as np

from stairway.core.config import RiskConfig
from stairway.core.execution import (
    ExecutionModel,
    charge_holding_costs,
    price_bound,
    stop_price,
    target_units,
    work_quotes,
)
from stairway.core.features import FeatureSpec
from stairway.core.position import (
    PS_MAXDD,
    PS_REALIZED,
    PS_UNITS,
    apply_fill,
    equity,
    mark_bar,
    new_state,
    position_features,
)
from stairway.core.protection import atr_series, size_and_stop
from stairway.core.risk_rules import FLATTEN, STOP_OPENING, clamp_target, held_tier, reduce_only, size_factor
from stairway.core.types import NS_PER_DAY
from stairway.trainer.history import MarketHistory

MAX_FILLS = 64

# per-env risk state (core.risk_rules), as the daemon's RiskEngine and session tracker keep it
RS_TIER, RS_HALTED, RS_FORCED, RS_DAY, RS_OPEN, RS_CAP_DAY, RS_ORDERS = 0, 1, 2, 3, 4, 5, 6
RS_BLOCKED, RS_FLATTENS, RS_HALTED_BARS = 7, 8, 9
RS_STOP, RS_STOPS_FIRED = 10, 11  # the protective stop's price (0: none, core.execution.work_quotes), stops fired
RS_TRAIL = 12  # a trailing stop's distance (0: a fixed stop)
RS_N = 13


@numba.njit(cache=True)
def _observe(feats, bar, state, last_bid, last_ask, pip, n_market, obs):
    for e in range(bar.shape[0]):
        i = bar[e]
        for k in range(n_market):
            obs[e, k] = feats[i, k]
        position_features(state[e], last_bid[i], last_ask[i], pip, obs[e, n_market:])


@numba.njit(cache=True)
def _tier_at(rs, st, bid: float, ask: float, initial: float, tiers) -> bool:
    """Mark and tier an open position at one quote (the daemon's Slot._protect_at_quote):
    True when it reached the flatten tier there (halted, counted; the caller flattens)."""
    old = int(rs[RS_TIER])
    tier = held_tier(equity(st, bid, ask, initial), rs[RS_OPEN], old, tiers[0], tiers[1], tiers[2], tiers[3], tiers[4])
    rs[RS_TIER] = tier
    if tier >= FLATTEN and old < FLATTEN:
        rs[RS_HALTED] = 1.0
        rs[RS_FLATTENS] += 1.0
        return True
    if tier >= FLATTEN:
        rs[RS_HALTED] = 1.0
    return False


@numba.njit(cache=True)
def _risk_target(rs, action, u, trade_units, can_open, position_limit, order_cap, max_trades):
    """The target the daemon's risk engine would allow for ``action`` (core.risk_rules);
    ``trade_units``: the size a BUY/SELL targets (core.protection.size_and_stop)."""
    if rs[RS_FORCED] > 0.0:  # the flatten tier fired at the last mark (1), or its flatten still works (2): close
        rs[RS_FLATTENS] += 1.0 if rs[RS_FORCED] == 1.0 else 0.0
        rs[RS_FORCED] = 0.0
        return 0.0
    tier = int(rs[RS_TIER])
    tgt = target_units(action, u, trade_units * size_factor(tier))
    order = tgt - u
    if order == 0.0:
        return tgt
    reducing = abs(tgt) <= abs(u) and (tgt == 0.0 or (tgt > 0.0) == (u > 0.0))
    if reducing:
        return tgt
    if rs[RS_HALTED] > 0.0 or not can_open or tier >= STOP_OPENING or rs[RS_ORDERS] >= max_trades:
        allowed = reduce_only(u, tgt)
    else:
        allowed = clamp_target(u, tgt, position_limit, order_cap)
    if allowed != tgt:
        rs[RS_BLOCKED] += 1.0
    return allowed


@numba.njit(cache=True)
def _step(
    actions,
    bar,
    steps,
    session_len,
    state,
    rstate,
    feats,
    bar_ts,
    close_idx,
    can_open,
    ts,
    bid,
    ask,
    accepted,
    last_bid,
    last_ask,
    pip,
    trade_units,
    position_limit,
    order_cap,
    max_trades,
    tiers,
    comm_per_unit,
    slip,
    latency_ns,
    cap_units,
    bound_tol,
    stop_dist,
    atr_mult,
    atr,
    max_loss,
    risk_frac,
    size_scale,
    max_units,
    fin_long,
    fin_short,
    roll_offset_ns,
    triple_weekday,
    period_ns,
    initial,
    reward_scale,
    n_market,
    obs,
    reward,
    done,
    eq_out,
    fill_idx,
    fill_units,
    fill_price,
    fill_stop,
    trailing,
):
    unit_pips = pip * trade_units
    for e in range(actions.shape[0]):
        i = bar[e]
        st = state[e]
        rs = rstate[e]
        u = st[PS_UNITS]
        day = bar_ts[i] // NS_PER_DAY
        if rs[RS_CAP_DAY] != day:
            rs[RS_CAP_DAY] = day
            rs[RS_ORDERS] = 0.0
        size, dist = size_and_stop(
            actions[e],
            u,
            trade_units,
            max_units,
            stop_dist,
            atr_mult,
            atr[i],
            max_loss,
            risk_frac,
            size_scale,
            initial + st[PS_REALIZED],
        )
        forced = rs[RS_FORCED] > 0.0
        tgt = _risk_target(rs, actions[e], u, size, can_open[i], position_limit, order_cap, max_trades)
        order = tgt - u
        eq0 = equity(st, last_bid[i], last_ask[i], initial)
        if order != 0.0:
            rs[RS_ORDERS] += 1.0
        j = close_idx[i]
        # the order and the protective stop over the bar's quotes, and an open position marked and
        # tiered at each, from the closing quote on, as the daemon does quote by quote
        # (daemon.slot_quotes): the flatten tier reached at a quote flattens from there
        nb, remaining, flattening = ts[j] + latency_ns, order, forced  # a flatten: no bound, no stop
        bound = np.nan if forced else price_bound(order, last_bid[i], last_ask[i], bound_tol)
        ostop = stop_price(tgt, last_bid[i], last_ask[i], dist) if order != 0.0 and not forced else 0.0
        otrail = dist if trailing and ostop > 0.0 else 0.0  # execution.stop_trailing: the distance it trails by
        if st[PS_UNITS] != 0.0 and _tier_at(rs, st, bid[j], ask[j], initial, tiers):
            remaining, ostop, otrail, bound, flattening = -st[PS_UNITS], 0.0, 0.0, np.nan, True  # the order gives way
        for q in range(j + 1, close_idx[i + 1]):
            if not accepted[q]:
                continue
            if remaining != 0.0 or (rs[RS_STOP] > 0.0 and st[PS_UNITS] != 0.0):
                n, _u, remaining, rs[RS_STOP], _bounded, rs[RS_TRAIL] = work_quotes(
                    st[PS_UNITS], remaining, ostop, rs[RS_STOP], ts, bid, ask, accepted, q, q + 1, nb, cap_units,
                    slip, bound, fill_idx, fill_units, fill_price, fill_stop, 0, otrail, rs[RS_TRAIL],
                )  # fmt: skip
                for f in range(n):
                    apply_fill(st, fill_units[f], fill_price[f], abs(fill_units[f]) * comm_per_unit)
                    rs[RS_STOPS_FIRED] += fill_stop[f]
            if st[PS_UNITS] != 0.0 and _tier_at(rs, st, bid[q], ask[q], initial, tiers):
                remaining, ostop, otrail, bound, flattening = -st[PS_UNITS], 0.0, 0.0, np.nan, True
                nb = ts[q] + latency_ns
        if flattening and remaining != 0.0:
            rs[RS_FORCED] = 2.0  # a flatten still working at the close: it goes on, nobody decides
        i1 = i + 1
        charge_holding_costs(  # the daily rolls this bar spans
            st, last_bid[i1], last_ask[i1], bar_ts[i] + period_ns, bar_ts[i1] + period_ns,
            fin_long, fin_short, roll_offset_ns, triple_weekday,
        )  # fmt: skip
        mark_bar(st, last_bid[i1], last_ask[i1], pip)
        eq1 = equity(st, last_bid[i1], last_ask[i1], initial)
        # sessions (UTC days) open at the previous day's closing equity; tiers at every bar mark
        day1 = bar_ts[i1] // NS_PER_DAY
        if rs[RS_DAY] != day1:
            rs[RS_DAY] = day1
            rs[RS_OPEN] = eq0
            if tiers[5] > 0.0:  # risk.halt_resume = "next_session": the flatten tier's halt ends
                rs[RS_HALTED] = 0.0
        old = int(rs[RS_TIER])
        tier = held_tier(eq1, rs[RS_OPEN], old, tiers[0], tiers[1], tiers[2], tiers[3], tiers[4])
        rs[RS_TIER] = tier
        if tier >= FLATTEN and old < FLATTEN:
            rs[RS_FORCED] = 1.0
            rs[RS_HALTED] = 1.0
        elif tier >= FLATTEN and rs[RS_HALTED] == 0.0:  # the risk engine halts at any mark in that tier
            rs[RS_HALTED] = 1.0
        if rs[RS_HALTED] > 0.0:
            rs[RS_HALTED_BARS] += 1.0
        r = (eq1 - eq0) / unit_pips
        steps[e] += 1
        bar[e] = i1
        d = steps[e] >= session_len
        if d:
            r -= abs(st[PS_UNITS]) * (comm_per_unit + slip) / unit_pips
        reward[e] = r * reward_scale
        done[e] = d
        eq_out[e] = (eq1 - initial) / unit_pips
        for k in range(n_market):
            obs[e, k] = feats[i1, k]
        position_features(st, last_bid[i1], last_ask[i1], pip, obs[e, n_market:])


class VecTradingEnv:
    """``num_envs`` independent sessions of ``session_len`` decisions over one history."""

    def __init__(
        self,
        history: MarketHistory,
        spec: FeatureSpec,
        ex: ExecutionModel,
        initial_equity: float,
        num_envs: int,
        session_len: int,
        seed: int,
        reward_scale: float = 0.1,
        first_bar: int | None = None,
        last_bar: int | None = None,
        auto_reset: bool = True,
        shaper=None,
        risk: RiskConfig | None = None,
        session_starts: np.ndarray | None = None,
        safe_f: float | None = None,
    ) -> None:
        self.h, self.spec, self.ex = history, spec, ex
        self.size_scale = ex.size_scale(safe_f)  # the acting model's safe-f, with execution.safe_f_sizing
        self.num_envs, self.session_len = num_envs, session_len
        self.initial_equity, self.reward_scale = initial_equity, reward_scale
        self.obs_dim = spec.obs_dim
        # Decisions on bars [lo, hi]: warmed up and closed by a real quote (the last bar never is).
        self.lo = max(spec.window - 1, first_bar or 0)
        self.hi = min(len(history) - 2, last_bar if last_bar is not None else len(history))
        if self.hi - self.lo + 1 < session_len:
            raise ValueError(f"history has {self.hi - self.lo + 1} usable bars, fewer than a session of {session_len}")
        self.auto_reset = auto_reset
        # pre-indexed session starts (trainer.sessions); none: any start in range
        self.session_starts = None
        if session_starts is not None:
            starts = np.asarray(session_starts, dtype=np.int64)
            if len(starts) == 0:
                raise ValueError("no session start is left to train on")
            if starts.min() < self.lo or starts.max() > self.hi - session_len + 1:
                raise ValueError(f"session starts must lie in [{self.lo}, {self.hi - session_len + 1}]")
            self.session_starts = starts
        self.shaper = shaper
        self.equity_pips = np.zeros(num_envs)
        self.rng = np.random.default_rng(seed)
        self.state = new_state(num_envs)
        self.rstate = np.zeros((num_envs, RS_N))
        # the daemon's limits (one instrument: the total limit applies to it alone)
        risk = risk or RiskConfig()
        lot = ex.lot_units
        self.position_limit = min(risk.max_position_lots, risk.max_total_lots) * lot
        self.order_cap = risk.max_order_lots * lot
        self.max_trades = float(risk.max_trades_per_day)
        # the four tiers, the hysteresis fraction, and 1.0 when the halt ends with the session
        resume = 1.0 if risk.halt_resume == "next_session" else 0.0
        self.tiers = np.asarray((*risk.drawdown_tiers_pct, risk.tier_exit_fraction, resume), dtype=np.float64)
        self._bar_ts = np.ascontiguousarray(history.bars["ts_ns"])
        b = history.bars
        self._atr = (
            atr_series(
                np.ascontiguousarray(b["high"]),
                np.ascontiguousarray(b["low"]),
                np.ascontiguousarray(b["close"]),
                ex.stop_atr_bars,
            )  # fmt: skip
            if ex.stop_atr_multiple > 0.0
            else np.zeros(len(b))
        )
        self.bar = np.zeros(num_envs, dtype=np.int64)
        self.steps = np.zeros(num_envs, dtype=np.int64)
        self.obs = np.zeros((num_envs, self.obs_dim))
        self.reward = np.zeros(num_envs)
        self.done = np.zeros(num_envs, dtype=np.bool_)
        self._fills = (
            np.empty(MAX_FILLS, dtype=np.int64),
            np.empty(MAX_FILLS),
            np.empty(MAX_FILLS),
            np.empty(MAX_FILLS),
        )
        self._cols = (
            np.ascontiguousarray(history.ticks["ts_ns"]),
            np.ascontiguousarray(history.ticks["bid"]),
            np.ascontiguousarray(history.ticks["ask"]),
        )
        max_units_per_step = 2 * ex.max_position_units
        if max_units_per_step / ex.cap_units > MAX_FILLS:
            raise ValueError("liquidity cap too small for the fill buffer")

    def _reset_envs(self, idx: np.ndarray, starts: np.ndarray | None = None) -> None:
        if len(idx) == 0:
            return
        if starts is None and self.session_starts is not None:
            starts = self.session_starts[self.rng.integers(len(self.session_starts), size=len(idx))]
        elif starts is None:
            starts = self.rng.integers(self.lo, self.hi - self.session_len + 2, size=len(idx))
        self.bar[idx] = starts
        self.steps[idx] = 0
        self.state[idx] = 0.0
        self.rstate[idx] = 0.0
        # a session opens flat at the initial equity on its first bar's day
        self.rstate[idx, RS_DAY] = self._bar_ts[starts] // NS_PER_DAY
        self.rstate[idx, RS_OPEN] = self.initial_equity
        self.rstate[idx, RS_CAP_DAY] = -1.0

    def reset(self, starts: np.ndarray | None = None) -> np.ndarray:
        self._reset_envs(np.arange(self.num_envs), starts)
        _observe(
            self.h.features,
            self.bar,
            self.state,
            self.h.last_bid,
            self.h.last_ask,
            self.ex.pip,
            self.spec.n_market,
            self.obs,
        )
        return self.obs

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Advance every env one bar. Finished sessions restart (obs is then the new start's)."""
        h, ex = self.h, self.ex
        ts, bid, ask = self._cols
        actions = np.asarray(actions, dtype=np.int64)
        if self.shaper is not None:
            regime = h.regime[self.bar]
            maxdd_before = self.state[:, PS_MAXDD].copy()
        _step(
            actions,
            self.bar,
            self.steps,
            self.session_len,
            self.state,
            self.rstate,
            h.features,
            self._bar_ts,
            h.close_idx,
            h.can_open,
            ts,
            bid,
            ask,
            h.accepted,
            h.last_bid,
            h.last_ask,
            ex.pip,
            ex.trade_units,
            self.position_limit,
            self.order_cap,
            self.max_trades,
            self.tiers,
            ex.commission_per_unit,
            ex.slippage,
            ex.latency_ns,
            ex.cap_units,
            ex.bound_tolerance,
            ex.stop_distance,
            ex.stop_atr_multiple,
            self._atr,
            ex.stop_max_loss,
            ex.risk_fraction,
            self.size_scale,
            ex.max_position_units,
            ex.financing_long,
            ex.financing_short,
            ex.roll_offset_ns,
            ex.triple_weekday,
            self.spec.period_minutes * 60_000_000_000,
            self.initial_equity,
            self.reward_scale,
            self.spec.n_market,
            self.obs,
            self.reward,
            self.done,
            self.equity_pips,
            *self._fills,
            ex.stop_trailing,
        )
        if self.shaper is not None:
            dd_up = np.maximum(0.0, self.state[:, PS_MAXDD] - maxdd_before)
            self.reward[:] = self.shaper.shape(actions, self.reward, regime, dd_up, self.equity_pips, self.done)
        finished = np.nonzero(self.done)[0]
        if len(finished) and self.auto_reset:
            self._reset_envs(finished)
            sub = self.obs[finished]
            _observe(
                h.features,
                self.bar[finished],
                self.state[finished],
                h.last_bid,
                h.last_ask,
                ex.pip,
                self.spec.n_market,
                sub,
            )
            self.obs[finished] = sub
        return self.obs, self.reward, self.done
