"""Issue 19.4-5: a checkpoint never kills or freezes the daemon.

All-NaN MuZero weights raised ZeroDivisionError in the search and ``simulations = 1e12`` a
MemoryError: hot-swapped in, the daemon exited; as ``current`` of a live daemon it exited at
start-up with no fallback. NaN weights or ``c_puct = NaN`` passed and then held every bar at
confidence 1.0. A 2e6-simulation search held the GIL in its verification thread and froze the
event loop (/status timed out). Now every such checkpoint is refused, naming the tensor or the
field; the search releases the GIL; an inference over its time budget is refused. (The live
start-up fallback from a NaN MuZero current: tests/faults/test_model_fallback.py.)
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time

import numpy as np
import pytest
import torch

from stairway.core.checkpoint import CheckpointMeta, publish, save_checkpoint
from stairway.core.errors import CheckpointError
from stairway.core.muzero_model import MuZeroNet
from stairway.core.ppo_net import ActorCritic
from stairway.core.types import ACTION_NAMES
from stairway.daemon.app import Daemon
from stairway.daemon.hot_swap import load_verified
from tests.helpers import StatusPoller, paced_config, pass_gate, tiny_checkpoint
from tests.integration.test_service import until

pytestmark = pytest.mark.usefixtures("no_blocking")


def muzero(models, spec, seed=0, latent=16, hidden=32, nan_param=None, publish_it=True, **inference):
    torch.manual_seed(seed)
    net = MuZeroNet(spec.obs_dim, len(ACTION_NAMES), latent=latent, hidden=hidden)
    state = net.state_dict()
    if nan_param == "*":
        state = {k: torch.full_like(v, float("nan")) for k, v in state.items()}
    elif nan_param is not None:
        state[nan_param] = state[nan_param].clone().fill_(float("nan"))
    arch = net.arch() | {"inference": {"simulations": 15, **inference}}
    meta = CheckpointMeta("muzero", spec.hash, spec.to_json(), (spec.obs_dim,), ACTION_NAMES, 0, arch=json.dumps(arch))
    ck = save_checkpoint(models, state, meta)
    if publish_it:
        publish(models, ck.sha)
    return ck


def compile_search_kernels(spec) -> None:
    from stairway.core.muzero_policy import MuZeroPolicy

    net = MuZeroNet(spec.obs_dim, len(ACTION_NAMES), latent=16, hidden=32)
    weights = {k: v.numpy() for k, v in net.state_dict().items()}
    for act in ("visits", "improved"):  # one search, or a batch of them
        policy = MuZeroPolicy(weights, spec.obs_dim, net.arch() | {"inference": {"simulations": 15, "act": act}})
        policy.act(np.zeros(spec.obs_dim))
    policy.batch_visits(np.zeros((8, spec.obs_dim)))


def ppo_with_nan(models, spec):
    net = ActorCritic(spec.obs_dim, len(ACTION_NAMES), hidden=16)
    state = net.state_dict()
    name = next(k for k in state if k.startswith("actor") and k.endswith("weight"))
    state[name] = state[name].clone()
    state[name][0, 0] = float("inf")
    meta = CheckpointMeta("ppo", spec.hash, spec.to_json(), (spec.obs_dim,), ACTION_NAMES, 16)
    return save_checkpoint(models, state, meta), name


@pytest.mark.parametrize(
    "kind,why",
    [
        ({"nan_param": "*"}, "non-finite value"),
        ({"nan_param": "pred_policy.weight"}, "tensor pred_policy.weight holds"),
        ({"simulations": 10**12}, "inference.simulations = 1000000000000 must be an integer in [1, 512]"),
        ({"simulations": 2_000_000}, "inference.simulations = 2000000"),
        ({"simulations": 0}, "inference.simulations = 0"),
        ({"simulations": 15.5}, "must be an integer"),
        ({"c_puct": float("nan")}, "arch.inference.c_puct = nan is not a finite number"),
        ({"temperature": float("inf")}, "arch.inference.temperature = inf is not a finite number"),
        ({"discount": 0.0}, "inference.discount = 0.0 must be a number in [0.001, 1]"),
        ({"c_puct": -1.0}, "inference.c_puct = -1.0"),
        ({"min_confidence": float("nan")}, "min_confidence = nan is not a finite number"),
    ],
)
def test_a_bad_muzero_checkpoint_is_refused_naming_the_tensor_or_field(tmp_path, spec, kind, why):
    muzero(tmp_path / "m", spec, **kind)
    with pytest.raises(CheckpointError, match=why.replace("[", r"\[").replace("(", r"\(")):
        load_verified(tmp_path / "m" / "current", spec, None, np.zeros(spec.obs_dim))


def test_a_ppo_checkpoint_with_an_infinite_weight_is_refused(tmp_path, spec):
    ck, name = ppo_with_nan(tmp_path / "m", spec)
    with pytest.raises(CheckpointError, match=f"tensor {name} holds 1 non-finite"):
        load_verified(ck.path, spec, None, None)


def test_any_exception_of_a_policy_becomes_a_refusal(tmp_path, spec, monkeypatch):
    """Whatever a policy raises in its smoke inference (a division by zero in a search, a
    MemoryError) is a CheckpointError: the watcher keeps the old model, start-up falls back."""
    from stairway.core import muzero_policy

    ck = muzero(tmp_path / "m", spec)

    def boom(self, obs):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(muzero_policy.MuZeroPolicy, "act", boom)
    with pytest.raises(CheckpointError, match="ZeroDivisionError: division by zero"):
        load_verified(ck.path, spec, None, None)


def test_an_inference_over_its_budget_is_refused(tmp_path, spec):
    ck = muzero(tmp_path / "m", spec, latent=256, hidden=512, simulations=512)
    with pytest.raises(CheckpointError, match=r"one inference took \d+ ms, over the budget of 1 ms"):
        load_verified(ck.path, spec, None, None, budget_secs=0.001)
    assert load_verified(ck.path, spec, None, None, budget_secs=30.0).kind == "muzero"


@pytest.fixture()
def paced(tmp_path, spec):
    models, gate_db = tmp_path / "models", tmp_path / "state" / "gate.db"
    good = tiny_checkpoint(models, spec, seed=1, gate_db=gate_db)[0]
    cfg, _ = paced_config(
        tmp_path,
        batch_ticks=16,
        speed=80_000,
        require_gate_record="true",
        model_poll_secs=0.05,
        http_port=0,
        inference_budget_ms=100,
    )
    return cfg, models, gate_db, good


def gated_muzero(models, gate_db, spec, **kw):
    ck = muzero(models, spec, publish_it=False, **kw)
    pass_gate(gate_db, ck)
    publish(models, ck.sha)
    return ck


def test_bad_muzero_checkpoints_hot_swapped_into_a_running_daemon_are_refused_and_it_trades_on(paced, spec):
    cfg, models, gate_db, good = paced

    async def go():
        d = Daemon(cfg)
        task = asyncio.create_task(d.run())
        await until(lambda: d.setup_done and d.slot.counters.decisions > 5)
        for k, kw in enumerate(({"nan_param": "*"}, {"simulations": 10**12}, {"c_puct": float("nan")})):
            await asyncio.to_thread(gated_muzero, models, gate_db, spec, seed=k, **kw)
            await until(lambda k=k: d.watcher.stats.refused == k + 1)
            assert not task.done()
        res = await task
        return d, res

    d, res = asyncio.run(go())
    assert res.model_sha == good.sha and res.counters["ticks"] > 0
    with sqlite3.connect(res.db_path) as db:
        refused = [r[0] for r in db.execute("SELECT reason FROM model_swaps WHERE outcome = 'refused' ORDER BY id")]
        shas = {r[0] for r in db.execute("SELECT model_sha FROM decisions")}
    assert len(refused) == 3 and "non-finite" in refused[0]
    assert "simulations = 1000000000000" in refused[1] and "c_puct = nan" in refused[2]
    assert shas == {good.sha}


def test_a_heavy_verification_leaves_status_answering_within_100_ms(paced, spec):
    """The search releases the GIL: while a 512-simulation search of a large net is verified in
    its worker thread, /status answers every poll within 100 ms; then the checkpoint is
    refused, being over its inference budget."""
    cfg, models, gate_db, good = paced

    async def go():
        d = Daemon(cfg)
        task = asyncio.create_task(d.run())
        await until(lambda: d.setup_done and d.http_port and d.slot.counters.decisions > 2)
        heavy = await asyncio.to_thread(muzero, models, spec, 7, 1024, 2048, None, False, simulations=512)
        await asyncio.to_thread(pass_gate, gate_db, heavy)
        # the search kernels compiled (or loaded from numba's cache) first: LLVM holds the GIL while
        # it compiles, and a test worker may be the first of the suite's to need them. This case
        # measures the verification, not a first compile.
        await asyncio.to_thread(compile_search_kernels, spec)
        poller = StatusPoller(d.http_port)
        t0 = time.perf_counter()
        async with poller:
            await asyncio.to_thread(publish, models, heavy.sha)
            await until(lambda: d.watcher.stats.refused == 1, timeout=60)
        verify_s = time.perf_counter() - t0
        d.stop.set()
        await task
        return d, verify_s, poller.latencies

    d, verify_s, polls = asyncio.run(go())
    assert "over the budget of 100 ms" in d.watcher.stats.last_refusal
    assert verify_s > 0.3 and len(polls) >= 5, (verify_s, len(polls))  # the loop was exercised during it
    assert max(polls) < 0.1, sorted(polls)[-5:]
