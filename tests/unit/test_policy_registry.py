"""Issue 11 §1, the seams: one policy-kind registry (core.policies.load_policy) chooses the
kind from the checkpoint's metadata; a generic ``arch`` describes it (older PPO checkpoints
without it still load); min_confidence turns a low-confidence action into HOLD in one place
(ConfidenceFloor), in the evaluation and in the daemon, and the decision row says so;
policies reset, so warm-up calls leave nothing behind; ``train.algo`` chooses the learner."""

import json
import re
import sqlite3

import numpy as np
import pytest
import torch

from stairway.core.checkpoint import CheckpointMeta, read_checkpoint, save_checkpoint
from stairway.core.config import load_config
from stairway.core.errors import CheckpointError, ConfigError
from stairway.core.policies import load_policy
from stairway.core.policy import ConfidenceFloor, PPOPolicy, ScriptedPolicy
from stairway.core.ppo_net import ActorCritic
from stairway.core.types import ACTION_NAMES
from tests.helpers import ROOT, tiny_checkpoint

MUZERO_ARCH = {"kind": "muzero", "layout": 2, "latent": 8, "hidden": 16, "n_actions": 4}


def arch_checkpoint(tmp_path, spec, arch: dict | str, kind: str = "ppo"):
    torch.manual_seed(1)
    net = ActorCritic(spec.obs_dim, hidden=16)
    meta = CheckpointMeta(
        kind,
        spec.hash,
        spec.to_json(),
        (spec.obs_dim,),
        ACTION_NAMES,
        16,
        arch=arch if isinstance(arch, str) else json.dumps(arch),
    )
    return read_checkpoint(save_checkpoint(tmp_path / "m", net.state_dict(), meta).path), net


def test_an_old_ppo_checkpoint_without_arch_loads_unchanged(tmp_path, spec):
    ck, net = tiny_checkpoint(tmp_path / "m", spec, seed=3)
    ck = read_checkpoint(ck.path)
    assert ck.meta.arch == "" and ck.meta.architecture() == {"kind": "ppo", "hidden": 16, "inference": {}}
    policy = load_policy(ck, spec)
    assert isinstance(policy, ConfidenceFloor) and policy.min_confidence == 0.0 and policy.kind == "ppo"
    assert policy.sha == ck.sha
    plain = PPOPolicy(net)
    for o in np.random.default_rng(0).normal(size=(50, spec.obs_dim)):
        assert policy.act(o) == plain.act(o)


def test_the_registry_refuses_what_it_cannot_run(tmp_path, spec):
    ck, _ = arch_checkpoint(tmp_path, spec, {"kind": "dreamer", "latent": 32}, kind="dreamer")
    with pytest.raises(
        CheckpointError, match="policy kind 'dreamer' is not one this build can run \\(known: ensemble, muzero, ppo\\)"
    ):
        load_policy(ck, spec, "models/current")
    ck, _ = arch_checkpoint(tmp_path, spec, {"kind": "muzero", "layout": 2, "latent": 32}, kind="muzero")  # no sizes
    with pytest.raises(CheckpointError, match="MuZero arch .* is incomplete or invalid"):
        load_policy(ck, spec)
    for bad in (24, "24", [0], [], [4.5], list(range(1, 10))):  # the value's horizons: a list of bars
        ck, _ = arch_checkpoint(tmp_path, spec, MUZERO_ARCH | {"horizons": bad}, kind="muzero")
        with pytest.raises(
            CheckpointError, match=f"MuZero arch .* is incomplete or invalid.*horizons = {re.escape(repr(bad))}"
        ):
            load_policy(ck, spec)
    # a MuZero checkpoint of the earlier layout (no "layout": 1) is refused by name, not misread
    ck, _ = arch_checkpoint(tmp_path, spec, {"kind": "muzero", "latent": 32}, kind="muzero")
    with pytest.raises(CheckpointError, match="MuZero layout 1, this release runs layout 2 only .* retrain the model"):
        load_policy(ck, spec)
    ck, _ = arch_checkpoint(tmp_path, spec, "{not json")
    with pytest.raises(CheckpointError, match="arch is not JSON"):
        load_policy(ck, spec)
    ck, _ = arch_checkpoint(tmp_path, spec, {"kind": "muzero", "hidden": 16})
    with pytest.raises(CheckpointError, match="does not describe a 'ppo' policy"):
        load_policy(ck, spec)
    ck, _ = arch_checkpoint(tmp_path, spec, {"kind": "ppo", "hidden": 16, "inference": {"min_confidence": 1.5}})
    with pytest.raises(CheckpointError, match="min_confidence = 1.5 must be a number in \\[0, 1\\]"):
        load_policy(ck, spec)
    ck, _ = arch_checkpoint(tmp_path, spec, {"kind": "ppo", "hidden": 32})
    with pytest.raises(CheckpointError, match="weights do not fit the network"):
        load_policy(ck, spec)


def test_min_confidence_holds_low_confidence_actions_and_says_so(tmp_path, spec):
    ck, net = arch_checkpoint(tmp_path, spec, {"kind": "ppo", "hidden": 16, "inference": {"min_confidence": 0.3}})
    policy = load_policy(ck, spec)
    plain = PPOPolicy(net)
    obs = np.random.default_rng(2).normal(size=(400, spec.obs_dim)) * 5
    held = 0
    for o in obs:
        a, c = plain.act(o)
        b, c2 = policy.act(o)
        assert c2 == c
        if a != 0 and c < 0.3:
            held += 1
            assert b == 0 and policy.note.startswith(f"{ACTION_NAMES[a]} held: confidence {c:.3f} < min_confidence 0.3")
        else:
            assert b == a and policy.note == ""
    assert 0 < held < len(obs)


def test_reset_leaves_nothing_of_a_warm_up_call(spec):
    p = ScriptedPolicy([1, 2, 3])
    p.act(np.zeros(spec.obs_dim))
    p.reset()
    assert p.calls == 0 and p.observations == [] and p.act(np.zeros(spec.obs_dim))[0] == 1
    floor = ConfidenceFloor(ScriptedPolicy([1]), 0.5)  # scripted confidence is 1.0: passes
    assert floor.act(np.zeros(spec.obs_dim)) == (1, 1.0)
    floor.reset()
    assert floor.inner.calls == 0


def test_evaluation_goes_through_the_policy_and_its_floor(market_cfg, spec):
    from stairway.core.bar_files import load_bars
    from stairway.core.execution import ExecutionModel
    from stairway.trainer.evaluation import evaluate
    from stairway.trainer.history import history_from_bars
    from tests.helpers import EURUSD

    hist = history_from_bars(load_bars(EURUSD)[0][:400], market_cfg, spec)
    ex = ExecutionModel.from_config(market_cfg.execution, market_cfg.instrument)
    torch.manual_seed(0)
    net = ActorCritic(spec.obs_dim, hidden=16)
    with torch.no_grad():
        net.actor[-1].weight.mul_(300.0)
    free, acts = evaluate(ConfidenceFloor(PPOPolicy(net), 0.0), hist, spec, ex, 100_000.0, 0)
    held, acts_held = evaluate(ConfidenceFloor(PPOPolicy(net), 0.999), hist, spec, ex, 100_000.0, 0)
    assert free["hold_rate"] < 0.9 and free["trades"] > 0
    assert held["hold_rate"] > free["hold_rate"] and held["trades"] < free["trades"]


def test_the_daemon_records_a_held_decision(tmp_path, market_cfg, spec):
    from stairway.core.execution import ExecutionModel
    from tests.integration.test_parity import EURUSD, NO_TIERS, load_bars, run_slot

    ex = ExecutionModel.from_config(market_cfg.execution, market_cfg.instrument)
    policy = ConfidenceFloor(ScriptedPolicy([1, 2] * 200), 1.01)  # every BUY/SELL is held
    bars = load_bars(EURUSD)[0][:200]
    slot, _, fills = run_slot(market_cfg, spec, ex, bars, policy, tmp_path / "h.db", [10**9], NO_TIERS)
    assert fills == [] and slot.counters.actions["HOLD"] == slot.counters.decisions > 0
    with sqlite3.connect(tmp_path / "h.db") as c:
        notes = [r[0] for r in c.execute("SELECT risk_note FROM decisions")]
    assert notes and all("held: confidence 1.000 < min_confidence 1.01" in n for n in notes)


def test_train_algo_chooses_the_learner(tmp_path):
    from stairway.trainer.config import TrainerConfig

    with pytest.raises(ConfigError, match="train.algo"):
        load_config(TrainerConfig, ROOT / "config/trainer.toml", environ={"STAIRWAY_TRAIN__ALGO": "a2c"})
