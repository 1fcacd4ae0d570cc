"""What watches one instrument's trading besides the risk engine, and what its verdicts do.

- its sessions (UTC days: daemon.sessions), whose rows the slot writes as they close;
- the regime (core.regime): monitoring and, if configured, sizing; never in the observation;
- the live guard (daemon.live_guard): rolling live Sharpe, hold rate, orders per session, and
  PnL against the validation's promise;
- the feature watch (daemon.feature_watch): live inputs against the training window;
- on a closed session: the trade-band check (an alert; with guards.trade_band_action =
  "stop_opening" also a halt) and the guard's verdicts (risk events, and a rollback to gold
  as configured).

A slot without one (the trainer's shadow gate, tests) keeps sessions only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from stairway.core.policy import Policy
from stairway.core.regime import RegimeDetector
from stairway.daemon.feature_watch import FeatureWatch
from stairway.daemon.live_guard import LiveGuard
from stairway.daemon.sessions import SessionStats, SessionTracker

if TYPE_CHECKING:
    from stairway.daemon.slot import Slot


@dataclass
class SlotWatch:
    alert: Callable[..., bool] | None = None  # daemon.alerts.Alerter.notify: (kind, message, key=, level=)
    regime: RegimeDetector | None = None
    guard: LiveGuard | None = None
    feature_watch: FeatureWatch | None = None
    on_guard_breach: Callable[[str, str], None] | None = None  # (instrument, why): the daemon rolls back
    halt_on_trade_band: bool = False
    rollback_below_expectation: bool = False
    regime_value: float = 0.0
    sessions: SessionTracker = field(default_factory=SessionTracker)

    def set_model(self, policy: Policy) -> None:
        """A model starts (or is swapped in): the guard's promise and the feature profile are its."""
        if self.guard is not None:
            self.guard.set_expectation(policy.card.validation)
        if self.feature_watch is not None:
            self.feature_watch.set_model(policy)

    def on_close(self, close: float) -> None:
        """A bar's close (built, or history warming up): the regime moves on."""
        if self.regime is not None:
            self.regime_value = self.regime.update(close)

    def judge(self, slot: Slot, done: SessionStats, bar_ts: int) -> None:
        """A session closed (its row is written): the trade band, then the live guard."""
        inst, risk = slot.instrument, slot.risk
        # a session without decisions (warming up) says nothing about the model's trade count
        if done.decisions and risk.on_session_closed(done.orders, inst):
            why = f"orders per session outside {risk.band} for {risk.state.out_of_band[inst]} sessions"
            slot.journal.risk_event(bar_ts, "trade_count_alert", why)
            if self.halt_on_trade_band:
                risk.halt(f"{inst}: {why}")
        if self.guard is None:
            return
        verdict = self.guard.on_session(done)
        if verdict.below_expectation:
            slot.journal.risk_event(bar_ts, "live_pnl_below_expectation", verdict.below_expectation)
            if self.rollback_below_expectation and self.on_guard_breach is not None:
                self.on_guard_breach(inst, verdict.below_expectation)
        if verdict.breached:
            slot.journal.risk_event(bar_ts, "live_sharpe_breach", verdict.detail)
            if self.on_guard_breach is not None:
                self.on_guard_breach(inst, verdict.detail)
