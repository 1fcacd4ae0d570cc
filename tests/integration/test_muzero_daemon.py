"""Issue 11 §5 (in part): a MuZero checkpoint runs in the daemon exactly as a PPO one:
registry, start-up verification with a smoke search, and parity with the trainer's env
(identical decisions, fills and PnL on the same bars, min_confidence applied in both)."""

import json

import numpy as np
import pytest
import torch

from stairway.core.bar_files import load_bars
from stairway.core.checkpoint import CheckpointMeta, publish, read_checkpoint, save_checkpoint
from stairway.core.execution import ExecutionModel
from stairway.core.muzero_model import MuZeroNet
from stairway.core.policies import load_policy
from stairway.core.types import ACTION_NAMES
from stairway.daemon.hot_swap import load_verified
from stairway.trainer.evaluation import evaluate
from stairway.trainer.history import history_from_bars
from tests.helpers import EURUSD
from tests.integration.test_parity import NO_TIERS, run_slot


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
    ck = muzero_checkpoint(tmp_path / "m", spec, seed=2)  # a seed whose untrained net trades in these 360 bars
    ex = ExecutionModel.from_config(market_cfg.execution, market_cfg.instrument)
    bars = load_bars(EURUSD)[0][:360]
    daemon_policy = load_policy(ck, spec)
    assert daemon_policy.kind == "muzero"
    slot, rows, fills = run_slot(
        market_cfg, spec, ex, bars, daemon_policy, tmp_path / "mz.db", [1, 7, 64, 500], NO_TIERS
    )
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


def test_hot_swap_ppo_to_muzero_to_ppo_during_a_tick_burst(tmp_path, spec):
    """Kinds swap between two bars like any checkpoint; no tick is dropped."""
    import asyncio
    import sqlite3

    from stairway.core.bar_ticks import bars_to_ticks
    from stairway.daemon.app import Daemon
    from tests.helpers import daemon_config, pass_gate, write_bars_csv
    from tests.integration.test_service import HOUR, gated, until

    b = load_bars(EURUSD)[0]
    bars = b[b["ts_ns"] >= 1506816000 * 10**9][:400]
    models, gate_db = tmp_path / "models", tmp_path / "state" / "gate.db"
    first = gated(models, gate_db, spec, seed=1)
    cfg, _ = daemon_config(
        tmp_path,
        write_bars_csv(tmp_path / "b.csv", bars),
        "2017-10-01",
        "2018-01-01",
        batch_ticks=16,
        speed=120_000,
        require_gate_record="true",
        model_poll_secs=0.05,
    )

    async def scenario():
        d = Daemon(cfg)
        task = asyncio.create_task(d.run())
        await until(lambda: d.setup_done and d.slot.counters.decisions > 20)
        mz = muzero_checkpoint(tmp_path / "staging", spec, seed=5)  # gated first, then published
        pass_gate(gate_db, mz)
        publish_into(models, mz)
        await until(lambda: d.slot.counters.swaps == 1)
        seen = d.slot.counters.decisions
        await until(lambda: d.slot.counters.decisions > seen + 20)
        last = gated(models, gate_db, spec, seed=2)
        await until(lambda: d.slot.counters.swaps == 2)
        return await task, mz, last

    res, mz, last = asyncio.run(scenario())
    assert res.counters["ticks"] == len(bars_to_ticks(bars, HOUR, "ask", 1e-4))  # nothing dropped
    with sqlite3.connect(res.db_path) as db:
        shas = [r[0] for r in db.execute("SELECT model_sha FROM decisions ORDER BY bar_ts_ns")]
    runs = [s for k, s in enumerate(shas) if k == 0 or shas[k - 1] != s]
    assert runs == [first.sha, mz.sha, last.sha]  # each kind decided on whole bars, in order
    assert shas.count(mz.sha) > 20


def publish_into(models, ck):
    """Copy a checkpoint into the daemon's registry and point current at it atomically."""
    (models / "registry").mkdir(parents=True, exist_ok=True)
    target = models / "registry" / ck.path.name
    target.write_bytes(ck.path.read_bytes())
    publish(models, ck.sha)


@pytest.mark.parametrize("kind", ["ppo", "muzero"])
def test_the_daemon_process_never_imports_torch(tmp_path, spec, kind):
    """Inference reads the safetensors weights as numpy arrays (core.weights) and runs numpy
    (PPO) or numba (MuZero): a paper replay from start-up verification to the last bar
    leaves no torch module loaded."""
    import subprocess
    import sys

    from tests.helpers import ROOT, daemon_config, tiny_checkpoint, write_bars_csv

    b = load_bars(EURUSD)[0]
    bars = b[b["ts_ns"] >= 1506816000 * 10**9][:200]
    ck = (
        tiny_checkpoint(tmp_path / "models", spec)[0] if kind == "ppo" else muzero_checkpoint(tmp_path / "models", spec)
    )
    _, path = daemon_config(tmp_path, write_bars_csv(tmp_path / "b.csv", bars), "2017-10-01", "2018-01-01")
    probe = (
        "import runpy, sys\n"
        f"sys.argv = ['stairway', 'daemon', 'run', '--config', {str(path)!r}]\n"
        "try:\n    runpy.run_module('stairway.cli', run_name='__main__')\n"
        "except SystemExit as e:\n    print('EXIT', e.code)\n"
        "print('TORCH-MODULES', sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))\n"
    )
    p = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=300)
    out = p.stdout.splitlines()
    assert "EXIT 0" in out, p.stdout[-2000:] + p.stderr[-2000:]
    assert out[-1] == "TORCH-MODULES []"
    db = tmp_path / "state" / "paper-replay.db"
    import sqlite3

    with sqlite3.connect(db) as con:  # it did decide, with that model
        n, shas = con.execute("SELECT COUNT(*), GROUP_CONCAT(DISTINCT model_sha) FROM decisions").fetchone()
    assert n > 50 and shas == ck.sha
