"""Issue 11 §5 (in part): a MuZero checkpoint runs in the daemon exactly as a PPO one:
registry, start-up verification with a smoke search, and parity with the trainer's env
(identical decisions, fills and PnL on the same bars, min_confidence applied in both)."""

import json

import numpy as np
import pytest
import torch

from core.bar_files import load_bars
from core.checkpoint import CheckpointMeta, publish, read_checkpoint, save_checkpoint
from core.execution import ExecutionModel
from core.muzero_net import MuZeroNet
from core.policies import load_policy
from core.types import ACTION_NAMES
from daemon.hot_swap import load_verified
from tests.helpers import EURUSD
from tests.integration.test_parity import NO_TIERS, run_slot
from trainer.evaluation import evaluate
from trainer.history import history_from_bars


def muzero_checkpoint(models, spec, seed=0, **inference):
    torch.manual_seed(seed)
    net = MuZeroNet(spec.obs_dim, len(ACTION_NAMES), latent=16, hidden=32)
    with torch.no_grad():
        net.pred_policy.weight.mul_(30.0)  # an untrained net with opinions, so it trades
    arch = net.arch() | {"inference": {"simulations": 15, "min_confidence": 0.35, **inference}}
    meta = CheckpointMeta("muzero", spec.hash, spec.to_json(), (spec.obs_dim,), ACTION_NAMES, 0, arch=json.dumps(arch))
    ck = save_checkpoint(models, net.state_dict(), meta)
    publish(models, ck.sha)
    return read_checkpoint(ck.path)


def test_daemon_and_env_take_identical_decisions_with_a_muzero_checkpoint(tmp_path, market_cfg, spec):
    ck = muzero_checkpoint(tmp_path / "m", spec)
    ex = ExecutionModel.from_config(market_cfg.execution, market_cfg.instrument)
    bars = load_bars(EURUSD)[0][:360]
    daemon_policy = load_policy(ck, spec)
    assert daemon_policy.kind == "muzero"
    slot, rows, fills = run_slot(market_cfg, spec, ex, bars, daemon_policy, tmp_path / "mz.db", [1, 7, 64, 500],
                                 NO_TIERS)
    hist = history_from_bars(bars, market_cfg, spec)
    env_summary, taken = evaluate(load_policy(ck, spec), hist, spec, ex, 100_000.0, 0, risk=NO_TIERS)
    acts = slot.counters.actions
    assert sum(acts.values()) == len(taken)
    assert [acts[n] for n in ACTION_NAMES] == [taken.count(i) for i in range(len(ACTION_NAMES))]
    assert env_summary == pytest.approx(slot.tracker.summary(), rel=1e-12, abs=1e-9)
    assert env_summary["trades"] > 3 and len(fills) > 3
    assert 0.0 < env_summary["hold_rate"] < 1.0


def test_start_up_verification_runs_a_smoke_search(tmp_path, spec):
    muzero_checkpoint(tmp_path / "m", spec, seed=2)
    policy = load_verified(tmp_path / "m" / "current", spec, None, np.zeros(spec.obs_dim))
    assert policy.kind == "muzero"
    a, c = policy.act(np.zeros(spec.obs_dim))
    assert 0 <= a < len(ACTION_NAMES) and 0.0 < c <= 1.0
