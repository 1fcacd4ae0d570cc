import numpy as np
import pytest

from stairway.core.bar_files import load_bars
from stairway.core.execution import ExecutionModel
from stairway.trainer.config import PPOArgs, ShapingConfig
from stairway.trainer.env import VecTradingEnv
from stairway.trainer.history import history_from_bars
from stairway.trainer.ppo import PPOLearner
from stairway.trainer.shaping import RewardShaper
from tests.helpers import EURUSD


@pytest.fixture(scope="module")
def hist(market_cfg, spec):
    return history_from_bars(load_bars(EURUSD)[0][:1200], market_cfg, spec)


def env(hist, spec, market_cfg, shaper=None, n=6):
    ex = ExecutionModel.from_config(market_cfg.execution, market_cfg.instrument)
    return VecTradingEnv(hist, spec, ex, 100_000.0, n, 100, seed=5, shaper=shaper)


def test_regime_never_enters_the_observation(hist, spec, market_cfg):
    assert np.count_nonzero(hist.regime) > 500  # the detector is live on this history
    plain = env(hist, spec, market_cfg)
    shaped = env(hist, spec, market_cfg, RewardShaper(ShapingConfig(), 6, 0.1))
    o1, o2 = plain.reset(), shaped.reset()
    assert o1.shape == o2.shape == (6, spec.obs_dim)
    rng = np.random.default_rng(0)
    for _ in range(150):
        a = rng.integers(0, 4, 6)
        o1, r1, _ = plain.step(a)
        o2, r2, _ = shaped.step(a)
        assert np.array_equal(o1, o2)  # same observation, only the reward differs


def test_hold_bonus_paid_only_for_hold_and_within_bounds(hist, spec, market_cfg):
    cfg = ShapingConfig()
    plain = env(hist, spec, market_cfg)
    sh = RewardShaper(cfg, 6, 0.1)
    shaped = env(hist, spec, market_cfg, sh)
    plain.reset(), shaped.reset()
    rng = np.random.default_rng(1)
    for _ in range(100):
        a = rng.integers(0, 4, 6)
        _, r1, _ = plain.step(a)
        _, r2, _ = shaped.step(a)
        diff = r2 - r1
        assert np.allclose(diff[a != 0], 0.0)
        assert np.allclose(diff[a == 0], sh.last_bonus)
        assert 0.0 <= sh.last_bonus <= 2 * cfg.base_hold_bonus


def test_risk_terms_only_ever_lower_the_reward(hist, spec, market_cfg):
    cfg = ShapingConfig(
        hold_bonus=False, amddp_weight=1.0, sharpe_weight=0.1, sortino_weight=0.1, drawdown_weight=1.0, cvar_weight=1.0
    )
    plain, shaped = env(hist, spec, market_cfg), env(hist, spec, market_cfg, RewardShaper(cfg, 6, 0.1))
    plain.reset(), shaped.reset()
    rng = np.random.default_rng(2)
    lower = 0
    for _ in range(200):
        a = rng.integers(0, 4, 6)
        _, r1, _ = plain.step(a)
        _, r2, _ = shaped.step(a)
        assert np.all(r2 <= r1 + 1e-12)
        lower += int(np.sum(r2 < r1 - 1e-12))
    assert lower > 100


def test_learner_continues_step_counter_across_calls(hist, spec, market_cfg):
    args = PPOArgs(num_envs=6, num_steps=32, hidden=16)
    learner = PPOLearner(env(hist, spec, market_cfg), args, seed=3, start_step=1000)
    learner.learn(192)
    assert learner.global_step == 1000 + 192
    learner.learn(100)  # rounded up to a whole rollout
    assert learner.global_step == 1000 + 2 * 192
