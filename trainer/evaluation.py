"""Greedy evaluation of a policy of any kind (core.policy.Policy) over a stretch of history,
through the training env: the same ``act`` the daemon calls, min_confidence included."""

from __future__ import annotations

import numpy as np

from stairway.core.config import RiskConfig
from stairway.core.execution import ExecutionModel
from stairway.core.features import FeatureSpec
from stairway.core.metrics import PerformanceTracker
from stairway.core.policy import Policy
from stairway.core.position import PS_REALIZED, PS_UNITS, equity
from stairway.core.robustness import safe_f
from stairway.trainer.env import RS_BLOCKED, RS_FLATTENS, RS_FORCED, RS_HALTED_BARS, VecTradingEnv
from stairway.trainer.history import MarketHistory


def evaluate(
    policy: Policy | None,
    history: MarketHistory,
    spec: FeatureSpec,
    ex: ExecutionModel,
    initial_equity: float,
    first_bar: int,
    last_bar: int | None = None,
    actions: np.ndarray | None = None,
    risk: RiskConfig | None = None,
) -> tuple[dict[str, float], list[int]]:
    """Decide on bars first_bar..last_bar (``policy`` or a fixed ``actions`` list)."""
    tracker, taken = run_evaluation(policy, history, spec, ex, initial_equity, first_bar, last_bar, actions, risk=risk)
    return tracker.summary(), taken


def run_evaluation(
    policy: Policy | None,
    history: MarketHistory,
    spec: FeatureSpec,
    ex: ExecutionModel,
    initial_equity: float,
    first_bar: int,
    last_bar: int | None = None,
    actions: np.ndarray | None = None,
    record: bool = False,
    risk: RiskConfig | None = None,
) -> tuple[PerformanceTracker, list[int]]:
    """As ``evaluate``, returning the tracker (equity curve when ``record``, trade list).
    The daemon's risk rules apply (``risk``, default the shipped limits): on a bar where the
    flatten tier closes the position nothing is decided, as in the daemon, and ``actions``
    (one per decision) moves on only on bars that decide."""
    hi = len(history) - 2 if last_bar is None else last_bar
    first = max(first_bar, spec.window - 1)
    n = hi - first + 1
    env = VecTradingEnv(
        history, spec, ex, initial_equity, 1, n, seed=0, first_bar=first, last_bar=hi, auto_reset=False, risk=risk,
        safe_f=None if policy is None else policy.card.safe_f,  # sized as the daemon sizes this model
    )  # fmt: skip
    obs = env.reset(np.array([first]))
    tracker = PerformanceTracker(initial_equity, ex.pip, ex.trade_units, ex.commission_per_unit, record=record)
    taken: list[int] = []

    def mark(i: int) -> None:
        st = env.state[0]
        tracker.on_bar(
            int(history.bars["ts_ns"][i]),
            st[PS_UNITS],
            st[PS_REALIZED],
            equity(st, history.last_bid[i], history.last_ask[i], initial_equity),
        )

    k = 0
    if policy is not None:
        policy.reset()
    for _ in range(n):
        mark(int(env.bar[0]))
        if env.rstate[0, RS_FORCED] > 0.0:  # the flatten tier: the env closes, nobody decides
            obs, _, _ = env.step(np.array([0]))
            continue
        if actions is not None:
            a = int(actions[k]) if k < len(actions) else 0
        else:
            assert policy is not None  # one of policy and actions is given
            a = int(policy.act(obs[0])[0])
        k += 1
        tracker.on_decision(a, float(env.state[0][PS_UNITS]))
        taken.append(a)
        obs, _, _ = env.step(np.array([a]))
    mark(int(env.bar[0]))
    rs = env.rstate[0]
    tracker.risk = {
        "flattens": int(rs[RS_FLATTENS]),
        "blocked_intents": int(rs[RS_BLOCKED]),
        "halted_bars": int(rs[RS_HALTED_BARS]),
    }
    return tracker, taken


def selection_metrics(tracker: PerformanceTracker, ex: ExecutionModel, gates, seed: int) -> dict[str, float]:
    """A cycle's selection-window summary, with its safe-f where entries are sized by it
    (execution.safe_f_sizing): from these trades, which no training saw, the largest fraction
    of the risk whose Monte Carlo DD95 over two years stays within gates.max_dd95_pct
    (core.robustness.safe_f). The checkpoint records it; the gates and the daemon size with it."""
    m = tracker.summary()
    if ex.safe_f_sizing:
        r = tracker.trade_returns()
        years = tracker.calendar_days / 365.25
        m["safe_f"] = safe_f(
            r, len(r) / years if years > 0 else 0.0, gates.max_dd95_pct,
            min_trades=gates.min_validation_trades, resamples=gates.mc_resamples, seed=seed,
        )  # fmt: skip
    return m
