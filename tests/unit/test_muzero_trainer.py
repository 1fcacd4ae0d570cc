"""Issue 11 §4: the MuZero learner behind the algorithm seam: deterministic for a seed on CPU,
the replay buffer's trade quota, n-step targets, the temperature schedule, and `train run`
with ``train.algo = "muzero"`` through the same cycles, gates and registry as PPO."""

import numpy as np
import pytest
import torch

from stairway.core.checkpoint import read_checkpoint
from stairway.core.config import load_config
from stairway.core.policies import load_policy
from stairway.trainer.config import TrainerConfig
from stairway.trainer.cycles import run_cycles, train_cycles
from stairway.trainer.muzero import ReplayBuffer, Segment
from stairway.trainer.prepared import prepare_data
from tests.helpers import ROOT

TINY = {
    "STAIRWAY_TRAIN__ALGO": "muzero",
    "STAIRWAY_CYCLES__COUNT": "2",
    "STAIRWAY_CYCLES__STEPS": "256",
    "STAIRWAY_MUZERO__NUM_ENVS": "4",
    "STAIRWAY_MUZERO__SEGMENT": "16",
    "STAIRWAY_MUZERO__BATCH_SIZE": "16",
    "STAIRWAY_MUZERO__SIMULATIONS": "5",
    "STAIRWAY_MUZERO__LATENT": "8",
    "STAIRWAY_MUZERO__HIDDEN": "16",
    "STAIRWAY_TRAIN__SESSION_MINUTES": "6000",
    "STAIRWAY_TRAIN__RANGE": '{"start": "2017-01-01", "end": "2017-04-01"}',
}


def cfg(tmp_path=None, **extra) -> TrainerConfig:
    env = TINY | extra
    if tmp_path is not None:
        env |= {
            "STAIRWAY_TRAIN__MODELS_DIR": str(tmp_path / "models"),
            "STAIRWAY_TRAIN__GATE_DB": str(tmp_path / "g.db"),
            "STAIRWAY_TRAIN__REPORTS_DIR": str(tmp_path / "runs"),
            "STAIRWAY_GATES__TICKS_DIR": str(tmp_path / "t"),
        }
    return load_config(TrainerConfig, ROOT / "config/trainer.toml", environ=env)


def test_same_seed_same_weights_other_seed_other_weights():
    c = cfg()
    d = prepare_data(c)
    a, b = train_cycles(c, d), train_cycles(c, d)
    other = train_cycles(cfg(STAIRWAY_TRAIN__SEED="2"), d)
    sa, sb, so = a.states[-1], b.states[-1], other.states[-1]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], so[k]) for k in sa)
    assert [r.metrics for r in a.records] == [r.metrics for r in b.records]
    assert a.arch["kind"] == "muzero" and a.arch["inference"]["simulations"] == 5


def seg(trade: bool, tag: int = 0) -> Segment:
    s = Segment(
        np.full((3, 2), tag),
        np.zeros(2, np.int64),
        np.zeros(2),
        np.zeros((2, 2)),
        np.full((3, 4), 0.25),
        np.zeros(2, bool),
        trade,
    )
    return s


def test_replay_buffer_keeps_the_trade_quota():
    buf = ReplayBuffer(10, 0.3, np.random.default_rng(0))
    for i in range(10):
        buf.add(seg(i < 2, i))  # 2 of 10 with trades: below the 30 % quota
    buf.add(seg(True, 99))  # a hold-only one is evicted, not the oldest (a trade one)
    assert buf.items[0].obs[0, 0] == 0 and sum(s.has_trade for s in buf.items) == 3
    buf.add(seg(True, 100))  # 3 of 10: at the quota, FIFO again
    assert buf.items[0].obs[0, 0] != 0 or sum(s.has_trade for s in buf.items) == 4
    for i in range(30):
        buf.add(seg(False, 200 + i))
    assert len(buf.items) == 10 and sum(s.has_trade for s in buf.items) >= 3  # never below the quota by eviction


def test_unroll_targets_and_the_markets_returns(tmp_path):
    from stairway.trainer.env import VecTradingEnv
    from stairway.trainer.muzero import MuZeroAlgorithm

    c = cfg(STAIRWAY_MUZERO__UNROLL="2", STAIRWAY_MUZERO__TD_STEPS="3", STAIRWAY_MUZERO__DISCOUNT="0.5")
    d = prepare_data(c)
    env = VecTradingEnv(d.history, d.spec, d.ex, 100_000.0, 2, d.session_len, seed=0, last_bar=d.split - 2)
    algo = MuZeroAlgorithm(c, env)
    s = Segment(
        np.arange(5.0 * env.obs_dim).reshape(5, env.obs_dim),
        np.array([1, 2, 3, 0]),
        np.array([1.0, 2.0, 4.0, 8.0]),
        np.array([[0.5, 5.0], [-0.5, -5.0], [1.5, 15.0], [-1.5, -15.0]]),
        np.eye(4)[[0, 1, 2, 3, 0]],
        np.array([False, False, True, False]),
        True,
    )
    algo.buffer.add(s)

    def row(start):
        b = algo._batch(np.array([0]), [start])
        return (
            b["rewards"][0].tolist(),
            b["policies"][0].numpy(),
            b["mask"][0].tolist(),
            b["actions"][0].tolist(),
            b["returns"][0].numpy(),
            b["obs"][0].numpy(),
        )

    rewards, policies, mask, actions, returns, obs = row(0)
    assert rewards == pytest.approx([0.0, 1.0, 2.0])  # reward of the action leading to each unroll step
    assert actions == [1, 2] and mask == [1.0, 1.0, 1.0] and np.array_equal(policies[2], np.eye(4)[2])
    # the market's returns of each unrolled step (the bar's, the horizon's), whatever was held
    assert returns.tolist() == [[0.5, 5.0], [-0.5, -5.0]]
    assert obs.tolist() == s.obs[0].tolist()
    # the session ends at step 2 (done): the reward of that step is the row's, the observation
    # after it is the next session's first, so no policy target from it
    rewards, policies, mask, actions, _, _ = row(1)
    assert rewards == pytest.approx([0.0, 2.0, 4.0]) and actions == [2, 3]
    assert mask == [1.0, 1.0, 0.0] and np.allclose(policies[2], 0.25)
    rewards, _, mask, actions, returns, _ = row(2)
    assert rewards == pytest.approx([0.0, 4.0, 0.0]) and mask == [1.0, 0.0, 0.0] and actions[0] == 3
    assert returns[0].tolist() == [1.5, 15.0] and np.isnan(returns[1]).all()  # not the next session's bar
    _, policies, mask, _, returns, _ = row(3)
    assert mask == [1.0, 1.0, 0.0] and np.allclose(policies[2], 0.25)  # i=5: past the segment
    assert tuple(returns[0]) == (-1.5, -15.0) and np.isnan(returns[1]).all()  # past the segment: no target
    # the actor's horizon returns: the discounted sum of the next td_steps bars' mid returns,
    # none from the bars after the training range (the selection window picks the cycle: a
    # target reading its returns would leak them into what it judges)
    actor = algo.actors.actors[0]
    h, last = d.history, env.hi
    assert last < len(h) - 30  # the history holds selection bars after the training range
    mid = (h.last_bid + h.last_ask) / 2.0 / d.ex.pip * c.ppo.reward_scale

    def ret(i):
        return mid[i + 1] - mid[i] if i <= last else 0.0

    assert ret(last - 1) != 0.0 and mid[last + 2] != mid[last + 1]
    for i in (0, 100, last - 2, last, last + 1, len(mid) - 1):
        want = sum(0.5**j * ret(i + j) for j in range(3))
        assert actor.market[i, 0] == pytest.approx(ret(i), abs=1e-9)
        assert actor.market[i, 1] == pytest.approx(want, abs=1e-9)
    assert algo.temperature() == pytest.approx(2.0)
    algo.global_step = algo.planned
    assert algo.temperature() == pytest.approx(0.5)


def test_train_run_with_muzero_goes_through_the_same_gates_and_registry(tmp_path):
    c = cfg(tmp_path)
    res = run_cycles(c, progress=False)
    ck = read_checkpoint(c.train.models_dir / "registry" / f"{res.candidate}.safetensors")
    assert ck.meta.policy_kind == "muzero" and ck.meta.architecture()["latent"] == 8
    policy = load_policy(ck, __import__("stairway.core.features", fromlist=["FeatureSpec"]).FeatureSpec.from_config(c))
    assert policy.kind == "muzero"
    assert res.gate["shadow"]["days"] and "evidence" in res.gate  # judged by the same gates
    assert res.action in ("published", "published+gold", "not_published")


def test_actors_on_ray_give_the_same_weights_as_actors_in_process():
    """Two self-play actors, each with its own sessions and seeds, fed safetensors bytes: on a
    local Ray they produce exactly what they produce one after another in this process."""
    c = cfg(STAIRWAY_MUZERO__ACTORS="2", STAIRWAY_CYCLES__COUNT="1", STAIRWAY_TRAIN__MAX_GAP_MINUTES="10")
    d = prepare_data(c)
    inline = train_cycles(c, d)
    on_ray = train_cycles(
        cfg(
            STAIRWAY_MUZERO__ACTORS="2",
            STAIRWAY_CYCLES__COUNT="1",
            STAIRWAY_TRAIN__MAX_GAP_MINUTES="10",
            STAIRWAY_MUZERO__RAY_ADDRESS="local",
        ),
        d,
    )
    one = train_cycles(cfg(STAIRWAY_CYCLES__COUNT="1", STAIRWAY_TRAIN__MAX_GAP_MINUTES="10"), d)
    a, b, o = inline.states[-1], on_ray.states[-1], one.states[-1]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r.metrics for r in inline.records] == [r.metrics for r in on_ray.records]
    assert not all(torch.equal(a[k], o[k]) for k in a)  # two actors are not one actor: other seeds, other sessions
    assert "session starts kept" in inline.sessions


def test_actor_settings_are_checked():
    with pytest.raises(Exception, match="muzero.actors = 5 is more than muzero.num_envs = 4"):
        cfg(STAIRWAY_MUZERO__ACTORS="5")


def test_train_run_ray_address_is_refused_for_ppo(tmp_path):
    import subprocess
    import sys

    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "stairway.cli",
            "train",
            "run",
            "--config",
            "config/trainer.toml",
            "--ray-address",
            "local",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=own_models_dir(tmp_path),
    )
    assert p.returncode == 2 and p.stdout == ""
    assert (
        p.stderr.strip()
        .splitlines()[-1]
        .endswith("--ray-address runs MuZero's self-play actors; config/trainer.toml has train.algo = 'ppo'")
    )


def own_models_dir(tmp) -> dict[str, str]:
    """The CLI's environment with a models directory, gate database and reports of its own: the
    shipped config's are locked by whichever trainer runs (another test worker's, too)."""
    import os

    own = {"MODELS_DIR": "models", "GATE_DB": "gate.db", "REPORTS_DIR": "runs"}
    return {**os.environ, **{f"STAIRWAY_TRAIN__{k}": str(tmp / v) for k, v in own.items()}}


def test_reanalyse_refreshes_exactly_the_positions_the_batch_reads():
    from stairway.core.muzero_policy import MuZeroPolicy
    from stairway.trainer.env import VecTradingEnv
    from stairway.trainer.muzero import MuZeroAlgorithm

    c = cfg(STAIRWAY_MUZERO__UNROLL="2", STAIRWAY_MUZERO__TD_STEPS="3", STAIRWAY_MUZERO__ACTORS="2")
    d = prepare_data(c)
    env = VecTradingEnv(d.history, d.spec, d.ex, 100_000.0, 4, d.session_len, seed=0, last_bar=d.split - 2)
    algo = MuZeroAlgorithm(c, env)
    segs, _ = algo._self_play()
    for s in segs:
        algo.buffer.add(s)
    with torch.no_grad():  # the learner's weights move on, so stored targets are stale
        for p in algo.net.parameters():
            p.add_(0.05)
    algo.updates += 1  # as the learner step that moves them counts itself
    before = [s.policies.copy() for s in algo.buffer.items]
    plan = [(np.array([1, 2]), [3, 14], np.array([True, False]))]  # segment length 16: row 1 is cut at T
    assert algo._reanalyse(plan) == len({3, 4, 5})  # searched: the policy targets the row reads
    arch = algo.arch()
    arch["inference"] = arch["inference"] | {"temperature": 0.0}
    fresh = MuZeroPolicy(algo.tensors(), env.obs_dim, arch)
    for j, pol in enumerate(before):
        seg = algo.buffer.items[j]
        for i in range(len(seg.obs)):
            if j == 1 and i in (3, 4, 5):  # searched again: the target is the improved policy
                _, _, improved = fresh.batch_visits(seg.obs[i][None])
                assert seg.policies[i] == pytest.approx(improved[0])
            else:
                assert np.array_equal(seg.policies[i], pol[i])
    assert any(not np.array_equal(algo.buffer.items[1].policies[i], before[1][i]) for i in range(3, 6))
    algo.close()


def test_learning_rate_anneals_to_a_tenth_over_the_plan():
    from stairway.trainer.muzero import MuZeroAlgorithm
    from stairway.trainer.prepared import training_env

    c = cfg()
    env, _ = training_env(c, prepare_data(c))
    algo = MuZeroAlgorithm(c, env, planned_steps=1000)
    segs, _ = algo._self_play()
    for s in segs:
        algo.buffer.add(s)
    lrs = []
    for step in (0, 500, 1000, 5000):  # the plan's start, middle, end, and past it
        algo.global_step = step
        algo._train_round()
        lrs.append(algo.opt.param_groups[0]["lr"])
    base = c.muzero.learning_rate
    assert lrs == pytest.approx([base, 0.55 * base, 0.1 * base, 0.1 * base])
    algo.close()


def test_a_ray_address_where_nothing_answers_is_one_line_not_a_hang(tmp_path):
    import socket
    import subprocess
    import sys
    import time

    from stairway.core.errors import ConfigError
    from stairway.trainer.ray_setup import probe_address

    s = socket.socket()
    s.bind(("127.0.0.1", 0))  # a port nobody listens on
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(ConfigError, match=rf"--ray-address = '127.0.0.1:{port}': no Ray cluster answers there"):
        probe_address(f"127.0.0.1:{port}", "--ray-address")
    with pytest.raises(ConfigError, match="expected HOST:PORT of a Ray cluster, 'local' or 'auto'"):
        probe_address("my-cluster", "--ray-address")
    t0 = time.monotonic()
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "stairway.cli",
            "train",
            "run",
            "--config",
            "config/trainer-muzero.toml",
            "--ray-address",
            f"127.0.0.1:{port}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=own_models_dir(tmp_path),
    )
    assert p.returncode == 2 and time.monotonic() - t0 < 60
    assert (
        p.stderr.strip()
        .splitlines()[-1]
        .endswith(f"'127.0.0.1:{port}': no Ray cluster answers there (Connection refused)")
    )


def test_a_muzero_run_with_a_ppo_gold_is_gated_and_drift_is_na(tmp_path):
    """Issue 19.9: with gold a PPO model, a MuZero run ended in exit 2 after training (drift
    raised 'architecture changed' unguarded) and its candidate stayed ungated. Now drift is
    "n/a (architecture changed)" and the candidate is gated on everything else; the PPO
    current/gold is refused as a warm start before training, in one line; the cycles record
    the controller figures of the actors' shapers, not constants."""
    import sqlite3

    from stairway.core.checkpoint import point_link
    from stairway.core.features import FeatureSpec
    from tests.helpers import tiny_checkpoint

    c = cfg(tmp_path, STAIRWAY_CYCLES__WARM_START="true")
    ppo, _ = tiny_checkpoint(c.train.models_dir, FeatureSpec.from_config(c), seed=4)
    point_link(c.train.models_dir, "gold", ppo.sha)
    res = run_cycles(c, progress=False)  # used to raise ConfigError after training
    assert res.drift is None and res.gate["drift_note"].startswith("n/a (architecture changed: muzero candidate")
    assert res.gate["shadow"]["days"] and "evidence" in res.gate and "robustness" in res.gate
    with sqlite3.connect(c.train.gate_db) as db:
        status = db.execute("SELECT status FROM model_registry WHERE sha = ?", (res.candidate,)).fetchone()[0]
        drift_rows = db.execute("SELECT rel_l2, action FROM parameter_drift_log").fetchall()
    assert status in ("passed", "failed")  # gated, not left 'candidate'
    assert drift_rows == [(None, res.action)]
    assert res.parent == ""  # the PPO model did not warm-start MuZero
    bonuses = {round(r.controller_bonus, 9) for r in res.cycles}
    holds = {round(r.train_hold_rate, 9) for r in res.cycles}
    assert bonuses != {0.0} and holds != {0.55}  # the actors' controllers, not the learner's idle one
    report = (res.report.parent / "report.md").read_text() if res.report.suffix == ".html" else res.report.read_text()
    assert "n/a (architecture changed" in report


@pytest.mark.parametrize("p", [0.0, 0.5])
def test_obs_dropout_drops_market_features_only_and_only_in_the_update(p):
    """The learner's update sees the market features dropped (zeros, the rest scaled by
    1 / (1 - p)) and the position features as stored (they set the state's slot); p = 0
    passes the observation through."""
    from stairway.trainer.muzero import MuZeroAlgorithm
    from stairway.trainer.prepared import training_env

    c = cfg(STAIRWAY_MUZERO__OBS_DROPOUT=str(p), STAIRWAY_MUZERO__REANALYSE_FRACTION="0")
    env, _ = training_env(c, prepare_data(c))
    algo = MuZeroAlgorithm(c, env)
    for s in algo._self_play()[0]:
        algo.buffer.add(s)
    seen = []
    represent = algo.net.represent
    algo.net.represent = lambda obs: seen.append(obs.detach().clone()) or represent(obs)
    idx, starts, _ = algo._sample()
    algo._step(algo._batch(idx, starts))
    stored = torch.tensor(np.stack([algo.buffer.items[j].obs[st] for j, st in zip(idx, starts)]), dtype=torch.float32)
    n = env.spec.n_market
    (got,) = seen
    assert torch.equal(got[:, n:], stored[:, n:])
    if p == 0.0:
        assert torch.equal(got, stored)
    else:
        live = stored[:, :n] != 0
        dropped = (got[:, :n] == 0) & live
        kept = ~dropped & live
        assert 0.4 < dropped.sum() / live.sum() < 0.6
        assert torch.allclose(got[:, :n][kept], stored[:, :n][kept] / (1 - p))
    algo.close()


@pytest.mark.parametrize(
    "bad", ["[0, 24]", "[24, 24]", "[]", '"day"', "[1, 2, 3, 4, 5, 6, 7, 8, 9]", "-3", "true", "2.5"]
)
def test_bad_value_horizons_are_refused_naming_the_field(bad):
    from stairway.core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"muzero\.td_steps"):
        cfg(STAIRWAY_MUZERO__TD_STEPS=bad)


def test_several_horizons_reach_the_net_the_targets_and_the_checkpoint():
    """td_steps = [3, 8]: M has a column per horizon, each learned against its own discounted
    sum (an explicit loop over the bars here), and the checkpoint names them."""
    from stairway.trainer.muzero import MuZeroAlgorithm
    from stairway.trainer.prepared import training_env

    c = cfg(STAIRWAY_MUZERO__TD_STEPS="[3, 8]")
    env, _ = training_env(c, prepare_data(c))
    algo = MuZeroAlgorithm(c, env)
    assert algo.net.dyn_market.out_features == 3 and algo.arch()["horizons"] == [3, 8]
    seg = algo._self_play()[0][0]
    assert seg.returns.shape[1] == 3
    market = algo.actors.actors[0].market  # in process: the actor itself
    r, g = market[:, 0], c.muzero.discount
    for t in (0, 100, 500):
        for j, h in enumerate((3, 8), start=1):
            want = sum(g**i * r[t + i] for i in range(h) if t + i < len(r))
            assert market[t, j] == pytest.approx(want)
    assert not np.allclose(market[:, 1], market[:, 2])
    algo._train_round()
    algo.close()
    # one horizon: the arch names none, as every checkpoint from before horizons (they warm-start)
    one = MuZeroAlgorithm(cfg(STAIRWAY_MUZERO__TD_STEPS="24"), env)
    assert "horizons" not in one.arch() and one.net.dyn_market.out_features == 2
    one.close()


def test_a_one_horizon_checkpoint_warm_starts_one_horizon_and_is_refused_for_several(tmp_path, capsys):
    """A checkpoint of one horizon names none in its arch (as every MuZero checkpoint from
    before horizons): it warm-starts a config of one horizon, and a config of several trains
    from scratch, saying why."""
    from stairway.core.checkpoint import point_link
    from stairway.core.features import FeatureSpec
    from stairway.trainer.cycles import _warm_start

    c = cfg(tmp_path, STAIRWAY_CYCLES__WARM_START="true", STAIRWAY_CYCLES__COUNT="1")
    res = run_cycles(c, progress=False)
    point_link(c.train.models_dir, "current", res.candidate)
    spec = FeatureSpec.from_config(c)
    parent = _warm_start(c, spec)
    assert parent is not None and parent.sha == res.candidate and "horizons" not in parent.meta.architecture()
    several = cfg(tmp_path, STAIRWAY_CYCLES__WARM_START="true", STAIRWAY_MUZERO__TD_STEPS="[3, 8]")
    assert _warm_start(several, spec) is None
    assert "its sizes differ from the config's (horizons None vs [3, 8])" in capsys.readouterr().out


def test_demean_takes_the_training_ranges_drift_out_of_mu_and_m_only():
    """demean: the learner's mu and M targets are the returns less the training range's mean
    bar return (for M_h, its discounted sum over h bars), computed here from the mid prices
    up to the last training bar; without it nothing is subtracted. The drift reaches the
    weights only through those targets: an update with it zeroed is the update without."""
    from stairway.trainer.muzero import MuZeroAlgorithm
    from stairway.trainer.prepared import training_env

    extra = {"STAIRWAY_MUZERO__TD_STEPS": "[3, 8]", "STAIRWAY_MUZERO__REANALYSE_FRACTION": "0"}
    c_on, c_off = cfg(STAIRWAY_MUZERO__DEMEAN="true", **extra), cfg(**extra)
    env, _ = training_env(c_on, prepare_data(c_on))
    on, off = MuZeroAlgorithm(c_on, env), MuZeroAlgorithm(c_off, env)
    h, last = env.h, env.hi
    mid = (h.last_bid + h.last_ask) / 2.0 / env.ex.pip * c_on.ppo.reward_scale
    mean = float(np.mean([mid[i + 1] - mid[i] for i in range(last + 1)]))
    assert abs(mean) > 1e-3  # the tiny file's training range drifts
    g = c_on.muzero.discount
    want = [mean, mean * sum(g**i for i in range(3)), mean * sum(g**i for i in range(8))]
    assert on.drift.tolist() == pytest.approx(want, rel=1e-5)
    assert off.drift.tolist() == [0.0, 0.0, 0.0]

    def one_update(algo):
        algo.buffer.items = list(segs)
        algo.rng = np.random.default_rng(5)
        algo._train_round()
        return {k: v.clone() for k, v in algo.net.state_dict().items()}

    segs, _ = off._self_play()
    base = {k: v.clone() for k, v in off.net.state_dict().items()}
    on.net.load_state_dict(base)
    plain = one_update(off)
    demeaned = one_update(on)
    assert not all(torch.equal(plain[k], demeaned[k]) for k in plain)
    on.net.load_state_dict(base)
    on.opt = torch.optim.Adam(on.net.parameters(), lr=c_on.muzero.learning_rate)
    on.drift = torch.zeros(3)
    assert all(torch.equal(plain[k], v) for k, v in one_update(on).items())
    on.close()
    off.close()


@pytest.mark.parametrize("bad", ['"maybe"', "2", "[true]"])
def test_a_demean_that_is_not_true_or_false_is_refused_naming_it(bad):
    from stairway.core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"muzero\.demean"):
        cfg(STAIRWAY_MUZERO__DEMEAN=bad)
