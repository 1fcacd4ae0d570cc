"""What one instrument's slot counts and remembers between quotes: its counters (the run's
result, /status, /metrics), the ring of its last decision latencies, its marks (last quote,
equity, drawdown) and its model-swap state."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from stairway.core.policy import Policy
from stairway.core.types import ACTION_NAMES


@dataclass
class SlotCounters:
    ticks: int = 0
    bars: int = 0
    decisions: int = 0
    orders: int = 0
    fills: int = 0
    swaps: int = 0
    financing: float = 0.0  # modelled holding costs charged (quote currency; < 0 credited)
    history_bars: int = 0  # bars taken from history at start-up (daemon.warm_start)
    actions: dict[str, int] = field(default_factory=lambda: {a: 0 for a in ACTION_NAMES})
    risk_events: dict[str, int] = field(default_factory=dict)  # by kind, plain passes not counted
    blocked_intents: int = 0  # orders the risk engine refused or cut down
    policy_errors: int = 0  # decisions where the policy raised (taken as HOLD)
    bound_cancels: int = 0  # decision orders cancelled at a price beyond their bound (execution.price_bound_pips)
    first_decision_bar_ts: int | None = None
    last_bar_ts: int | None = None


@dataclass
class SlotMarks:
    """The book's marks: the last quote (bid, ask) and its time, the last bar marked (financing
    charges the rolls since), the equity and the account's intraday drawdown they gave, and
    the equity at the first quote after a restart (the tiers' base until a bar has closed)."""

    equity: float
    last_quote: tuple[float, float] = (math.nan, math.nan)
    last_quote_ts: int = 0
    marked_ts: int | None = None
    drawdown_pct: float = 0.0
    quote_equity_open: float | None = None


@dataclass
class SwapState:
    """A model swap, set by the daemon between batches: the policy waiting for the next bar,
    the size ramp after a swap (one factor per day) and the day the swap took effect."""

    pending: Policy | None = None
    ramp: tuple[float, ...] = (1.0,)
    ramp_day: int = 0


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
