"""The daemon's main coroutine: load the current model, stream, decide, persist, summarise.

SIGINT/SIGTERM stop it between batches: the batch in hand is finished, the working order
is cancelled and recorded, everything is committed, and the summary is still printed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import structlog

from core.checkpoint import check_compatible, read_checkpoint
from core.errors import CheckpointError
from core.execution import ExecutionModel
from core.features import FeatureSpec
from core.policy import PPOPolicy, ppo_from_tensors
from core.types import ACTION_NAMES
from daemon.config import DaemonConfig
from daemon.feeds.replay import ReplayFeed, replay_ticks
from daemon.paper_broker import PaperBroker
from daemon.risk import RiskEngine
from daemon.slot import Slot
from daemon.store import Store

log = structlog.get_logger("daemon")


@dataclass
class DaemonResult:
    run_id: str
    summary: dict[str, float]
    counters: dict
    db_path: Path
    model_sha: str
    interrupted: bool
    seconds: float
    first_decision: str
    last_bar: str
    decision_latency_ns: object = None


def load_current_policy(models_dir: Path, spec: FeatureSpec) -> PPOPolicy:
    link = models_dir / "current"
    if not link.is_symlink() and not link.exists():
        raise CheckpointError(f"{link}: no current model; run `stairway train run` first")
    ckpt = read_checkpoint(link)
    check_compatible(ckpt.meta, str(link), feature_spec_hash=spec.hash, obs_shape=(spec.obs_dim,),
                     action_space=ACTION_NAMES)
    if ckpt.meta.policy_kind != "ppo":
        raise CheckpointError(f"{link}: policy kind {ckpt.meta.policy_kind!r} is not supported by this daemon")
    try:
        net = ppo_from_tensors(ckpt.tensors, spec.obs_dim, ckpt.meta.hidden)
    except RuntimeError as e:
        raise CheckpointError(f"{link}: weights do not fit the network: {e}") from None
    return PPOPolicy(net, ckpt.sha)


def _fmt(ts_ns: int | None) -> str:
    return "-" if ts_ns is None else time.strftime("%Y-%m-%d %H:%M", time.gmtime(ts_ns // 10**9))


async def run_daemon(cfg: DaemonConfig, policy=None, stop: asyncio.Event | None = None,
                     ticks=None, latency_capacity: int = 4096) -> DaemonResult:
    """Run a paper replay. ``ticks`` replaces the bar-derived quotes (benchmarks, recordings)."""
    t0 = time.perf_counter()
    spec = FeatureSpec.from_config(cfg)
    ex = ExecutionModel.from_config(cfg.execution, cfg.instrument)
    if policy is None:
        policy = await asyncio.to_thread(load_current_policy, cfg.service.models_dir, spec)
    start_ns, end_ns = cfg.replay.range.ns()
    source = "supplied" if ticks is not None else ReplayFeed.source
    if ticks is None:
        ticks = await asyncio.to_thread(replay_ticks, cfg, start_ns, end_ns)
    store = await Store.open(cfg.service.db_path)
    run_id = f"replay-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{os.getpid()}"
    await store.start_run(run_id, time.time_ns(), "paper-replay", policy.sha, cfg.model_dump_json())
    instrument = cfg.instrument.symbol
    slot = Slot(run_id, instrument, spec, cfg.bars.price, cfg.bars.period_ns, ex, cfg.account.initial_equity,
                policy, PaperBroker(ex), RiskEngine(cfg.risk, cfg.instrument.lot_units, cfg.bars.period_minutes),
                store, latency_capacity, market=cfg.instrument.market, holidays=cfg.instrument.holidays)
    log.info("daemon_started", run_id=run_id, mode="paper-replay", source=source, instrument=instrument,
             model_sha=policy.sha[:12], ticks=len(ticks), db=str(cfg.service.db_path), feature_spec=spec.hash)

    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    feed = ReplayFeed(ticks, cfg.replay.batch_ticks, cfg.replay.ticks_per_second)
    interrupted = False
    try:
        async for batch in feed.batches():
            slot.on_ticks(batch)
            await store.flush()
            for f in slot.new_fills:  # reported only once committed
                log.info("order_filled", client_order_id=f.client_order_id, units=f.units * int(f.side),
                         price=f.price)
            slot.new_fills.clear()
            log.debug("batch_committed", ticks=slot.counters.ticks, decisions=slot.counters.decisions)
            if stop.is_set():
                interrupted = True
                log.info("shutdown_requested", ticks=slot.counters.ticks)
                break
        if not interrupted:
            slot.finish()
        else:
            slot.cancel_working()
        summary = slot.tracker.summary()
        await store.end_run(run_id, time.time_ns(), summary)
    finally:
        await store.close()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.remove_signal_handler(sig)
            except (NotImplementedError, RuntimeError):
                pass
    c = slot.counters
    counters = {"ticks": c.ticks, "bars": c.bars, "decisions": c.decisions, "orders": c.orders, "fills": c.fills,
                "actions": c.actions, "rejected_bad": slot.builder.rejected_bad,
                "rejected_out_of_order": slot.builder.rejected_out_of_order,
                "rejected_duplicate": slot.builder.rejected_duplicate}
    log.info("daemon_stopped", run_id=run_id, interrupted=interrupted, **{k: v for k, v in counters.items() if k != "actions"})
    return DaemonResult(run_id, summary, counters, cfg.service.db_path, policy.sha, interrupted,
                        time.perf_counter() - t0, _fmt(slot.first_decision_bar_ts), _fmt(slot.last_bar_ts),
                        slot.latency.snapshot())
