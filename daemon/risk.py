"""Pre-trade risk checks. (Drawdown tiers, fill validation and trade caps come later.)"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RiskDecision:
    units: float  # signed units allowed
    note: str = ""


class RiskEngine:
    def __init__(self, max_position_units: float, max_order_units: float) -> None:
        self.max_position_units = max_position_units
        self.max_order_units = max_order_units

    def check(self, current_units: float, order_units: float) -> RiskDecision:
        """Clamp an order so the position stays within +/- max and the order within its cap."""
        if order_units == 0.0:
            return RiskDecision(0.0)
        target = current_units + order_units
        lim = self.max_position_units
        clamped_target = max(-lim, min(lim, target))
        units = clamped_target - current_units
        note = ""
        if units != order_units:
            note = f"position limit {lim:g}: order {order_units:+g} reduced to {units:+g}"
        if abs(units) > self.max_order_units:
            units = self.max_order_units if units > 0 else -self.max_order_units
            note = (note + "; " if note else "") + f"order cap {self.max_order_units:g}"
        return RiskDecision(units, note)
