"""Live-performance guards (seeds 000/001): rolling live metrics per instrument, from its
closed sessions (UTC days), and what to do when they say the model has stopped working.

Per session: the return (PnL / initial equity), decisions, holds and orders. Over the last
``window_days`` sessions: Sharpe (daily, annualised with √252), hold rate, orders per
session. The action: once ``min_days`` sessions exist, a live Sharpe below ``min_sharpe`` for
``breach_days`` sessions in a row asks for a rollback to gold (real orders only: a paper run
never repoints the operator's model) and an alert, once per breach. The running model's
validation Sharpe (recorded in its checkpoint) is shown next to the live one. Memory is
bounded: ``window_days`` sessions.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from stairway.daemon.sessions import SessionStats


@dataclass(frozen=True)
class GuardVerdict:
    breached: bool  # the rollback condition was met at this session
    detail: str


class LiveGuard:
    def __init__(
        self,
        initial_equity: float,
        window_days: int = 30,
        min_sharpe: float = 0.5,
        breach_days: int = 7,
        min_days: int = 10,
    ) -> None:
        self.initial = initial_equity
        self.window_days, self.min_sharpe, self.breach_days, self.min_days = (
            window_days,
            min_sharpe,
            breach_days,
            min_days,
        )
        self.returns: deque[float] = deque(maxlen=window_days)
        self.decisions: deque[int] = deque(maxlen=window_days)
        self.holds: deque[int] = deque(maxlen=window_days)
        self.orders: deque[int] = deque(maxlen=window_days)
        self.days_below = 0
        self.breaches = 0

    @property
    def sharpe(self) -> float:
        r = self.returns
        if len(r) < 2:
            return 0.0
        m = sum(r) / len(r)
        sd = math.sqrt(sum((x - m) ** 2 for x in r) / (len(r) - 1))
        return m / sd * math.sqrt(252) if sd > 1e-15 else 0.0

    @property
    def hold_rate(self) -> float:
        d = sum(self.decisions)
        return sum(self.holds) / d if d else 1.0

    @property
    def orders_per_session(self) -> float:
        return sum(self.orders) / len(self.orders) if self.orders else 0.0

    def on_session(self, s: SessionStats) -> GuardVerdict:
        """A closed session of the instrument; sessions without decisions (warming up, a
        holiday) say nothing about the model and are skipped."""
        if not s.decisions:
            return GuardVerdict(False, "")
        self.returns.append((s.equity_close - s.equity_open) / self.initial)
        self.decisions.append(s.decisions)
        self.holds.append(s.holds)
        self.orders.append(s.orders)
        if len(self.returns) < self.min_days:
            return GuardVerdict(False, "")
        sharpe = self.sharpe
        self.days_below = self.days_below + 1 if sharpe < self.min_sharpe else 0
        if self.days_below == self.breach_days:  # once per breach: the count runs on past it
            self.breaches += 1
            return GuardVerdict(
                True,
                f"live Sharpe {sharpe:+.2f} over {len(self.returns)} sessions below {self.min_sharpe:g} "
                f"for {self.breach_days} sessions in a row",
            )
        return GuardVerdict(False, "")
