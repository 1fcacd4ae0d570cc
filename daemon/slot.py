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

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import structlog

from stairway.core.bar_builder import BarBuilder
from stairway.core.calendar import Calendar
from stairway.core.execution import ExecutionModel, charge_holding_costs, target_units
from stairway.core.features import FeatureBuffer, FeatureSpec
from stairway.core.metrics import PerformanceTracker
from stairway.core.policy import Policy
from stairway.core.position import PS_AVG, PS_REALIZED, PS_UNITS, equity, mark_bar, position_features
from stairway.core.risk_rules import regime_scale
from stairway.core.types import ACTION_NAMES, NS_PER_DAY
from stairway.daemon import slot_quotes
from stairway.daemon.account import Account
from stairway.daemon.orders import OrderManager
from stairway.daemon.paper_broker import OrderGateway
from stairway.daemon.risk import TIER_NAMES, RiskEngine
from stairway.daemon.rows import BarRow, DecisionRow, FinancingRow, ModelSwapRow, PositionRow
from stairway.daemon.sessions import SessionStats
from stairway.daemon.slot_counters import LatencyRing, SlotCounters, SlotMarks, SwapState
from stairway.daemon.slot_journal import SlotJournal
from stairway.daemon.slot_warmup import warm_up_kernels
from stairway.daemon.slot_watch import SlotWatch
from stairway.daemon.store import Store

log = structlog.get_logger("slot")
FX = Calendar()


@dataclass
class SlotOptions:
    """How a slot is run beyond its pipeline: the market's hours, the decision-time clock
    (replay: the closing quote's own time, so a replay is never stale; live: the wall
    clock), what watches it (daemon.slot_watch; none: sessions only) and how many decision
    latencies it keeps."""

    calendar: Calendar = FX
    clock_ns: Callable[[int], int] | None = None
    watch: SlotWatch | None = None
    latency_capacity: int = 4096


class Slot:
    # everything a slot holds (a misspelt attribute set from outside fails instead of being ignored)
    __slots__ = (
        "instrument", "ex", "policy", "account", "builder", "features", "obs", "tracker", "counters",
        "latency", "watch", "calendar", "clock_ns", "journal", "orders", "marks", "swap",
    )  # fmt: skip

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
        options: SlotOptions | None = None,
    ) -> None:
        """``account``: the instrument's account (daemon.account: its risk engine, initial
        equity, margin and tiers; a portfolio's instruments share one); the slot joins it."""
        opt = options or SlotOptions()
        self.instrument, self.ex, self.policy, self.account = instrument, ex, policy, account
        self.builder = bars  # quotes -> bars (core.bar_builder: the period, the side, the jump filter)
        self.features = FeatureBuffer(spec, keep=ex.stop_atr_bars + 1 if ex.stop_atr_multiple > 0.0 else 0)
        self.obs = np.zeros(spec.obs_dim)
        self.tracker = PerformanceTracker(account.initial, ex.pip, ex.trade_units, ex.commission_per_unit)
        # what the risk engine did, in the summary as the trainer's env reports it
        self.tracker.risk = {"flattens": 0, "blocked_intents": 0, "halted_bars": 0}
        self.counters = SlotCounters()
        self.latency = LatencyRing(opt.latency_capacity)
        # sessions, regime, live guard, feature watch and what their verdicts do (daemon.slot_watch)
        self.watch = opt.watch or SlotWatch()
        self.watch.set_model(policy)
        self.calendar = opt.calendar
        self.clock_ns = opt.clock_ns or (lambda closing_ts: closing_ts)
        self.journal = SlotJournal(run_id, instrument, store, self.counters, self.tracker, self.watch)
        self.orders = OrderManager(self.journal, broker, account.risk, ex)  # the book, the working order
        self.marks = SlotMarks(account.initial)
        self.swap = SwapState()  # set by the daemon between batches
        account.add(self)

    # -- read-only views ------------------------------------------------------------------
    @property
    def spec(self) -> FeatureSpec:
        return self.features.spec

    @property
    def risk(self) -> RiskEngine:
        return self.account.risk

    @property
    def position(self) -> np.ndarray:
        """The book (core.position's state), held by the order manager."""
        return self.orders.position

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
        orders = self.orders
        if len(ticks) == 1 and orders.flatten_reason is None:
            return self._on_one(ticks)  # a live feed's usual batch: scalars, no arrays built
        self.counters.ticks += len(ticks)
        closed = self.builder.push(ticks)
        ts, bid, ask = ticks["ts_ns"], ticks["bid"], ticks["ask"]
        acc = closed.accepted
        pos = 0
        if orders.flatten_reason is not None and len(ticks):
            orders.flatten_now(int(ts[0]) - 1)
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
                orders.finish_expiring()
                self._on_bar(bar, last_bid, last_ask, int(ts[j]), last_ts)
                slot_quotes.at_quote(self, ts, bid, ask, j)
                pos = j + 1
        slot_quotes.walk(self, ts, bid, ask, acc, pos, len(ticks))

    def _on_one(self, ticks: np.ndarray) -> None:
        """on_ticks for one quote, step for step the same: a quote that closes a bar ends the
        working order (when it expires) and decides; it is not worked itself (a decision is
        executed only at a quote after its bar's close); any other accepted quote is."""
        self.counters.ticks += 1
        ts, bid, ask = ticks.item(0)  # (a tuple of Python scalars: half the cost of tolist()[0])
        r = self.builder.push_one(ts, bid, ask)
        if r < 0:
            return
        orders = self.orders
        if r == 1:
            orders.finish_expiring()
            bar, last_bid, last_ask, last_ts = self.builder.last_closed()
            self._on_bar(bar, last_bid, last_ask, ts, last_ts)
        else:  # worked at this quote (work with its time known)
            orders.work_one(ticks, ts)
        m = self.marks
        m.last_quote = (bid, ask)
        m.last_quote_ts = ts
        self.account.on_quote(self.instrument, bid, ask)
        if orders.position[PS_UNITS] != 0.0:
            self.protect_at_quote()

    def work(self, ts, bid, ask, acc, start: int, stop: int) -> None:
        """The working order and the stop against quotes [start, stop) (daemon.slot_quotes)."""
        fills = self.orders.broker.work(self.instrument, ts, bid, ask, acc, start, stop)
        # the window's last quote; past the batch's end (an empty window), the batch's last one
        at_ns = int(ts[min(max(start, stop - 1), len(ts) - 1)]) if len(ts) else self.marks.last_quote_ts
        self.orders.take_fills(fills, at_ns)

    def warm_up(self) -> None:
        """Run every kernel once on throwaway state (daemon.slot_warmup): touches nothing traded."""
        warm_up_kernels(self)

    def request_flatten(self, reason: str) -> None:
        """Close the position at the next quotes (control file FLATTEN, operator, risk)."""
        self.orders.flatten_reason = reason

    def cancel_working(self) -> None:
        """Cancel the working order (shutdown), record its final state and the open session."""
        self.orders.finish_order()
        self.journal.close_session()

    def finish(self) -> None:
        """End of data: cancel the working order and close the last bar without deciding."""
        self.orders.finish_order()
        m = self.marks
        for bar in self.builder.flush().tolist():
            self._on_bar(bar, *m.last_quote, closing_ts_ns=None, last_quote_ts=m.last_quote_ts)
        self.journal.close_session()

    # -- bars -----------------------------------------------------------------------------
    def _apply_swap(self, bar_ts: int) -> None:
        new, self.swap.pending = self.swap.pending, None
        assert new is not None  # called only with a swap pending
        old = self.policy
        self.policy = new
        self.counters.swaps += 1
        self.watch.set_model(new)
        self.swap.ramp_day = bar_ts // NS_PER_DAY
        # wall-clock time, as for refusals (daemon._on_refused); the bar it took effect on is in the reason
        why = f"between bars; first decision on the bar opening {bar_ts}"
        self.journal.add(ModelSwapRow(self.journal.run_id, time.time_ns(), old.sha, new.sha, "swapped", why))
        log.info("model_swapped", instrument=self.instrument, old_sha=old.sha[:12], new_sha=new.sha[:12], bar_ts=bar_ts)

    def _size_factor(self, bar_ts: int) -> float:
        sw = self.swap
        days = bar_ts // NS_PER_DAY - sw.ramp_day
        ramp = sw.ramp[min(max(days, 0), len(sw.ramp) - 1)] if self.counters.swaps else 1.0
        r = self.risk.cfg
        return (
            ramp * self.risk.size_factor * regime_scale(self.watch.regime_value, r.regime_bands, r.regime_size_scales)
        )

    def _apply_tiers(self, ts: int, eq: float, equity_open: float) -> None:
        """Drawdown tiers on the account's intraday equity (this instrument's with the others');
        the flatten tier asks every instrument's position to close (daemon.account)."""
        old_tier, tier = self.account.mark(self.instrument, eq, equity_open)
        dd = self.marks.drawdown_pct = self.account.drawdown_pct
        if tier != old_tier:
            self.journal.risk_event(
                ts, f"tier_{TIER_NAMES[tier]}", f"intraday drawdown {dd:.2f} % (tier {old_tier} -> {tier})"
            )
            log.warning(
                "risk_tier_changed", instrument=self.instrument, tier=TIER_NAMES[tier], drawdown_pct=round(dd, 3)
            )
            if tier == 4 and old_tier < 4:
                self.tracker.risk["flattens"] += 1

    def protect_at_quote(self) -> None:
        """An open position is marked and tiered at the last quote of every batch (one quote,
        live), not only at bar closes: from the first quote after a restart, warm or not."""
        m = self.marks
        eq = float(equity(self.orders.position, *m.last_quote, self.account.initial))
        m.equity = eq
        session = self.watch.sessions.current
        if session is None:  # restarted, no bar closed yet: watch from the first quote's equity
            if m.quote_equity_open is None:
                m.quote_equity_open = eq
            equity_open = m.quote_equity_open
        else:
            equity_open = session.equity_open
        self._apply_tiers(m.last_quote_ts, eq, equity_open)
        if self.orders.flatten_reason is not None:
            self.orders.flatten_now(m.last_quote_ts)

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
        if self.orders.flatten_reason is not None:
            self.orders.flatten_now(closing_ts_ns)
            return
        if not self.features.warm:
            return  # no decision before the features have warmed up
        if self.swap.pending is not None:
            self._apply_swap(bar_ts)
        if not self.orders.working:  # else a flatten/corrective order is still working
            action, confidence = self._decide(bar_ts, last_bid, last_ask, session)
            self._act(action, confidence, bar_ts, closing_ts_ns, units, eq)
        self.latency.add(time.perf_counter_ns() - t0)

    def _record_bar(self, bar: tuple) -> int:
        self.counters.bars += 1
        bar_ts, o, h, lo, cl, vol = bar
        self.counters.last_bar_ts = bar_ts
        self.journal.add(BarRow(self.journal.run_id, self.instrument, bar_ts, o, h, lo, cl, int(vol)))
        self.features.push(bar_ts, o, h, lo, cl)
        self.watch.on_close(cl)
        return bar_ts

    def _mark_bar(self, bar_ts: int, last_bid: float, last_ask: float) -> tuple[float, float, SessionStats]:
        """Mark the book at the bar's last quote; roll the session (its metrics, the trade-count
        alert); apply the drawdown tiers; record the position. Returns (units, equity, session)."""
        st = self.orders.position
        ex, m, j = self.ex, self.marks, self.journal
        if m.marked_ts is not None and st[PS_UNITS] != 0.0 and ex.finances:  # rolls since the last bar
            p = self.builder.period_ns
            days, charge = charge_holding_costs(
                st, last_bid, last_ask, m.marked_ts + p, bar_ts + p,
                ex.financing_long, ex.financing_short, ex.roll_offset_ns, ex.triple_weekday,
            )  # fmt: skip
            if charge:
                self.counters.financing += charge
                j.add(FinancingRow(j.run_id, self.instrument, bar_ts, float(st[PS_UNITS]), days, charge))
        m.marked_ts, self.orders.bar_quote = bar_ts, (last_bid, last_ask)  # the decision's quote (price bounds)
        mark_bar(st, last_bid, last_ask, ex.pip)
        eq = m.equity = float(equity(st, last_bid, last_ask, self.account.initial))
        units = float(st[PS_UNITS])
        warm = self.features.warm
        if warm:  # performance is measured over the decisions, as in the trainer's evaluation
            self.tracker.on_bar(bar_ts, units, float(st[PS_REALIZED]), eq)
        done = self.watch.sessions.on_bar(bar_ts, eq)
        if done is not None:
            j.add(done.row(j.run_id, self.instrument))
            self.watch.judge(self, done, bar_ts)
        session = self.watch.sessions.current
        assert session is not None  # on_bar always leaves a session open
        ended = self.risk.new_day(bar_ts // NS_PER_DAY)
        if ended:  # risk.halt_resume = "next_session": a new session trades again
            j.risk_event(bar_ts, "halt_ended", f"new session; the halt was: {ended}")
            log.warning("trading_resumed", instrument=self.instrument, reason="next session", halt=ended)
        self._apply_tiers(bar_ts, eq, session.equity_open)
        if warm and self.risk.state.halted:
            self.tracker.risk["halted_bars"] += 1
        j.add(PositionRow(j.run_id, self.instrument, bar_ts, units, float(st[PS_AVG]), float(st[PS_REALIZED]), eq))
        return units, eq, session

    def _decide(self, bar_ts: int, last_bid: float, last_ask: float, session: SessionStats) -> tuple[int, float]:
        """The policy's action and confidence on this bar's observation, counted."""
        spec = self.features.spec
        market = self.obs[: spec.n_market]
        try:  # a feature plug-in (the operator's code) or the model failing on one bar: hold
            self.features.compute(market)
            if self.watch.feature_watch is not None and (ev := self.watch.feature_watch.update(market)):
                self.journal.risk_event(bar_ts, *ev)
            position_features(self.orders.position, last_bid, last_ask, self.ex.pip, self.obs[spec.n_market :])
            action, confidence = self.policy.act(self.obs)
        except Exception as e:  # noqa: BLE001 - the daemon lives
            self.counters.policy_errors += 1
            log.error("policy_failed", instrument=self.instrument, sha=self.policy.sha[:12], error=repr(e)[:300])
            action, confidence = 0, 0.0
        c = self.counters
        if c.first_decision_bar_ts is None:
            c.first_decision_bar_ts = bar_ts
        c.decisions += 1
        c.actions[ACTION_NAMES[action]] += 1
        session.decisions += 1
        session.holds += self.tracker.on_decision(action, self.orders.units)
        return action, confidence

    def _act(self, action: int, confidence: float, bar_ts: int, closing_ts_ns: int, units: float, eq: float) -> None:
        """Size the action's order, ask risk what may go out, record the decision, submit."""
        orders = self.orders
        balance = self.account.initial + float(orders.position[PS_REALIZED])
        sf = self.policy.card.safe_f  # with execution.safe_f_sizing the model's safe-f scales risk
        size, orders.stop_distance = self.ex.size_and_stop(action, units, self.features.atr, balance, sf)
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
        j = self.journal
        j.add(
            DecisionRow(
                j.run_id,
                self.instrument,
                bar_ts,
                ACTION_NAMES[action],
                confidence,
                self.policy.sha,
                units,
                eq,
                risk.units,
                "; ".join(n for n in (orders.stop_note, self.policy.note, risk.note) if n),
                self.watch.regime_value if self.watch.regime is not None else None,
            ),
        )
        orders.stop_note = ""
        if wanted != 0.0:
            j.risk_event(closing_ts_ns, risk.kind or "pass", risk.note or "order allowed", wanted, risk.units)
        if risk.units != 0.0:
            orders.submit(risk.units, bar_ts, closing_ts_ns)
