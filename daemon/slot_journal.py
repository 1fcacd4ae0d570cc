"""What one instrument's slot writes: rows under the run's id, and risk events (a row; an
alert at once for the kinds in ``ALERTED``; counted, and counted as blocked where the risk
engine refused or cut an order down). The slot's pipeline and its order manager
(daemon.orders) write through the same journal."""

from __future__ import annotations

from typing import Any

from stairway.core.metrics import PerformanceTracker
from stairway.daemon.rows import RiskEventRow
from stairway.daemon.slot_counters import SlotCounters
from stairway.daemon.slot_watch import SlotWatch
from stairway.daemon.store import Store

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


class SlotJournal:
    def __init__(
        self,
        run_id: str,
        instrument: str,
        store: Store,
        counters: SlotCounters,
        tracker: PerformanceTracker,
        watch: SlotWatch,
    ) -> None:
        self.run_id, self.instrument, self.store = run_id, instrument, store
        self.counters, self.tracker, self.watch = counters, tracker, watch

    def add(self, row: Any) -> None:
        self.store.add(row)

    def risk_event(
        self, ts_ns: int, kind: str, detail: str, requested: float | None = None, allowed: float | None = None
    ) -> None:
        self.store.add(RiskEventRow(self.run_id, ts_ns, self.instrument, kind, detail, requested, allowed))
        alert = self.watch.alert
        if alert is not None and kind.startswith(ALERTED):
            alert(kind, f"{self.instrument}: {detail}", key=f"{kind}:{self.instrument}", level="warning")
        if kind != "pass":
            c = self.counters
            c.risk_events[kind] = c.risk_events.get(kind, 0) + 1
            if requested is not None and allowed is not None and abs(allowed) < abs(requested) - 1e-9:
                c.blocked_intents += 1  # refused or cut down
                self.tracker.risk["blocked_intents"] += 1

    def close_session(self) -> None:
        """The open session ends (shutdown, end of data): its row."""
        done = self.watch.sessions.close()
        if done is not None:
            self.store.add(done.row(self.run_id, self.instrument))
