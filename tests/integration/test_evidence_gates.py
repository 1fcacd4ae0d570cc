"""Issue 10 §4: gates that need evidence. On crafted prices with a real (known) edge, flat,
buy-and-hold, one-trade and churning policies all fail the evidence and robustness gates;
the policy that trades the edge passes them. Everything runs through the trainer's env with
costs on, and the baselines through the same code."""

import numpy as np
import pytest

from stairway.core.execution import ExecutionModel
from stairway.core.types import Action
from stairway.trainer.baselines import compare
from stairway.trainer.config import GateConfig
from stairway.trainer.evaluation import run_evaluation
from stairway.trainer.gates import DayVerdict, ShadowResult, evidence, robustness_verdict
from stairway.trainer.history import history_from_bars
from tests.integration.test_slot_risk import bars_from_closes

PERIOD = 48  # bars: a two-day cycle of 60 pips, swamped by nothing but itself


@pytest.fixture(scope="module")
def market(market_cfg, spec):
    n = spec.window + 24 * 90
    k = np.arange(n)
    closes = 1.10 + 0.0030 * np.sin(2 * np.pi * k / PERIOD) + np.random.default_rng(4).normal(0, 2e-5, n)
    hist = history_from_bars(bars_from_closes(closes), market_cfg, spec)
    ex = ExecutionModel.from_config(market_cfg.execution, market_cfg.instrument)
    return hist, ex


def scripted(name: str, first: int, last: int) -> np.ndarray:
    idx = np.arange(first, last + 1)
    a = np.zeros(len(idx), dtype=np.int64)
    if name == "flat":
        return a
    if name == "buy_and_hold":
        return np.full(len(idx), Action.BUY)
    if name == "one_trade":
        a[0] = Action.BUY
        return a
    if name == "churn":
        return np.where(idx % 2 == 0, Action.BUY, Action.SELL)
    if name == "edge":  # long at the trough, short at the peak: the cycle is known, not looked up
        phase = idx % PERIOD
        a[phase == 3 * PERIOD // 4] = Action.BUY
        a[phase == PERIOD // 4] = Action.SELL
        return a
    raise ValueError(name)


def shadow_for(actions: np.ndarray) -> ShadowResult:
    """The last three days' orders as the per-day shadow rule sees them (scaled band 0-1 a day)."""
    orders = np.flatnonzero(actions[-72:] != 0)
    per_day = [int(((orders >= 24 * d) & (orders < 24 * (d + 1))).sum()) for d in range(3)]
    return ShadowResult(
        "crafted", [DayVerdict(f"d{d}", 1.0, 0.1, t, 24, t <= 1) for d, t in enumerate(per_day)], (0, 1)
    )


@pytest.mark.parametrize(
    "name,passes", [("flat", False), ("buy_and_hold", False), ("one_trade", False), ("churn", False), ("edge", True)]
)
def test_only_the_policy_with_an_edge_has_the_evidence(market, spec, name, passes):
    hist, ex = market
    first, last = spec.window - 1, len(hist) - 2
    actions = scripted(name, first, last)
    tracker, _ = run_evaluation(None, hist, spec, ex, 100_000.0, first, last, actions=actions)
    val = tracker.summary()
    cmp = compare(hist, spec, ex, 100_000.0, first, last, tracker, draws=10, bootstrap_resamples=200)
    gates = GateConfig()
    proof = evidence(val, cmp.baselines, shadow_for(actions), gates)
    from stairway.core.robustness import monte_carlo

    mc = monte_carlo(tracker.trade_returns(), val["calendar_days"] / 365.25, 1000)
    robust, why = robustness_verdict(val, mc.car25_pct, mc.dd95_pct, 1.0, gates)
    ok = proof["passed"] and robust and shadow_for(actions).passed
    assert ok == passes, (name, proof["reasons"], why, val["trades"], val["hold_rate"], val["pnl_pct"])
    if name == "edge":
        assert val["trades"] >= 30 and cmp.beat_random_share > 0.9
