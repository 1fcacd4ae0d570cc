"""The account the instruments of one daemon share.

Every slot (one per instrument) reports its equity and its session's opening equity here;
the drawdown tiers are applied to their sum, so a loss on one instrument and a loss on
another add up to the account's drawdown. The flatten tier closes every instrument and asks
the daemon, once, to roll back and stop. Margin used is estimated from the positions and
the last mid prices (notional in the account currency: units for a pair based in it,
units x mid otherwise, which is exact when the pair is quoted in it); a live broker's own
margin figure, from reconciliation, is used when it is higher. With ``max_margin_pct`` set,
an order that would take margin above it is refused (it may still reduce).

A daemon with one instrument has an account of one slot: the tiers see exactly that slot's
equity, as before.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from stairway.daemon.risk import RiskEngine

if TYPE_CHECKING:
    from stairway.daemon.slot import Slot


class Account:
    def __init__(
        self,
        risk: RiskEngine,
        initial_equity: float,
        max_margin_pct: float | None = None,
        currency: str = "USD",
        margin_rates: dict[str, float] | None = None,
    ) -> None:
        """``margin_rates``: each instrument's margin rate (a portfolio leg's; 0.02 otherwise)."""
        self.risk, self.initial, self.max_margin_pct, self.currency = risk, initial_equity, max_margin_pct, currency
        self.slots: dict[str, Slot] = {}
        self.margin_rates: dict[str, float] = dict(margin_rates or {})
        self.mids: dict[str, float] = {}
        self.quotes: dict[str, tuple[float, float]] = {}  # the last (bid, ask) each instrument's slot saw
        self._eq: dict[str, float] = {}
        self._open: dict[str, float] = {}
        self.broker_margin_pct = 0.0  # the broker's own figure (live: set by reconciliation)
        self.on_flatten_tier: Callable[[str], None] | None = None
        self.flattens = 0
        if max_margin_pct is not None:
            risk.margin_gate = self.margin_refusal

    def add(self, slot: Slot) -> None:
        self.slots[slot.instrument] = slot
        self.margin_rates.setdefault(slot.instrument, 0.02)

    # -- equity and tiers -----------------------------------------------------------------
    @property
    def equity(self) -> float:
        return self.initial + sum(e - self.initial for e in self._eq.values())

    @property
    def equity_open(self) -> float:
        return self.initial + sum(e - self.initial for e in self._open.values())

    @property
    def drawdown_pct(self) -> float:
        eq, op = self.equity, self.equity_open
        return 100.0 * max(0.0, (op - eq) / op)

    def mark(self, instrument: str, equity: float, equity_open: float) -> tuple[int, int]:
        """One instrument's equity now and at its session's open; returns the account's
        (old, new) drawdown tier. The flatten tier asks every instrument to close."""
        self._eq[instrument], self._open[instrument] = equity, equity_open
        old, tier = self.risk.on_equity(self.equity, self.equity_open)
        if tier == 4 and old < 4:
            self.flattens += 1
            reason = f"account drawdown {self.drawdown_pct:.2f} % reached the flatten tier"
            for slot in self.slots.values():
                slot.request_flatten(reason)
            if self.on_flatten_tier is not None:
                self.on_flatten_tier(reason)
        return old, tier

    # -- margin ---------------------------------------------------------------------------
    def on_quote(self, instrument: str, bid: float, ask: float) -> None:
        self.mids[instrument] = 0.5 * (bid + ask)
        self.quotes[instrument] = (bid, ask)

    def notional(self, instrument: str, units: float) -> float:
        base = instrument.partition("_")[0]
        if base == self.currency:
            return abs(units)
        return abs(units) * self.mids.get(instrument, 0.0)

    def margin_used(self, positions: dict[str, float] | None = None) -> float:
        """Margin on each instrument's exposure (its position, or with its working order filled
        when that is larger), or on ``positions`` as given."""
        if positions is None:
            positions = {k: self.risk.exposure(k) for k in self.risk.instruments()}
        return sum(self.notional(k, u) * self.margin_rates.get(k, 0.02) for k, u in positions.items())

    @property
    def margin_pct(self) -> float:
        return max(100.0 * self.margin_used() / max(self.equity, 1e-9), self.broker_margin_pct)

    def margin_refusal(self, instrument: str, target_units: float) -> str:
        """Why an order taking ``instrument`` to ``target_units`` is refused ('' when it is not)."""
        if self.max_margin_pct is None:
            return ""
        after = {k: self.risk.exposure(k) for k in self.risk.instruments()}
        after[instrument] = target_units
        pct = 100.0 * self.margin_used(after) / max(self.equity, 1e-9)
        pct = max(pct, self.broker_margin_pct)
        if pct > self.max_margin_pct + 1e-9:
            return f"margin {pct:.1f} % of equity would exceed {self.max_margin_pct:g} %"
        return ""
