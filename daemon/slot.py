"""One instrument's pipeline: quotes -> bars -> features -> policy -> risk -> broker -> store.

Per batch of quotes the BarBuilder kernel runs once; Python work happens only per closed
bar. For each bar closed in the batch, in time order: the working order gets the quotes up
to (not including) the closing quote and its remainder is cancelled; the bar is marked at
its own last quote; a pending model swap is applied (between bars); a decision is taken
on the closed bar; its order is worked from the quote after the closing quote, no earlier
than the closing quote's time plus latency. The trainer's environment follows the same
sequence with the same core functions.

Risk: every wanted order goes through the RiskEngine (limits, tiers, control files,
market hours, stale data); fills are checked for over-fills, whose excess is flattened;
the flatten tier closes the position and asks the daemon to roll the model back to gold.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np
import structlog

from stairway.core.bar_builder import BarBuilder
from stairway.core.calendar import Calendar
from stairway.core.execution import ExecutionModel, charge_holding_costs, price_bound, stop_price, target_units
from stairway.core.features import FeatureBuffer, FeatureSpec
from stairway.core.metrics import PerformanceTracker
from stairway.core.policy import Policy
from stairway.core.position import (
    PS_AVG,
    PS_REALIZED,
    PS_UNITS,
    apply_fill,
    equity,
    mark_bar,
    new_state,
    position_features,
)
from stairway.core.risk_rules import regime_scale
from stairway.core.types import ACTION_NAMES, NS_PER_DAY, Fill, OrderIntent, Side, client_order_id, is_stop_id
from stairway.daemon import slot_quotes
from stairway.daemon.account import Account
from stairway.daemon.paper_broker import OrderGateway
from stairway.daemon.risk import TIER_NAMES
from stairway.daemon.rows import (
    BarRow,
    BookRow,
    DecisionRow,
    FillRow,
    FinancingRow,
    ModelSwapRow,
    OrderRow,
    PositionRow,
    RiskEventRow,
)
from stairway.daemon.sessions import SessionStats
from stairway.daemon.slot_counters import LatencyRing, SlotCounters
from stairway.daemon.slot_warmup import warm_up_kernels
from stairway.daemon.slot_watch import SlotWatch
from stairway.daemon.store import Store

log = structlog.get_logger("slot")
FX = Calendar()
_ONE_ACCEPTED = np.ones(1, dtype=np.bool_)  # a one-quote batch that the bar builder accepted

# risk events an operator is alerted to at once (daemon.alerts), by kind prefix; the drawdown
# tiers are alerted by the daemon once they have held (daemon.alerts.Conditions)
ALERTED = (
    "overfill",
    "trade_count_alert",
    "flatten",
    "reconcile_",
    "emergency_",
    "live_",
    "feature_drift",
    "price_bound",
)


class Slot:
    def __init__(
        self,
        run_id: str,
        instrument: str,
        spec: FeatureSpec,
        bars: BarBuilder,
        ex: ExecutionModel,
        policy: Policy,
        broker: OrderGateway,
        store: Store,
        account: Account,
        latency_capacity: int = 4096,
        calendar: Calendar = FX,
        clock_ns: Callable[[int], int] | None = None,
        watch: SlotWatch | None = None,
    ) -> None:
        """``account``: the instrument's account (daemon.account: its risk engine, initial
        equity, margin and tiers; a portfolio's instruments share one); the slot joins it."""
        self.run_id, self.instrument = run_id, instrument
        self.spec, self.ex, self.initial_equity = spec, ex, account.initial
        self.policy, self.broker, self.risk, self.store = policy, broker, account.risk, store
        self.builder = bars  # quotes -> bars (core.bar_builder: the period, the side, the jump filter)
        self.features = FeatureBuffer(spec, keep=ex.stop_atr_bars + 1 if ex.stop_atr_multiple > 0.0 else 0)
        self.position = new_state()
        self.obs = np.zeros(spec.obs_dim)
        self.tracker = PerformanceTracker(account.initial, ex.pip, ex.trade_units, ex.commission_per_unit)
        # what the risk engine did, in the summary as the trainer's env reports it
        self.tracker.risk = {"flattens": 0, "blocked_intents": 0, "halted_bars": 0}
        self.counters = SlotCounters()
        self._bar_quote = (math.nan, math.nan)  # the last marked bar's last quote: a decision's reference
        self.stop_note = ""  # why the position last ended at its stop: on the next decision's row
        self.stop_distance = ex.stop_distance  # the last decision's (core.protection); a missing stop goes back there
        self.new_fills: list[Fill] = []
        self.latency = LatencyRing(latency_capacity)
        self.account = account
        account.add(self)
        # sessions, regime, live guard, feature watch and what their verdicts do (daemon.slot_watch)
        self.watch = watch or SlotWatch()
        self.watch.set_model(policy)
        self.calendar = calendar
        # decision-time clock: replay uses the closing quote's own time (so a replay is never
        # stale); live passes the wall clock
        self.clock_ns = clock_ns or (lambda closing_ts: closing_ts)
        # hot-swap state, set by the daemon between batches
        self.pending_policy: Policy | None = None
        self.ramp: tuple[float, ...] = (1.0,)
        self._ramp_day = 0
        self._flatten_reason: str | None = None
        self._last_quote = (np.nan, np.nan)
        self._last_quote_ts = 0
        self._seq: dict[int, int] = {}
        self.first_decision_bar_ts: int | None = None
        self.last_bar_ts: int | None = None
        self._marked_ts: int | None = None  # the last bar marked: financing charges the rolls since
        self.equity = account.initial
        self.drawdown_pct = 0.0
        self._quote_equity_open: float | None = None  # see _protect_at_quote
        # live brokers: the book is persisted with every fill (committed together with the
        # broker's fill ids); whether orders may go out is the risk engine's Permission
        self.persist_book = False

    # -- what the risk engine's Permission says of this instrument (read-only views) -------
    @property
    def trading_enabled(self) -> bool:
        return self.risk.permission.control_allows

    @property
    def broker_ready(self) -> bool:
        return self.instrument not in self.risk.permission.not_reconciled

    @property
    def data_stale(self) -> bool:
        return self.instrument in self.risk.permission.stale

    # -- quotes ---------------------------------------------------------------------------
    def on_ticks(self, ticks: np.ndarray) -> None:
        if len(ticks) == 1 and self._flatten_reason is None:
            return self._on_one(ticks)  # a live feed's usual batch: scalars, no arrays built
        self.counters.ticks += len(ticks)
        closed = self.builder.push(ticks)
        ts, bid, ask = ticks["ts_ns"], ticks["bid"], ticks["ask"]
        acc = closed.accepted
        pos = 0
        if self._flatten_reason is not None and len(ticks):
            self._flatten_now(int(ts[0]) - 1)
        if len(closed):
            rows = zip(
                closed.bars.tolist(),
                closed.close_idx.tolist(),
                closed.last_bid.tolist(),
                closed.last_ask.tolist(),
                closed.last_ts.tolist(),
            )
            for bar, j, last_bid, last_ask, last_ts in rows:
                slot_quotes.walk(self, ts, bid, ask, acc, pos, j)  # as one at a time (daemon.slot_quotes)
                order = self.broker.working.get(self.instrument)
                if order is not None and order.expires:
                    self._finish_order()
                self._on_bar(bar, last_bid, last_ask, int(ts[j]), last_ts)
                slot_quotes.at_quote(self, ts, bid, ask, j)
                pos = j + 1
        slot_quotes.walk(self, ts, bid, ask, acc, pos, len(ticks))

    def _on_one(self, ticks: np.ndarray) -> None:
        """on_ticks for one quote, step for step the same: a quote that closes a bar ends the
        working order (when it expires) and decides; it is not worked itself (a decision is
        executed only at a quote after its bar's close); any other accepted quote is."""
        self.counters.ticks += 1
        ts, bid, ask = ticks.tolist()[0]
        r = self.builder.push_one(ts, bid, ask)
        if r < 0:
            return
        if r == 1:
            order = self.broker.working.get(self.instrument)
            if order is not None and order.expires:
                self._finish_order()
            bar, last_bid, last_ask, last_ts = self.builder.last_closed()
            self._on_bar(bar, last_bid, last_ask, ts, last_ts)
        else:  # worked at this quote (_work with its time known)
            fills = self.broker.work(self.instrument, ticks["ts_ns"], ticks["bid"], ticks["ask"], _ONE_ACCEPTED, 0, 1)
            self._take_fills(fills, ts)
        self._last_quote = (bid, ask)
        self._last_quote_ts = ts
        self.account.on_quote(self.instrument, bid, ask)
        if self.position[PS_UNITS] != 0.0:
            self._protect_at_quote()

    def warm_up(self) -> None:
        """Run every kernel once on throwaway state (daemon.slot_warmup): touches nothing traded."""
        warm_up_kernels(self)

    def request_flatten(self, reason: str) -> None:
        """Close the position at the next quotes (control file FLATTEN, operator, risk)."""
        self._flatten_reason = reason

    def cancel_working(self) -> None:
        """Cancel the working order (shutdown), record its final state and the open session."""
        self._finish_order()
        self._close_session()

    def finish(self) -> None:
        """End of data: cancel the working order and close the last bar without deciding."""
        self._finish_order()
        for bar in self.builder.flush().tolist():
            self._on_bar(bar, *self._last_quote, closing_ts_ns=None, last_quote_ts=self._last_quote_ts)
        self._close_session()

    # -- live brokers ---------------------------------------------------------------------
    def apply_pending_fills(self, now_ns: int) -> None:
        """Apply the fills a live broker reported between quotes (called on the event loop,
        at once, by the router): the one way live fills reach the book."""
        self._take_fills(self.broker.pending_fills(self.instrument), now_ns)

    def set_position(self, units: float, avg_price: float, realized: float | None = None) -> None:
        """Adopt the broker's view (reconciliation, restart); realised PnL is kept."""
        st = self.position
        st[PS_UNITS] = units
        st[PS_AVG] = avg_price if units else 0.0
        if realized is not None:
            st[PS_REALIZED] = realized
        self.risk.on_position(self.instrument, units)
        self._persist_book()

    def seed_order_seq(self, bar_ts: int, seq: int) -> None:
        """Continue client ids after the newest journaled one, so none is ever reused."""
        self._seq = {bar_ts: seq}

    def submit_correction(self, units: float, now_ns: int, reason: str, kind: str) -> bool:
        """A corrective order from reconciliation; False while another order is working."""
        if self.instrument in self.broker.working:
            return False
        self._risk_event(now_ns, kind, reason, units, units)
        self._submit(units, self.last_bar_ts or now_ns, now_ns, expires=False)
        return True

    def _persist_book(self) -> None:
        if self.persist_book:
            units, avg, realized = (float(self.position[k]) for k in (PS_UNITS, PS_AVG, PS_REALIZED))
            self.store.add(BookRow(self.instrument, units, avg, realized, time.time_ns(), self.run_id))

    # -- orders and fills -----------------------------------------------------------------
    def _next_id(self, bar_ts: int) -> str:
        seq = self._seq.get(bar_ts, -1) + 1
        self._seq = {bar_ts: seq}  # bounded: only the current bar's counter is kept
        return client_order_id(self.instrument, bar_ts, seq)

    def _submit(self, units: float, bar_ts: int, after_ts: int, expires: bool = True) -> None:
        """A decision's order (``expires``) is bounded by its quote (core.execution.price_bound);
        a flatten or correction is not: it must close whatever the price."""
        bound = price_bound(units, *self._bar_quote, self.ex.bound_tolerance) if expires else math.nan
        target = float(self.position[PS_UNITS]) + units
        stop = stop_price(target, *self._bar_quote, self.stop_distance) if expires else 0.0  # its fills arm it
        trail = self.stop_distance if stop and self.ex.stop_trailing else 0.0
        head = (self._next_id(bar_ts), self.instrument, Side.BUY if units > 0 else Side.SELL, abs(units), bar_ts)
        intent = OrderIntent(*head, after_ts, None if bound != bound else bound, stop, trail)
        self.broker.submit(intent, after_ts + self.ex.latency_ns, expires)
        self.risk.on_working(self.instrument, units)
        self.counters.orders += 1
        self.risk.on_order(self.instrument)
        if self.watch.sessions.current is not None:
            self.watch.sessions.current.orders += 1

    def _flatten_now(self, after_ts: int) -> None:
        self._finish_order()
        if self.instrument in self.broker.working:  # a live order's outcome is not known yet: later
            return
        reason, self._flatten_reason = self._flatten_reason, None
        units = float(self.position[PS_UNITS])
        self._risk_event(after_ts, "flatten", reason or "flatten requested", -units, -units)
        if units != 0.0:  # worked until filled, not cancelled at the next bar close
            self._submit(-units, self.last_bar_ts or after_ts, after_ts, expires=False)

    def _work(self, ts, bid, ask, acc, start: int, stop: int) -> None:
        fills = self.broker.work(self.instrument, ts, bid, ask, acc, start, stop)
        # the window's last quote; past the batch's end (an empty window), the batch's last one
        at_ns = int(ts[min(max(start, stop - 1), len(ts) - 1)]) if len(ts) else self._last_quote_ts
        self._take_fills(fills, at_ns)

    def _take_fills(self, fills: list, at_ns: int) -> None:
        """Book the fills, then settle the working order: an overfill is flattened at once (from
        ``at_ns``), a filled order stops blocking decisions."""
        if not fills:  # most quotes: nothing booked, the risk engine's figures stand
            order = self.broker.working.get(self.instrument)
            if order is not None and order.remaining == 0.0:
                self._finish_order()  # a live order the broker ended unfilled (daemon.order_router)
            return
        for f in fills:
            signed = f.units * int(f.side)
            apply_fill(self.position, signed, f.price, f.commission)
            if is_stop_id(f.client_order_id):  # the protective stop (paper: core.execution.work_quotes)
                self._risk_event(f.ts_ns, "stop_filled", f"protective stop: {signed:+g} at {f.price}")
                self.stop_note = f"the position ended at its protective stop ({signed:+g} at {f.price})"
            self.store.add(
                FillRow(self.run_id, f.client_order_id, f.seq, f.instrument, f.ts_ns, signed, f.price, f.commission)
            )
            self.counters.fills += 1
            self.new_fills.append(f)
            if self.watch.sessions.current is not None:
                self.watch.sessions.current.fills += 1
        self._persist_book()
        order = self.broker.working.get(self.instrument)
        if order is not None and order.filled > 0:
            requested = order.intent.units * int(order.intent.side)
            excess = self.risk.check_fill(requested, order.filled * int(order.intent.side))
            if excess:
                self._finish_order()
                self._risk_event(
                    at_ns,
                    "overfill",
                    f"filled {order.filled:g} for {order.intent.units:g} requested; flattening the excess",
                    requested,
                    -excess,
                )
                self._submit(-excess, order.intent.bar_ts_ns, at_ns, expires=False)
                order = None
        if order is not None and order.remaining == 0.0:
            self._finish_order()  # done: a flatten/corrective order stops blocking decisions
        self.risk.on_position(self.instrument, float(self.position[PS_UNITS]))
        order = self.broker.working.get(self.instrument)
        self.risk.on_working(self.instrument, order.remaining if order is not None else 0.0)

    def _finish_order(self) -> None:
        order = self.broker.finish(self.instrument)
        self.risk.on_working(self.instrument, 0.0)
        if order is None:
            return
        total, i = order.intent.units, order.intent
        status = "filled" if order.filled >= total - 1e-9 else ("partial" if order.filled > 0 else "cancelled")
        if order.bounded:  # the market moved past the decision's bound: counted, alerted, decided afresh
            status += " (price bound)"
            self.counters.bound_cancels += 1
            what = (
                f"order {i.client_order_id} cancelled after {order.filled:g} of {total:g}: price beyond {i.price_bound}"
            )
            self._risk_event(order.not_before_ns, "price_bound", what)
        sign = int(i.side)
        self.store.add(OrderRow(self.run_id, i.client_order_id, i.instrument, i.bar_ts_ns, total * sign,
                                order.filled * sign, status, order.not_before_ns))  # fmt: skip

    def _risk_event(
        self, ts_ns: int, kind: str, detail: str, requested: float | None = None, allowed: float | None = None
    ) -> None:
        self.store.add(RiskEventRow(self.run_id, ts_ns, self.instrument, kind, detail, requested, allowed))
        if self.watch.alert is not None and kind.startswith(ALERTED):
            self.watch.alert(kind, f"{self.instrument}: {detail}", key=f"{kind}:{self.instrument}", level="warning")
        if kind != "pass":
            self.counters.risk_events[kind] = self.counters.risk_events.get(kind, 0) + 1
            if requested is not None and allowed is not None and abs(allowed) < abs(requested) - 1e-9:
                self.counters.blocked_intents += 1  # refused or cut down
                self.tracker.risk["blocked_intents"] += 1

    def _close_session(self) -> None:
        done = self.watch.sessions.close()
        if done is not None:
            self.store.add(done.row(self.run_id, self.instrument))

    # -- bars -----------------------------------------------------------------------------
    def _apply_swap(self, bar_ts: int) -> None:
        new, self.pending_policy = self.pending_policy, None
        assert new is not None  # called only with a swap pending
        old = self.policy
        self.policy = new
        self.counters.swaps += 1
        self.watch.set_model(new)
        self._ramp_day = bar_ts // NS_PER_DAY
        # wall-clock time, as for refusals (daemon._on_refused); the bar it took effect on is in the reason
        why = f"between bars; first decision on the bar opening {bar_ts}"
        self.store.add(ModelSwapRow(self.run_id, time.time_ns(), old.sha, new.sha, "swapped", why))
        log.info("model_swapped", instrument=self.instrument, old_sha=old.sha[:12], new_sha=new.sha[:12], bar_ts=bar_ts)

    def _size_factor(self, bar_ts: int) -> float:
        days = bar_ts // NS_PER_DAY - self._ramp_day
        ramp = self.ramp[min(max(days, 0), len(self.ramp) - 1)] if self.counters.swaps else 1.0
        r = self.risk.cfg
        return (
            ramp * self.risk.size_factor * regime_scale(self.watch.regime_value, r.regime_bands, r.regime_size_scales)
        )

    def _apply_tiers(self, ts: int, eq: float, equity_open: float) -> None:
        """Drawdown tiers on the account's intraday equity (this instrument's with the others');
        the flatten tier asks every instrument's position to close (daemon.account)."""
        old_tier, tier = self.account.mark(self.instrument, eq, equity_open)
        self.drawdown_pct = self.account.drawdown_pct
        if tier != old_tier:
            self._risk_event(
                ts,
                f"tier_{TIER_NAMES[tier]}",
                f"intraday drawdown {self.drawdown_pct:.2f} % (tier {old_tier} -> {tier})",
            )
            log.warning(
                "risk_tier_changed",
                instrument=self.instrument,
                tier=TIER_NAMES[tier],
                drawdown_pct=round(self.drawdown_pct, 3),
            )
            if tier == 4 and old_tier < 4:
                self.tracker.risk["flattens"] += 1

    def _protect_at_quote(self) -> None:
        """An open position is marked and tiered at the last quote of every batch (one quote,
        live), not only at bar closes: from the first quote after a restart, warm or not."""
        bid, ask = self._last_quote
        eq = float(equity(self.position, bid, ask, self.initial_equity))
        self.equity = eq
        session = self.watch.sessions.current
        if session is None:  # restarted, no bar closed yet: watch from the first quote's equity
            if self._quote_equity_open is None:
                self._quote_equity_open = eq
            equity_open = self._quote_equity_open
        else:
            equity_open = session.equity_open
        self._apply_tiers(self._last_quote_ts, eq, equity_open)
        if self._flatten_reason is not None:
            self._flatten_now(self._last_quote_ts)

    def _on_bar(
        self, bar: tuple, last_bid: float, last_ask: float, closing_ts_ns: int | None, last_quote_ts: int
    ) -> None:
        """A closed bar: record it, mark and protect the book (from the first bar, warm or
        not: a position restored at a restart is protected before the policy can decide
        again), then, when a later quote can execute it, decide and act. ``bar`` is a
        BAR_DTYPE row as a tuple: (ts_ns, open, high, low, close, volume)."""
        t0 = time.perf_counter_ns()
        bar_ts = self._record_bar(bar)
        units, eq, session = self._mark_bar(bar_ts, last_bid, last_ask)
        if closing_ts_ns is None:
            return  # no later quote exists: nothing could execute a decision
        if self._flatten_reason is not None:
            self._flatten_now(closing_ts_ns)
            return
        if not self.features.warm:
            return  # no decision before the features have warmed up
        if self.pending_policy is not None:
            self._apply_swap(bar_ts)
        if self.instrument not in self.broker.working:  # else a flatten/corrective order is still working
            action, confidence = self._decide(bar_ts, last_bid, last_ask, session)
            self._act(action, confidence, bar_ts, closing_ts_ns, units, eq)
        self.latency.add(time.perf_counter_ns() - t0)

    def _record_bar(self, bar: tuple) -> int:
        self.counters.bars += 1
        bar_ts, o, h, lo, cl, vol = bar
        self.last_bar_ts = bar_ts
        self.store.add(BarRow(self.run_id, self.instrument, bar_ts, o, h, lo, cl, int(vol)))
        self.features.push(bar_ts, o, h, lo, cl)
        self.watch.on_close(cl)
        return bar_ts

    def _mark_bar(self, bar_ts: int, last_bid: float, last_ask: float) -> tuple[float, float, SessionStats]:
        """Mark the book at the bar's last quote; roll the session (its metrics, the trade-count
        alert); apply the drawdown tiers; record the position. Returns (units, equity, session)."""
        st = self.position
        ex = self.ex
        if self._marked_ts is not None and st[PS_UNITS] != 0.0 and ex.finances:  # rolls since the last bar
            p = self.builder.period_ns
            days, charge = charge_holding_costs(
                st, last_bid, last_ask, self._marked_ts + p, bar_ts + p,
                ex.financing_long, ex.financing_short, ex.roll_offset_ns, ex.triple_weekday,
            )  # fmt: skip
            if charge:
                self.counters.financing += charge
                self.store.add(FinancingRow(self.run_id, self.instrument, bar_ts, float(st[PS_UNITS]), days, charge))
        self._marked_ts, self._bar_quote = bar_ts, (last_bid, last_ask)  # the decision's quote (price bounds)
        mark_bar(st, last_bid, last_ask, self.ex.pip)
        eq = float(equity(st, last_bid, last_ask, self.initial_equity))
        units = float(st[PS_UNITS])
        self.equity = eq
        warm = self.features.warm
        if warm:  # performance is measured over the decisions, as in the trainer's evaluation
            self.tracker.on_bar(bar_ts, units, float(st[PS_REALIZED]), eq)
        done = self.watch.sessions.on_bar(bar_ts, eq)
        if done is not None:
            self.store.add(done.row(self.run_id, self.instrument))
            self.watch.judge(self, done, bar_ts)
        session = self.watch.sessions.current
        assert session is not None  # on_bar always leaves a session open
        ended = self.risk.new_day(bar_ts // NS_PER_DAY)
        if ended:  # risk.halt_resume = "next_session": a new session trades again
            self._risk_event(bar_ts, "halt_ended", f"new session; the halt was: {ended}")
            log.warning("trading_resumed", instrument=self.instrument, reason="next session", halt=ended)
        self._apply_tiers(bar_ts, eq, session.equity_open)
        if warm and self.risk.state.halted:
            self.tracker.risk["halted_bars"] += 1
        self.store.add(
            PositionRow(self.run_id, self.instrument, bar_ts, units, float(st[PS_AVG]), float(st[PS_REALIZED]), eq)
        )
        return units, eq, session

    def _decide(self, bar_ts: int, last_bid: float, last_ask: float, session: SessionStats) -> tuple[int, float]:
        """The policy's action and confidence on this bar's observation, counted."""
        market = self.obs[: self.spec.n_market]
        try:  # a feature plug-in (the operator's code) or the model failing on one bar: hold
            self.features.compute(market)
            if self.watch.feature_watch is not None and (ev := self.watch.feature_watch.update(market)):
                self._risk_event(bar_ts, *ev)
            position_features(self.position, last_bid, last_ask, self.ex.pip, self.obs[self.spec.n_market :])
            action, confidence = self.policy.act(self.obs)
        except Exception as e:  # noqa: BLE001 - the daemon lives
            self.counters.policy_errors += 1
            log.error("policy_failed", instrument=self.instrument, sha=self.policy.sha[:12], error=repr(e)[:300])
            action, confidence = 0, 0.0
        if self.first_decision_bar_ts is None:
            self.first_decision_bar_ts = bar_ts
        self.counters.decisions += 1
        self.counters.actions[ACTION_NAMES[action]] += 1
        session.decisions += 1
        session.holds += self.tracker.on_decision(action, float(self.position[PS_UNITS]))
        return action, confidence

    def _act(self, action: int, confidence: float, bar_ts: int, closing_ts_ns: int, units: float, eq: float) -> None:
        """Size the action's order, ask risk what may go out, record the decision, submit."""
        balance = self.initial_equity + float(self.position[PS_REALIZED])
        sf = self.policy.card.safe_f  # with execution.safe_f_sizing the model's safe-f scales risk
        size, self.stop_distance = self.ex.size_and_stop(action, units, self.features.atr, balance, sf)
        size *= self._size_factor(bar_ts)
        wanted = float(target_units(action, units, size)) - units
        gap = (self.clock_ns(closing_ts_ns) - closing_ts_ns) / 1e9
        risk = self.risk.check(
            self.instrument,
            units,
            wanted,
            market_is_open=self.calendar.is_open(closing_ts_ns),
            quote_gap_secs=gap,
        )
        self.store.add(
            DecisionRow(
                self.run_id,
                self.instrument,
                bar_ts,
                ACTION_NAMES[action],
                confidence,
                self.policy.sha,
                units,
                eq,
                risk.units,
                "; ".join(n for n in (self.stop_note, self.policy.note, risk.note) if n),
                self.watch.regime_value if self.watch.regime is not None else None,
            ),
        )
        self.stop_note = ""
        if wanted != 0.0:
            self._risk_event(closing_ts_ns, risk.kind or "pass", risk.note or "order allowed", wanted, risk.units)
        if risk.units != 0.0:
            self._submit(risk.units, bar_ts, closing_ts_ns)
