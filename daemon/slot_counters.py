"""What one instrument's slot counts: its counters (the run's result, /status, /metrics) and
the ring of its last decision latencies."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

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
