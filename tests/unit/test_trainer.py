import numpy as np
import pytest
import torch

from stairway.core.bar_files import load_bars
from stairway.core.execution import ExecutionModel
from stairway.core.policy import PPOPolicy
from stairway.core.position import PS_UNITS, equity
from stairway.trainer.config import PPOArgs
from stairway.trainer.env import VecTradingEnv
from stairway.trainer.evaluation import evaluate
from stairway.trainer.history import history_from_bars
from stairway.trainer.ppo import train_ppo
from tests.helpers import EURUSD

ARGS = PPOArgs(total_steps=2048, num_envs=8, num_steps=64, hidden=16)


@pytest.fixture(scope="module")
def setup(market_cfg, spec):
    bars = load_bars(EURUSD)[0][:900]
    hist = history_from_bars(bars, market_cfg, spec)
    ex = ExecutionModel.from_config(market_cfg.execution, market_cfg.instrument)
    return hist, ex


def make_env(setup, spec, seed=3, n=8, session=50):
    hist, ex = setup
    return VecTradingEnv(hist, spec, ex, 100_000.0, n, session, seed=seed)


def test_ppo_same_seed_same_weights_and_actions(setup, spec):
    a = train_ppo(make_env(setup, spec), ARGS, seed=11)
    b = train_ppo(make_env(setup, spec), ARGS, seed=11)
    c = train_ppo(make_env(setup, spec), ARGS, seed=12)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    hist, ex = setup
    ra, acts_a = evaluate(PPOPolicy(a), hist, spec, ex, 100_000.0, 0)
    rb, acts_b = evaluate(PPOPolicy(b), hist, spec, ex, 100_000.0, 0)
    assert acts_a == acts_b and ra == rb


def test_env_rewards_sum_to_equity_change_after_costs(setup, spec):
    hist, ex = setup
    env = VecTradingEnv(hist, spec, ex, 100_000.0, 1, 200, seed=0, reward_scale=1.0, auto_reset=False)
    env.reset(np.array([spec.window - 1]))
    rng = np.random.default_rng(4)
    total = 0.0
    for _ in range(200):
        _, r, d = env.step(rng.integers(0, 4, size=1))
        total += r[0]
    i = env.bar[0]
    eq = equity(env.state[0], hist.last_bid[i], hist.last_ask[i], 100_000.0)
    exit_cost = abs(env.state[0][PS_UNITS]) * (ex.commission_per_unit + ex.slippage)
    assert d[0]
    assert total == pytest.approx((eq - 100_000.0 - exit_cost) / (ex.pip * ex.trade_units), rel=1e-9, abs=1e-9)
    assert total != 0.0


def test_env_costs_long_plus_short_over_same_windows_cost_exactly(setup, spec):
    """Long and short over the same windows cancel the market move; what is left is the
    cost: 2 spreads (1.0 pip each) + 4 slippages (0.1) + 4 commissions (0.2) = 3.2 pips a pair.
    (Without price bounds: a bound cancels a long and a short entry at different gaps.)"""
    import dataclasses

    hist, ex = setup
    ex = dataclasses.replace(ex, bound_tolerance=0.0)
    longs, _ = evaluate(None, hist, spec, ex, 100_000.0, 0, actions=np.array([1, 3] * 400))
    shorts, _ = evaluate(None, hist, spec, ex, 100_000.0, 0, actions=np.array([2, 3] * 400))
    assert longs["trades"] == shorts["trades"] > 300
    assert longs["pnl_pips"] + shorts["pnl_pips"] == pytest.approx(-3.2 * longs["trades"], rel=1e-9)


def test_env_observation_shape_and_auto_reset(setup, spec):
    env = make_env(setup, spec, n=4, session=5)
    obs = env.reset()
    assert obs.shape == (4, spec.obs_dim) and np.isfinite(obs).all()
    for _ in range(5):
        obs, _, done = env.step(np.ones(4, dtype=np.int64))
    assert done.all() and (env.steps == 0).all()
    assert (obs[:, spec.n_market :] == 0).all()  # fresh sessions start flat


def test_ppo_reports_each_updates_kl_clip_fraction_and_explained_variance(setup, spec):
    """Issue 23 §4: every update reports approx_kl, clip_fraction and explained_variance.
    With the learning rate at 0 the policy never moves: KL 0 and nothing clipped; at a rate
    far too high the ratio leaves the clip range and the KL grows. Of the value head and the
    rollout's returns: explained variance is ≤ 1, one figure per update."""
    from stairway.trainer.ppo import PPOLearner

    def run(lr: float, steps: int = 4096):
        seen = []
        args = ARGS.model_copy(update={"learning_rate": lr, "total_steps": steps})
        PPOLearner(make_env(setup, spec), args, seed=5).learn(steps, seen.append)
        return seen

    frozen = run(0.0)
    assert len(frozen) == 8 and all(p.approx_kl == pytest.approx(0.0, abs=1e-7) for p in frozen)
    assert all(p.clip_fraction == 0.0 for p in frozen)
    wild = run(0.05)
    assert max(p.clip_fraction for p in wild) > 0.1 and max(p.approx_kl for p in wild) > 1e-3
    assert all(0.0 <= p.clip_fraction <= 1.0 and p.approx_kl >= -1e-7 for p in wild)
    ev = [p.explained_variance for p in wild]  # per update, of that update's rollout
    assert all(np.isfinite(e) and e <= 1.0 for e in ev) and len(set(ev)) == len(ev)
