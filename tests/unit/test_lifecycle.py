"""daemon.lifecycle: one state for the whole daemon, derived in a fixed precedence."""

import asyncio
from types import SimpleNamespace

from stairway.core.config import RiskConfig
from stairway.daemon.lifecycle import Lifecycle, State, derive
from stairway.daemon.risk import RiskEngine


def daemon(*kinds: str, warm: bool = True):
    risk = RiskEngine(RiskConfig(), 100_000.0)
    slots = {
        f"I{k}": SimpleNamespace(features=SimpleNamespace(warm=warm), policy=SimpleNamespace(kind=kind))
        for k, kind in enumerate(kinds)
    }
    return SimpleNamespace(stop=asyncio.Event(), slots=slots, risk=risk)


def state(d):
    return derive(d.slots, d.risk, d.stop.is_set())


def test_the_state_follows_precedence_stopping_warming_halted_observe_only_trading():
    d = daemon("ppo", "ppo")
    assert state(d) == (State.TRADING, "")
    d.risk.permission.set_drifted("I0", True)  # one instrument blocked: the other still trades
    assert state(d)[0] is State.TRADING
    d.risk.permission.set_expired("I1", True)  # both blocked
    assert state(d) == (State.OBSERVE_ONLY, "I0: feature drift; I1: model expired")
    d.risk.permission.control(False)  # the operator's word comes first
    assert state(d) == (State.OBSERVE_ONLY, "START_TRADING absent: observe only")
    d.risk.state.halted, d.risk.state.halted_reason = True, "intraday drawdown 2.6 % >= 2.5 %"
    assert state(d) == (State.HALTED, "intraday drawdown 2.6 % >= 2.5 %")
    d.slots["I1"].features.warm = False
    assert state(d) == (State.WARMING, "features warming up: I1")
    d.stop.set()
    assert state(d)[0] is State.STOPPING
    assert state(daemon("none"))[0] is State.OBSERVE_ONLY  # no model verified at start-up


def test_transitions_are_recorded_once_and_bounded():
    t = [0]

    def clock():
        t[0] += 1
        return t[0]

    life = Lifecycle(clock)
    assert life.state is State.STARTING and life.since_ns == 1
    assert life.set(State.WARMING, "warm start") and not life.set(State.WARMING, "still")
    assert life.reason == "still" and life.since_ns == 2  # the same state: only its reason changes
    for k in range(100):
        life.set(State.TRADING if k % 2 else State.HALTED, str(k))
    assert len(life.history) == 64 and life.history[-1][1:] == (State.TRADING, "99")
