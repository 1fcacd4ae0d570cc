"""What happens when one instrument's session (a UTC day) closes, after its row is written:
the trade-band check (an alert; with guards.trade_band_action = "stop_opening" also a halt)
and the live guard (daemon.live_guard: PnL below the validation's promise, a live Sharpe
breach; each a risk event, and a rollback to gold as configured)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from stairway.daemon.sessions import SessionStats

if TYPE_CHECKING:
    from stairway.daemon.slot import Slot


def judge_closed_session(slot: Slot, done: SessionStats, bar_ts: int) -> None:
    inst, risk = slot.instrument, slot.risk
    # a session without decisions (warming up) says nothing about the model's trade count
    if done.decisions and risk.on_session_closed(done.orders, inst):
        why = f"orders per session outside {risk.band} for {risk.state.out_of_band[inst]} sessions"
        slot._risk_event(bar_ts, "trade_count_alert", why)
        if slot.halt_on_trade_band:
            risk.halt(f"{inst}: {why}")
    if slot.guard is None:
        return
    verdict = slot.guard.on_session(done)
    if verdict.below_expectation:
        slot._risk_event(bar_ts, "live_pnl_below_expectation", verdict.below_expectation)
        if slot.rollback_below_expectation and slot.on_guard_breach is not None:
            slot.on_guard_breach(inst, verdict.below_expectation)
    if verdict.breached:
        slot._risk_event(bar_ts, "live_sharpe_breach", verdict.detail)
        if slot.on_guard_breach is not None:
            slot.on_guard_breach(inst, verdict.detail)
