"""One instrument's pipeline: quotes -> bars -> features -> policy -> risk -> broker -> store.

Per batch of quotes the BarBuilder kernel runs once; Python work happens only per closed
bar. For each bar closed in the batch, in time order: the working order gets the quotes up
to (not including) the closing quote and its remainder is cancelled; the bar is marked at
its own last quote; a decision is taken on the closed bar; its order is worked from the
quote after the closing quote, no earlier than the closing quote's time plus latency.
The trainer's environment follows the same sequence with the same core functions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import time

import numpy as np
import structlog

from core.bar_builder import BarBuilder
from core.execution import ExecutionModel
from core.features import FeatureBuffer, FeatureSpec
from core.metrics import PerformanceTracker
from core.policy import Policy
from core.position import (PS_AVG, PS_REALIZED, PS_UNITS, apply_fill, equity, mark_bar, new_state,
                           position_features)
from core.types import ACTION_NAMES, Fill, OrderIntent, Side, client_order_id
from daemon.paper_broker import PaperBroker
from daemon.risk import RiskEngine
from daemon.sessions import SessionTracker
from daemon.store import Store

log = structlog.get_logger("slot")


@dataclass
class SlotCounters:
    ticks: int = 0
    bars: int = 0
    decisions: int = 0
    orders: int = 0
    fills: int = 0
    actions: dict[str, int] = field(default_factory=lambda: {a: 0 for a in ACTION_NAMES})


class LatencyRing:
    """The last ``capacity`` decision latencies (bar closed -> order intent handed over), ns."""

    def __init__(self, capacity: int = 4096) -> None:
        self.values = np.zeros(capacity, dtype=np.int64)
        self.count = 0

    def add(self, ns: int) -> None:
        self.values[self.count % len(self.values)] = ns
        self.count += 1

    def snapshot(self) -> np.ndarray:
        return self.values[: min(self.count, len(self.values))].copy()


class Slot:
    def __init__(self, run_id: str, instrument: str, spec: FeatureSpec, bar_price: str, period_ns: int,
                 ex: ExecutionModel, initial_equity: float, policy: Policy, broker: PaperBroker,
                 risk: RiskEngine, store: Store, latency_capacity: int = 4096) -> None:
        self.run_id, self.instrument = run_id, instrument
        self.spec, self.ex, self.initial_equity = spec, ex, initial_equity
        self.policy, self.broker, self.risk, self.store = policy, broker, risk, store
        self.builder = BarBuilder(period_ns, bar_price)
        self.features = FeatureBuffer(spec)
        self.position = new_state()
        self.obs = np.zeros(spec.obs_dim)
        self.tracker = PerformanceTracker(initial_equity, ex.pip, ex.trade_units)
        self.counters = SlotCounters()
        self.new_fills: list[Fill] = []
        self._last_quote = (np.nan, np.nan)
        self.first_decision_bar_ts: int | None = None
        self.latency = LatencyRing(latency_capacity)
        self.sessions = SessionTracker()
        self.last_bar_ts: int | None = None

    # -- quotes ---------------------------------------------------------------------------
    def on_ticks(self, ticks: np.ndarray) -> None:
        self.counters.ticks += len(ticks)
        closed = self.builder.push(ticks)
        ts, bid, ask = ticks["ts_ns"], ticks["bid"], ticks["ask"]
        acc = closed.accepted
        pos = 0
        if len(closed):
            rows = zip(closed.bars.tolist(), closed.close_idx.tolist(), closed.last_bid.tolist(),
                       closed.last_ask.tolist())
            for bar, j, last_bid, last_ask in rows:
                self._work(ts, bid, ask, acc, pos, j)
                self._finish_order()
                self._on_bar(bar, last_bid, last_ask, int(ts[j]))
                pos = j + 1
        self._work(ts, bid, ask, acc, pos, len(ticks))
        if acc.any():
            last = int(np.flatnonzero(acc)[-1])
            self._last_quote = (float(bid[last]), float(ask[last]))

    def cancel_working(self) -> None:
        """Cancel the working order (shutdown), record its final state and the open session."""
        self._finish_order()
        self._close_session()

    def finish(self) -> None:
        """End of data: cancel the working order and close the last bar without deciding."""
        self._finish_order()
        for bar in self.builder.flush().tolist():
            self._on_bar(bar, *self._last_quote, closing_ts_ns=None)
        self._close_session()

    def _close_session(self) -> None:
        done = self.sessions.close()
        if done is not None:
            self.store.add("session_metrics", done.row(self.run_id, self.instrument))

    # -- internals ------------------------------------------------------------------------
    def _work(self, ts, bid, ask, acc, start: int, stop: int) -> None:
        for f in self.broker.work(self.instrument, ts, bid, ask, acc, start, stop):
            signed = f.units * int(f.side)
            apply_fill(self.position, signed, f.price, f.commission)
            self.store.add("fills", (self.run_id, f.client_order_id, f.seq, f.instrument, f.ts_ns,
                                     signed, f.price, f.commission))
            self.counters.fills += 1
            self.new_fills.append(f)
            if self.sessions.current is not None:
                self.sessions.current.fills += 1

    def _finish_order(self) -> None:
        order = self.broker.finish(self.instrument)
        if order is None:
            return
        total = order.intent.units
        status = "filled" if order.filled >= total - 1e-9 else ("partial" if order.filled > 0 else "cancelled")
        i = order.intent
        self.store.add("orders", (self.run_id, i.client_order_id, i.instrument, i.bar_ts_ns, total * int(i.side),
                                  order.filled * int(i.side), status, order.not_before_ns))

    def _on_bar(self, bar: tuple, last_bid: float, last_ask: float, closing_ts_ns: int | None) -> None:
        """``bar`` is a BAR_DTYPE row as a tuple: (ts_ns, open, high, low, close, volume)."""
        t0 = time.perf_counter_ns()
        c = self.counters
        c.bars += 1
        bar_ts, o, h, lo, cl, vol = bar
        self.last_bar_ts = bar_ts
        self.store.add("bars", (self.run_id, self.instrument, bar_ts, o, h, lo, cl, int(vol)))
        self.features.push(bar_ts, o, h, lo, cl)
        if not self.features.warm:
            return
        st = self.position
        mark_bar(st, last_bid, last_ask, self.ex.pip)
        eq = float(equity(st, last_bid, last_ask, self.initial_equity))
        units = float(st[PS_UNITS])
        self.tracker.on_bar(bar_ts, units, float(st[PS_REALIZED]), eq)
        done = self.sessions.on_bar(bar_ts, eq)
        if done is not None:
            self.store.add("session_metrics", done.row(self.run_id, self.instrument))
        session = self.sessions.current
        self.store.add("positions", (self.run_id, self.instrument, bar_ts, units, float(st[PS_AVG]),
                                     float(st[PS_REALIZED]), eq))
        if closing_ts_ns is None:
            return  # no later quote exists: nothing could execute a decision
        self.features.compute(self.obs[: self.spec.n_market])
        position_features(st, last_bid, last_ask, self.ex.pip, self.obs[self.spec.n_market :])
        action, confidence = self.policy.act(self.obs)
        if self.first_decision_bar_ts is None:
            self.first_decision_bar_ts = bar_ts
        c.decisions += 1
        c.actions[ACTION_NAMES[action]] += 1
        self.tracker.on_decision(action)
        session.decisions += 1
        session.holds += action == 0
        wanted = self.ex.order_units(action, units)
        risk = self.risk.check(units, wanted)
        self.store.add("decisions", (self.run_id, self.instrument, bar_ts, ACTION_NAMES[action], confidence,
                                     self.policy.sha, units, eq, risk.units, risk.note))
        if risk.note:
            self.store.event(self.run_id, closing_ts_ns, "risk_reduced", instrument=self.instrument, note=risk.note)
        if risk.units != 0.0:
            intent = OrderIntent(client_order_id(self.instrument, bar_ts, 0), self.instrument,
                                 Side.BUY if risk.units > 0 else Side.SELL, abs(risk.units), bar_ts, closing_ts_ns)
            self.broker.submit(intent, closing_ts_ns + self.ex.latency_ns)
            c.orders += 1
            session.orders += 1
        self.latency.add(time.perf_counter_ns() - t0)
