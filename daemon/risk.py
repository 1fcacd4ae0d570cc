"""The risk engine: every order intent and every fill passes through here.

Checks, in order, for an order that would *open* or enlarge a position (orders that only
reduce a position are always allowed, so the book can be closed in every state):
  halted (after the flatten tier, until an operator starts trading again) ·
  trading disabled by control files · market closed · stale data · drawdown tier
  ("stop opening") · daily trade cap · margin (a portfolio's ``max_margin_pct``) ·
  per-instrument and overall position limits · order-size cap.
Limits are in lots, so instruments of different lot sizes add up: the overall limit
(``max_total_lots``) counts every instrument's absolute position in its own lots.
Drawdown tiers on intraday equity (against the session's opening equity): 1.5 % warn,
1.8 % halve size, 2.0 % stop opening, 2.5 % flatten and roll the model back to gold.
Fills more than 10 % over the request are refused: the excess is flattened and a
violation recorded; three violations stop trading.
Every decision that is not a plain pass is returned with a reason for risk_events.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from stairway.core.config import RiskConfig  # noqa: F401  (the section lives in core: the trainer's env applies it too)
from stairway.core.risk_rules import (
    FLATTEN,
    HALVE_SIZE,
    STOP_OPENING,
    TIER_NAMES,
    clamp_target,
    held_tier,
    reduce_only,
    trade_band,
)

log = structlog.get_logger("risk")


@dataclass(frozen=True)
class RiskDecision:
    units: float  # signed units allowed
    note: str = ""
    kind: str = ""  # risk_events kind when not a plain pass


@dataclass
class Permission:
    """May an order open a position? The one place that knows, besides the engine's own halt
    and tiers. Each input has one owner, who sets it by a named call: the control files
    (START_TRADING, the directory's safety: ``control``), the reconciler (``reconciled``: per
    instrument, no order at all until its book agrees with the broker), the feed watcher
    (``stale``: per instrument), the feature watch (``drifted``: per instrument), the model's age
    (``expired``: per instrument). The slot only asks, through RiskEngine.check."""

    control_allows: bool = True
    control_reason: str = ""
    not_reconciled: set[str] = field(default_factory=set)
    stale: set[str] = field(default_factory=set)
    drifted: set[str] = field(default_factory=set)  # daemon.feature_watch, with observe_only
    expired: set[str] = field(default_factory=set)  # daemon.status.expire_models, with stop_opening

    def control(self, allows: bool, reason: str = "START_TRADING absent: observe only") -> None:
        self.control_allows, self.control_reason = allows, "" if allows else reason

    def reconciled(self, instrument: str, ok: bool) -> None:
        (self.not_reconciled.discard if ok else self.not_reconciled.add)(instrument)

    def set_stale(self, instrument: str, stale: bool) -> None:
        (self.stale.add if stale else self.stale.discard)(instrument)

    def set_expired(self, instrument: str, expired: bool) -> None:
        (self.expired.add if expired else self.expired.discard)(instrument)

    def set_drifted(self, instrument: str, drifted: bool) -> None:
        (self.drifted.add if drifted else self.drifted.discard)(instrument)


@dataclass
class RiskState:
    tier: int = 0
    halted: bool = False
    halted_reason: str = ""
    halt_resumable: bool = False  # the flatten tier's halt under halt_resume = "next_session"
    overfill_violations: int = 0
    trades_today: dict[str, int] = field(default_factory=dict)
    day: int = -1
    sessions_out_of_band: int = 0  # the last instrument's run (see out_of_band)
    out_of_band: dict[str, int] = field(default_factory=dict)  # consecutive sessions outside the band, per instrument


class RiskEngine:
    def __init__(self, cfg: RiskConfig, lot_units: float, period_minutes: int = 1) -> None:
        self.cfg = cfg  # replaced as a whole by a reload (SIGHUP); every limit below derives from it
        self.lot = lot_units
        self.period_minutes = period_minutes
        self.state = RiskState()
        self.permission = Permission()
        self.positions: dict[str, float] = {}
        self.working: dict[str, float] = {}  # signed units of each instrument's working order not yet filled
        self.lots: dict[str, float] = {}  # lot size per instrument (a portfolio's); default: lot_units
        self.position_lots: dict[str, float] = {}  # per-instrument position limits; default: cfg's
        self.margin_gate: Callable[[str, float], str] | None = None  # daemon.account: why an order is refused

    def add_instrument(self, instrument: str, lot_units: float, max_position_lots: float | None = None) -> None:
        self.lots[instrument] = lot_units
        if max_position_lots is not None:
            self.position_lots[instrument] = max_position_lots

    def lot_of(self, instrument: str) -> float:
        return self.lots.get(instrument, self.lot)

    def max_units(self, instrument: str) -> float:
        """The instrument's position limit in its units (SIGHUP's [risk] applies to the default)."""
        return self.position_lots.get(instrument, self.cfg.max_position_lots) * self.lot_of(instrument)

    # Derived limits are computed from the current config at every use, never cached, so a
    # reloaded config takes effect at the next check.
    @property
    def max_position_units(self) -> float:
        return self.cfg.max_position_lots * self.lot

    @property
    def max_total_units(self) -> float:
        return self.cfg.max_total_lots * self.lot

    @property
    def max_order_units(self) -> float:
        return self.cfg.max_order_lots * self.lot

    @property
    def band(self) -> tuple[int, int]:
        return trade_band(self.cfg.trades_per_session_minute_bars, self.period_minutes)

    # -- tiers ----------------------------------------------------------------------------
    def on_equity(self, equity: float, session_open: float) -> tuple[int, int]:
        """Update the drawdown tier from intraday equity; returns (old, new). The flatten tier
        latches the halt; tiers below it follow the drawdown both ways, with hysteresis
        (core.risk_rules.held_tier)."""
        dd = max(0.0, (session_open - equity) / session_open * 100.0)
        old = self.state.tier
        tier = held_tier(equity, session_open, old, *self.cfg.drawdown_tiers_pct, self.cfg.tier_exit_fraction)
        self.state.tier = tier
        if tier >= FLATTEN and not self.state.halted:
            self.halt(
                f"intraday drawdown {dd:.2f} % >= {self.cfg.drawdown_tiers_pct[3]} %",
                resumable=self.cfg.halt_resume == "next_session",
            )
        return old, tier

    def halt(self, reason: str, resumable: bool = False) -> None:
        """Stop opening positions until ``resume`` (or, ``resumable``, the next session); the
        first cause is kept."""
        if not self.state.halted:
            self.state.halted, self.state.halted_reason = True, reason
            self.state.halt_resumable = resumable

    def resume(self) -> None:
        """An operator started trading again."""
        self.state.halted, self.state.halted_reason, self.state.halt_resumable = False, "", False
        self.state.overfill_violations = 0

    @property
    def size_factor(self) -> float:
        return 0.5 if self.state.tier >= HALVE_SIZE else 1.0

    # -- orders ---------------------------------------------------------------------------
    def new_day(self, day: int) -> str:
        """A new UTC session: the daily trade counts restart, and the flatten tier's halt ends
        under halt_resume = "next_session" (core.config.RiskConfig; the env does the same).
        Returns the reason of a halt that ended here, else ""."""
        if day == self.state.day:
            return ""
        self.state.day = day
        self.state.trades_today = {}
        s = self.state
        if s.halted and s.halt_resumable:
            ended = s.halted_reason
            s.halted, s.halted_reason, s.halt_resumable = False, "", False
            return ended
        return ""

    def check(
        self,
        instrument: str,
        current_units: float,
        order_units: float,
        *,
        market_is_open: bool = True,
        quote_gap_secs: float = 0.0,
    ) -> RiskDecision:
        """What of ``order_units`` may go out now. ``quote_gap_secs``: how old the closing
        quote is at decision time (a stale instrument counts as an endless gap)."""
        if order_units == 0.0:
            return RiskDecision(0.0)
        p = self.permission
        if instrument in p.not_reconciled:  # not even a reduction: the book is not known to be right
            return RiskDecision(0.0, "not reconciled with the broker yet: no orders", "not_reconciled")
        if instrument in p.stale:
            quote_gap_secs = float("inf")
        target = current_units + order_units
        reducing = abs(target) <= abs(current_units) and (target == 0.0 or (target > 0) == (current_units > 0))
        if reducing:
            return RiskDecision(order_units)
        # an opening order; when blocked it may still close what is there (a reversal becomes
        # a close), but never adds
        reduce = reduce_only(current_units, target) - current_units
        block = None
        s = self.state
        if s.halted:
            block = ("halted", f"halted: {s.halted_reason}")
        elif not p.control_allows:
            block = ("observe_only", p.control_reason)
        elif instrument in p.drifted:
            block = ("inputs_drifted", "inputs outside the model's trained range: observe only")
        elif instrument in p.expired:
            block = ("model_expired", "model older than service.max_model_age_days: no new positions")
        elif not market_is_open:
            block = ("market_closed", "market closed")
        elif quote_gap_secs > self.cfg.stale_after_secs:
            gap = "no price lately" if instrument in p.stale else f"quote gap {quote_gap_secs:.0f} s"
            block = ("stale_data", f"{gap} > {self.cfg.stale_after_secs:.0f} s")
        elif s.tier >= STOP_OPENING:
            block = ("stop_opening", f"drawdown tier {TIER_NAMES[s.tier]}: no new positions")
        elif s.trades_today.get(instrument, 0) >= self.cfg.max_trades_per_day:
            block = ("trade_cap", f"daily trade cap {self.cfg.max_trades_per_day} reached")
        if block:
            return RiskDecision(reduce, block[1], block[0])
        lot = self.lot_of(instrument)
        lim = self.max_units(instrument)
        others = sum(self.exposure(k) / self.lot_of(k) for k in self.instruments() if k != instrument)  # lots
        lim = min(lim, max(0.0, self.cfg.max_total_lots - others) * lot)
        clamped = max(-lim, min(lim, target))
        max_order = self.cfg.max_order_lots * lot
        units = clamp_target(current_units, target, lim, max_order) - current_units
        if self.margin_gate is not None and (why := self.margin_gate(instrument, current_units + units)):
            return RiskDecision(reduce, why, "margin_limit")
        kind, note = "", ""
        if clamped - current_units != order_units:
            kind, note = (
                "position_limit",
                f"position limit {lim:g}: order {order_units:+g} reduced to {clamped - current_units:+g}",
            )
        if units != clamped - current_units:
            kind, note = "order_cap", (note + "; " if note else "") + f"order cap {max_order:g}"
        return RiskDecision(units, note, kind)

    def on_order(self, instrument: str) -> None:
        self.state.trades_today[instrument] = self.state.trades_today.get(instrument, 0) + 1

    def on_position(self, instrument: str, units: float) -> None:
        self.positions[instrument] = units

    def on_working(self, instrument: str, remaining_units: float) -> None:
        """The instrument's working order (signed units still to fill; 0 when none)."""
        self.working[instrument] = remaining_units

    def instruments(self) -> set[str]:
        return set(self.positions) | set(self.working)

    def exposure(self, instrument: str) -> float:
        """Units an instrument may hold once its working order is done: the position, or the
        position with the order filled, whichever is larger (an order that reduces counts only
        once it has filled)."""
        units = self.positions.get(instrument, 0.0)
        return max(abs(units), abs(units + self.working.get(instrument, 0.0)))

    # -- fills ----------------------------------------------------------------------------
    def check_fill(self, requested_units: float, filled_units: float) -> float:
        """Signed excess to flatten when a fill exceeds the request by more than the tolerance;
        0.0 otherwise. Three violations halt trading."""
        if abs(filled_units) <= abs(requested_units) * (1.0 + self.cfg.overfill_tolerance) + 1e-9:
            return 0.0
        self.state.overfill_violations += 1
        if self.state.overfill_violations >= self.cfg.max_overfill_violations:
            self.halt(f"{self.state.overfill_violations} over-fill violations")
        return filled_units - requested_units

    # -- session alert --------------------------------------------------------------------
    def on_session_closed(self, trades: int, instrument: str = "") -> bool:
        """True when trades per session have been outside the band for N sessions in a row."""
        lo, hi = self.band
        out = not (lo <= trades <= hi)
        runs = self.state.out_of_band
        runs[instrument] = runs.get(instrument, 0) + 1 if out else 0
        self.state.sessions_out_of_band = runs[instrument]
        return runs[instrument] >= self.cfg.alert_after_sessions


def expire_models(slots: dict, max_days: float, action: str, permission) -> None:
    """With service.expired_model_action = "stop_opening", an instrument whose model is older
    than max_model_age_days opens nothing until a newer model is swapped in (the risk engine's
    ``model_expired`` block); logged when it starts and ends."""
    from stairway.daemon.status import model_age_secs

    for inst, slot in slots.items():
        age = model_age_secs(slot.policy)  # (daemon.status: from the checkpoint's header)
        expired = action == "stop_opening" and age is not None and age / 86400 > max_days
        if expired != (inst in permission.expired):
            log.warning("model_expired" if expired else "model_current", instrument=inst, sha=slot.policy.sha[:12])
        permission.set_expired(inst, expired)
