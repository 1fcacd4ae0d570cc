"""The trainer's env applies the daemon's risk rules (core.risk_rules): the daily trade cap,
the position limit and order cap, halving at the halve-size tier, and the shared rule functions
the daemon's RiskEngine calls too."""

import numpy as np
import pytest

from stairway.core.bar_files import load_bars
from stairway.core.config import RiskConfig
from stairway.core.execution import ExecutionModel
from stairway.core.position import PS_UNITS
from stairway.core.risk_rules import clamp_target, drawdown_tier, reduce_only
from stairway.core.types import NS_PER_DAY
from stairway.daemon.risk import RiskEngine
from stairway.trainer.env import RS_BLOCKED, VecTradingEnv
from stairway.trainer.history import history_from_bars
from tests.helpers import EURUSD


@pytest.fixture(scope="module")
def hist_ex(market_cfg, spec):
    hist = history_from_bars(load_bars(EURUSD)[0][:600], market_cfg, spec)
    return hist, ExecutionModel.from_config(market_cfg.execution, market_cfg.instrument)


def walk(hist_ex, spec, actions, risk):
    hist, ex = hist_ex
    n = len(actions)
    env = VecTradingEnv(hist, spec, ex, 100_000.0, 1, n, seed=0, auto_reset=False, risk=risk)
    env.reset(np.array([spec.window - 1]))
    units, days = [], []
    for a in actions:
        days.append(int(hist.bars["ts_ns"][env.bar[0]] // NS_PER_DAY))
        env.step(np.array([a]))
        units.append(env.state[0, PS_UNITS])
    return env, np.array(units), np.array(days)


def test_daily_trade_cap_stops_openings_but_not_closes(hist_ex, spec):
    churn = [1, 2] * 150  # reverse every bar: an opening order every bar
    _, free, _ = walk(hist_ex, spec, churn, RiskConfig(drawdown_tiers_pct=(90, 91, 92, 93)))
    env, capped, days = walk(
        hist_ex, spec, churn, RiskConfig(drawdown_tiers_pct=(90, 91, 92, 93), max_trades_per_day=3)
    )
    changes = np.flatnonzero(np.diff(np.concatenate([[0.0], capped])) != 0.0)
    per_day = np.bincount(days[changes] - days.min())
    # three orders a day (open, reverse, reverse); the fourth reversal may only close
    assert per_day.max() == 4
    for d in np.flatnonzero(per_day == 4):
        last = changes[days[changes] - days.min() == d][-1]
        assert capped[last] == 0.0 and np.all(capped[last:][days[last:] == days[last]] == 0.0)
    assert np.count_nonzero(np.diff(free)) > 3 * np.count_nonzero(np.diff(capped)) / 2
    assert env.rstate[0, RS_BLOCKED] > 0


def test_position_limit_and_order_cap_match_the_daemon(hist_ex, spec):
    risk = RiskConfig(drawdown_tiers_pct=(90, 91, 92, 93), max_position_lots=0.5, max_total_lots=1.0)
    _, units, _ = walk(hist_ex, spec, [1, 2, 2, 3, 1] * 20, risk)
    assert np.abs(units).max() == pytest.approx(50_000.0)
    eng = RiskEngine(risk, 100_000.0, 60)
    for cur, want in ((0.0, 100_000.0), (50_000.0, -150_000.0), (-50_000.0, 100_000.0)):
        allowed = eng.check("EUR_USD", cur, want).units + cur
        assert allowed == clamp_target(cur, cur + want, 50_000.0, 200_000.0)


def test_shared_rule_functions():
    assert drawdown_tier(100_000.0, 100_000.0, 1.5, 1.8, 2.0, 2.5) == 0
    assert drawdown_tier(98_200.0, 100_000.0, 1.5, 1.8, 2.0, 2.5) == 2  # 1.8 % exactly
    assert drawdown_tier(97_499.0, 100_000.0, 1.5, 1.8, 2.0, 2.5) == 4
    assert drawdown_tier(120_000.0, 100_000.0, 1.5, 1.8, 2.0, 2.5) == 0
    assert reduce_only(1.0, -1.0) == 0.0 and reduce_only(1.0, 2.0) == 1.0 and reduce_only(0.0, 1.0) == 0.0
    assert reduce_only(2.0, 1.0) == 1.0
    assert clamp_target(0.0, 3.0, 2.0, 1.5) == 1.5 and clamp_target(1.0, -3.0, 2.0, 5.0) == -2.0
