"""How the daemon is assembled (the Daemon's set-up half; daemon.app runs and stops it).

Set-up opens, in order: the control directory, the starting model (exactly the checks a hot
swap does), the live adapter bundle or the replay feed, the database and its run row, the
risk engine, the order path (live router or paper broker), the slot, the restored book and
the reconciler (live), the tick recorder and the model watcher; then one warm-up inference.
Every resource is registered on an AsyncExitStack as it opens, so a start-up that fails
part-way closes what it had opened and the error propagates: the process exits, never hangs.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import time
from pathlib import Path

import structlog

from stairway.core.checkpoint import clean_leftovers
from stairway.core.errors import CheckpointError
from stairway.core.features import FeatureSpec
from stairway.core.policy import Policy
from stairway.daemon.control import ControlFiles
from stairway.daemon.feeds.replay import ReplayFeed, replay_ticks
from stairway.daemon.hot_swap import ModelWatcher, load_verified
from stairway.daemon.order_router import LiveRouter
from stairway.daemon.paper_broker import PaperBroker
from stairway.daemon.reconcile_runner import Reconciler
from stairway.daemon.reconciliation import UnknownPositionPolicy
from stairway.daemon.recorder import TickRecorder
from stairway.daemon.risk import RiskEngine
from stairway.daemon.slot import Slot
from stairway.daemon.store import Store

log = structlog.get_logger("daemon")


def load_current_policy(
    models_dir: Path, spec: FeatureSpec, gate_db: Path | None = None, market: dict | None = None
) -> Policy:
    """The model the daemon starts with passes exactly the checks a hot swap does."""
    link = models_dir / "current"
    if not link.is_symlink() and not link.exists():
        raise CheckpointError(f"{link}: no current model; run `stairway train run` first")
    return load_verified(link, spec, gate_db, None, market)


class DaemonBuild:
    """The Daemon's set-up methods (a mixin: daemon.app.Daemon holds the state they fill)."""

    # -- set-up ---------------------------------------------------------------------------
    async def _start(self) -> None:
        """Set up, or, when set-up fails part-way, close everything it had opened (database,
        broker connection) before the error propagates: a failed start exits, never hangs."""
        async with contextlib.AsyncExitStack() as stack:
            self._setup_stack = stack
            await self._setup()
            stack.pop_all()  # success: the ordered shutdown closes them

    async def _close_with_limit(self, what: str, close) -> None:
        try:
            await asyncio.wait_for(close(), self.cfg.service.shutdown_timeout_secs)
        except Exception as e:  # the set-up error is the one to report
            log.error(f"{what}_close_failed", error=repr(e))

    async def _setup(self) -> None:
        cfg, svc = self.cfg, self.cfg.service
        stack = self._setup_stack
        self.control = await asyncio.to_thread(ControlFiles, svc.control_dir)  # refuses a group/other-writable dir
        gate_db = svc.gate_db if svc.require_gate_record else None
        if self.policy is None:
            self.policy = await asyncio.to_thread(
                load_current_policy, svc.models_dir, self.spec, gate_db, cfg.market_identity()
            )
        self.instrument = cfg.instrument.symbol
        if cfg.live:
            from stairway.daemon.brokers.factory import make_adapters

            self.bundle = (self.adapters or make_adapters)(cfg, self.environ)
            self.adapter, self.feed = self.bundle.broker, self.bundle.feed
            stack.push_async_callback(self._close_with_limit, "broker", self.adapter.close)
            await self.adapter.connect()
            mode = f"{cfg.broker.kind}-live" if cfg.real_orders else f"{cfg.broker.kind}-paper-live"
            source = f"{cfg.broker.kind} prices"
            clock_ns = lambda closing_ts: self.clock()  # noqa: E731
        else:
            source = "supplied" if self.ticks is not None else ReplayFeed.source
            if self.ticks is None:
                self.ticks = await asyncio.to_thread(replay_ticks, cfg, *cfg.replay.range.ns(), self.spec.window)
            self.feed = ReplayFeed(self.ticks, cfg.replay.batch_ticks, cfg.replay.speed)
            mode, clock_ns = "paper-replay", self.feed.now_ns
        self.store = await Store.open(svc.db_path)
        stack.push_async_callback(self._close_with_limit, "database", self.store.close)
        prefix = cfg.broker.kind if cfg.live else "replay"
        self.run_id = f"{prefix}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{os.getpid()}"
        crashed = await self.store.start_run(self.run_id, time.time_ns(), mode, self.policy.sha, cfg.model_dump_json())
        stack.push_async_exit(self._record_failed_setup)
        if crashed:
            log.warning("runs_marked_crashed", run_ids=crashed, db=str(svc.db_path))
        try:
            removed = await asyncio.to_thread(clean_leftovers, svc.models_dir)
        except OSError as e:  # a read-only models dir is the trainer's business
            log.warning("publish_leftovers_not_checked", error=str(e))
        else:
            if removed:
                log.warning("publish_leftovers_removed", files=[str(p) for p in removed])
        self.risk = RiskEngine(cfg.risk, cfg.instrument.lot_units, cfg.bars.period_minutes)
        if cfg.real_orders:
            self.router = LiveRouter(self.adapter, self.store, self.run_id, self.clock)
            await self.router.restore(self.instrument)
            self.broker = self.router
        else:
            self.broker = PaperBroker(self.ex)
        self.slot = Slot(
            self.run_id,
            self.instrument,
            self.spec,
            cfg.bars.price,
            cfg.bars.period_ns,
            self.ex,
            cfg.account.initial_equity,
            self.policy,
            self.broker,
            self.risk,
            self.store,
            self.latency_capacity,
            on_flatten_tier=self._on_flatten_tier,
            market=cfg.instrument.market,
            holidays=cfg.instrument.holidays,
            clock_ns=clock_ns,
            max_jump=cfg.bars.max_jump,
            jump_confirm=cfg.bars.jump_confirm_quotes,
        )
        if cfg.real_orders:
            await self._restore_book()
        self.slot.ramp = cfg.risk.size_ramp
        self.recorder = (
            TickRecorder(
                svc.ticks_dir, self.instrument, svc.recorder_flush_secs, retention_days=svc.tick_retention_days
            )
            if svc.record_ticks
            else None
        )
        self.watcher = await asyncio.to_thread(  # it reads models/current
            ModelWatcher,
            svc.models_dir,
            self.spec,
            gate_db,
            svc.model_poll_secs,
            self._live_obs,
            self.policy.sha,
            cfg.market_identity(),
        )
        try:
            await asyncio.to_thread(self.slot.warm_up)
        except Exception as e:
            raise CheckpointError(
                f"model {self.policy.sha[:12]}: the policy failed its warm-up inference: {e!r}"
            ) from e
        # Everything allocated so far (torch, numba, config) lives for the whole run: move it out
        # of the collector's reach, so a full collection never walks it (100+ ms pauses otherwise).
        gc.collect()
        gc.freeze()
        self.setup_done = True
        log.info(
            "daemon_started",
            run_id=self.run_id,
            mode=mode,
            source=source,
            instrument=self.instrument,
            model_sha=self.policy.sha[:12],
            ticks=len(self.ticks) if self.ticks is not None else None,
            db=str(svc.db_path),
            feature_spec=self.spec.hash,
            config=json.loads(cfg.model_dump_json()),
        )

    async def _record_failed_setup(self, exc_type, exc, tb) -> bool:
        """The run row of a start that failed after it was written records why."""
        if exc is not None:
            try:
                await asyncio.wait_for(
                    self.store.end_run(self.run_id, time.time_ns(), {"setup_failed": str(exc)}),
                    self.cfg.service.shutdown_timeout_secs,
                )
            except Exception as e:
                log.error("database_end_run_failed", error=repr(e))
        return False

    async def _restore_book(self) -> None:
        """The book as last committed (it moves with every fill) and the client-id sequence;
        orders stay blocked until the reconciler has compared it with the broker."""
        cfg, slot = self.cfg, self.slot
        slot.persist_book = True
        slot.broker_ready = False
        book = await self.store.book(self.instrument)
        if book is not None:
            slot.set_position(*book)
        last = await self.store.last_order_seq(self.instrument)
        if last is not None:
            slot.seed_order_seq(*last)
        self.router.on_fills = lambda: slot.apply_pending_fills(self.clock())
        self.reconciler = Reconciler(
            self.adapter,
            self.router,
            slot,
            self.store,
            self.run_id,
            UnknownPositionPolicy(cfg.broker.unknown_positions),
            lambda: self.risk.max_position_units,
            cfg.service.reconcile_secs,
            cfg.broker.emergency_check_secs,
            self.clock,
        )
        log.info(
            "book_restored",
            units=float(slot.position[0]),
            avg_price=float(slot.position[1]),
            unresolved_orders=list(self.router.unresolved),
            cursor=self.router.cursor,
        )
