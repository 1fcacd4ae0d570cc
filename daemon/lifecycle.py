"""The daemon's lifecycle as one state: starting, warming, trading, halted, observe-only,
stopping. Derived from what owns each condition (the risk engine's halt and permission, the
slots' feature buffers, the policies), logged at each transition (``daemon_state``), shown on
/status and as ``stairway_daemon_state`` on /metrics."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping
from enum import StrEnum
from typing import TYPE_CHECKING

import structlog

if TYPE_CHECKING:
    from stairway.daemon.risk import RiskEngine
    from stairway.daemon.slot import Slot

log = structlog.get_logger("daemon")


class State(StrEnum):
    STARTING = "starting"  # building components, reconciling, loading models
    WARMING = "warming"  # running, but an instrument's features are not warm yet: no decisions
    TRADING = "trading"  # decisions may open positions
    HALTED = "halted"  # the risk engine halted trading (drawdown, overfill, bad sessions)
    OBSERVE_ONLY = "observe_only"  # deciding, but nothing may open a position (operator, model, drift)
    STOPPING = "stopping"  # shutdown has begun


def derive(slots: Mapping[str, Slot], risk: RiskEngine, stopping: bool) -> tuple[State, str]:
    """The state a started daemon is in now, and why, from its slots and its risk engine."""
    if stopping:
        return State.STOPPING, "shutdown requested"
    cold = [i for i, s in slots.items() if not s.features.warm]
    if cold:
        return State.WARMING, "features warming up: " + ", ".join(cold)
    rs = risk.state
    if rs.halted:
        return State.HALTED, rs.halted_reason
    p = risk.permission
    if not p.control_allows:
        return State.OBSERVE_ONLY, p.control_reason
    blocked = {
        i: why
        for i, s in slots.items()
        if (
            why := "no model verifies"
            if s.policy.kind == "none"
            else "feature drift"
            if i in p.drifted
            else "model expired"
            if i in p.expired
            else ""
        )
    }
    if len(blocked) == len(slots):
        return State.OBSERVE_ONLY, "; ".join(f"{i}: {w}" for i, w in blocked.items())
    return State.TRADING, ""


class Lifecycle:
    """The current state, since when, and the last transitions (bounded)."""

    def __init__(self, clock_ns=time.time_ns) -> None:
        self.clock_ns = clock_ns
        self.state = State.STARTING
        self.reason = "building the daemon"
        self.since_ns = clock_ns()
        self.history: deque[tuple[int, State, str]] = deque([(self.since_ns, self.state, self.reason)], maxlen=64)

    def set(self, state: State, reason: str = "") -> bool:
        """Move to ``state``; True (and one log line) when it changed."""
        if state is self.state:
            self.reason = reason
            return False
        was, self.state, self.reason, self.since_ns = self.state, state, reason, self.clock_ns()
        self.history.append((self.since_ns, state, reason))
        log.info("daemon_state", state=state.value, was=was.value, reason=reason)
        return True
