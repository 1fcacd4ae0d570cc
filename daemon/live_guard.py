"""Live-performance guards (seeds 000/001): rolling live metrics per instrument, from its
closed sessions (UTC days), and what to do when they say the model has stopped working.

Per session: the return (PnL / initial equity), decisions, holds and orders. Over the last
``window_days`` sessions: Sharpe (daily, annualised with √252), hold rate, orders per
session. The action: once ``min_days`` sessions exist, a live Sharpe below ``min_sharpe`` for
``breach_days`` sessions in a row asks for a rollback to gold (real orders only: a paper run
never repoints the operator's model) and an alert, once per breach. The running model's
validation Sharpe (recorded in its checkpoint) is shown next to the live one. Memory is
bounded: ``window_days`` sessions.

PnL against the model's own promise: the checkpoint's validation result (``pnl_pct`` over
``calendar_days``, ``sharpe``) gives an expected daily return m and its spread s (from the
Sharpe: s = m·√252 / Sharpe). Over the live window of n sessions, z = (live mean - m) /
(s / √n); z below ``-pnl_z_limit`` once ``min_days`` sessions exist is reported once per
run of such sessions (the daemon alerts, and with ``pnl_expectation_action = "rollback"``
also rolls back). A model without a positive validation Sharpe makes no promise: no check.
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
    below_expectation: str = ""  # set when live PnL just fell below the validation's promise


def expectation(validation: dict | None) -> tuple[float, float] | None:
    """(expected daily return, its standard deviation) from a checkpoint's validation
    metrics, or None when they promise nothing (missing, or Sharpe not positive)."""
    if not isinstance(validation, dict):
        return None
    try:
        pnl, days, sharpe = (float(validation[k]) for k in ("pnl_pct", "calendar_days", "sharpe"))
    except (KeyError, TypeError, ValueError):
        return None
    if not (days > 0 and sharpe > 0 and math.isfinite(pnl) and math.isfinite(sharpe)) or pnl <= 0:
        return None
    mean = pnl / 100.0 / (days * 252 / 365.25)
    return mean, mean * math.sqrt(252) / sharpe


class LiveGuard:
    def __init__(
        self,
        initial_equity: float,
        window_days: int = 30,
        min_sharpe: float = 0.5,
        breach_days: int = 7,
        min_days: int = 10,
        pnl_z_limit: float = 2.0,
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
        self.pnl_z_limit = pnl_z_limit
        self.expected: tuple[float, float] | None = None
        self.below_expected_days = 0

    def set_expectation(self, validation: dict | None) -> None:
        """The running model's promise (at start-up and at every swap)."""
        self.expected = expectation(validation)
        self.below_expected_days = 0

    @property
    def pnl_z(self) -> float:
        """How many standard errors the live mean daily return lies from the promise (0:
        no promise or fewer than two sessions)."""
        if self.expected is None or len(self.returns) < 2:
            return 0.0
        m, sd = self.expected
        live = sum(self.returns) / len(self.returns)
        return (live - m) / (sd / math.sqrt(len(self.returns)))

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
        below = ""
        z = self.pnl_z
        if self.expected is not None and z < -self.pnl_z_limit:
            self.below_expected_days += 1
            if self.below_expected_days == 1:  # once per run of sessions below
                below = (
                    f"live PnL {sum(self.returns) / len(self.returns) * 100:+.3f} %/day over {len(self.returns)} "
                    f"sessions is {-z:.1f} standard errors below the validation's {self.expected[0] * 100:+.3f} %/day"
                )
        else:
            self.below_expected_days = 0
        sharpe = self.sharpe
        self.days_below = self.days_below + 1 if sharpe < self.min_sharpe else 0
        if self.days_below == self.breach_days:  # once per breach: the count runs on past it
            self.breaches += 1
            return GuardVerdict(
                True,
                f"live Sharpe {sharpe:+.2f} over {len(self.returns)} sessions below {self.min_sharpe:g} "
                f"for {self.breach_days} sessions in a row",
                below,
            )
        return GuardVerdict(False, "", below)
