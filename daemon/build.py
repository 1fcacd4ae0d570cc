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
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import structlog

from stairway.core.broker import Broker, Feed
from stairway.core.checkpoint import clean_leftovers
from stairway.core.errors import CheckpointError
from stairway.core.execution import ExecutionModel
from stairway.core.features import FeatureSpec
from stairway.core.policy import ObserveOnlyPolicy, Policy
from stairway.core.regime import RegimeDetector
from stairway.daemon.account import Account
from stairway.daemon.aio import within
from stairway.daemon.alerts import Alerter, Conditions, alert_urls, hold_secs
from stairway.daemon.control import ControlFiles
from stairway.daemon.cross_view import wire as wire_cross_view
from stairway.daemon.feature_watch import FeatureWatch
from stairway.daemon.feeds.replay import ReplayFeed, replay_ticks
from stairway.daemon.hot_swap import DEFAULT_BUDGET_SECS, ModelWatcher, load_verified
from stairway.daemon.lifecycle import Lifecycle, State
from stairway.daemon.live_guard import LiveGuard
from stairway.daemon.model_events import ModelEvents
from stairway.daemon.order_router import LiveRouter
from stairway.daemon.paper_broker import OrderGateway, PaperBroker
from stairway.daemon.reconcile_runner import Reconciler
from stairway.daemon.reconciliation import UnknownPositionPolicy
from stairway.daemon.recorder import TickRecorder
from stairway.daemon.result import models_line
from stairway.daemon.risk import RiskEngine
from stairway.daemon.rows import RiskEventRow
from stairway.daemon.slot import Slot, SlotOptions
from stairway.daemon.slot_watch import SlotWatch
from stairway.daemon.store import Store
from stairway.daemon.supervisor import ControlSupervisor
from stairway.daemon.warm_start import Source, warm_slot

if TYPE_CHECKING:
    from stairway.daemon.brokers.factory import AdapterBundle
    from stairway.daemon.config import DaemonConfig, Leg

log = structlog.get_logger("daemon")


def load_current_policy(
    models_dir: Path,
    spec: FeatureSpec,
    gate_db: Path | None = None,
    market: dict | None = None,
    budget_secs: float = DEFAULT_BUDGET_SECS,
) -> Policy:
    """The model the daemon starts with passes exactly the checks a hot swap does."""
    link = models_dir / "current"
    if not link.is_symlink() and not link.exists():
        raise CheckpointError(f"{link}: no current model; run `stairway train run` first")
    return load_verified(link, spec, gate_db, None, market, budget_secs)


def load_startup_policy(
    models_dir: Path,
    spec: FeatureSpec,
    gate_db: Path | None,
    market: dict,
    observe_if_none: bool,
    budget_secs: float = DEFAULT_BUDGET_SECS,
) -> tuple[Policy, str]:
    """``current``; if it does not verify, ``previous``, then ``gold`` (the same checks a hot
    swap does). Returns (the policy, why it is not current's: "" when it is). When none
    verifies: with ``observe_if_none`` (a live daemon) an ObserveOnlyPolicy, else the
    current link's own error (a paper replay has nothing to do without a model)."""
    try:
        return load_current_policy(models_dir, spec, gate_db, market, budget_secs), ""
    except CheckpointError as e:
        first = e
    reasons = [str(first)]
    for name in ("previous", "gold"):
        link = models_dir / name
        if not link.is_symlink():
            continue
        try:
            policy = load_verified(link, spec, gate_db, None, market, budget_secs)
        except CheckpointError as e:
            reasons.append(str(e))
            continue
        return policy, f"{models_dir / 'current'} refused ({first}); started with {name} {policy.sha[:12]}"
    if not observe_if_none:
        raise first
    return ObserveOnlyPolicy("; ".join(reasons)), "no model verifies: " + "; ".join(reasons)


class DaemonBuild:
    """The Daemon's set-up methods (a mixin: daemon.app.Daemon holds the state they fill;
    what they read and write is declared here)."""

    # given to daemon.app.Daemon
    cfg: DaemonConfig
    policy: Policy | dict[str, Policy] | None
    ticks: np.ndarray | dict[str, np.ndarray] | None
    spec: FeatureSpec
    adapters: Callable[..., AdapterBundle] | None
    environ: dict[str, str] | None
    clock: Callable[[], int]
    latency_capacity: int
    legs: list[Leg]
    slots: dict[str, Slot]
    watchers: dict[str, ModelWatcher]
    recorders: dict[str, TickRecorder]
    # filled here
    control: ControlFiles
    bundle: AdapterBundle | None
    adapter: Broker | None  # live only
    feed: Feed | ReplayFeed
    store: Store
    run_id: str
    risk: RiskEngine
    account: Account
    exs: dict[str, ExecutionModel]
    ex: ExecutionModel
    router: LiveRouter | None
    broker: OrderGateway
    reconciler: Reconciler | None
    instrument: str
    setup_done: bool
    startup_events: list[tuple[str, str]]
    lifecycle: Lifecycle
    alerter: Alerter
    conditions: Conditions
    models: ModelEvents
    supervisor: ControlSupervisor
    stop: asyncio.Event
    _setup_stack: contextlib.AsyncExitStack

    def _live_obs_of(self, instrument: str) -> Callable[[], np.ndarray | None]:  # daemon.app.Daemon
        raise NotImplementedError

    def _after_poll(self) -> None:  # daemon.app.Daemon
        raise NotImplementedError

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
            await within(close(), self.cfg.service.shutdown_timeout_secs)
        except Exception as e:  # the set-up error is the one to report
            log.error(f"{what}_close_failed", error=repr(e))

    async def _setup(self) -> None:
        cfg, svc = self.cfg, self.cfg.service
        stack = self._setup_stack
        self.legs = await asyncio.to_thread(cfg.legs)  # models_dir/<symbol> when it holds a current link
        a = cfg.alerts
        urls = await asyncio.to_thread(alert_urls, a, self.environ)
        self.alerter = Alerter(urls, a.min_interval_secs, a.max_per_minute, timeout_secs=a.timeout_secs)
        self.conditions = Conditions(self.alerter, partial(hold_secs, a))
        self.control = await asyncio.to_thread(  # refuses a group/other-writable dir
            ControlFiles, svc.control_dir, True, [leg.symbol for leg in self.legs] if cfg.portfolio else ()
        )
        gate_db = svc.gate_db if svc.require_gate_record else None
        given: dict[str, Policy] = {}
        if isinstance(self.policy, dict):
            given = self.policy
        elif self.policy is not None:  # one policy: a daemon of one instrument
            if len(self.legs) > 1:
                raise ValueError("a portfolio's policies are given by instrument (a dict), not one for all")
            given = {self.legs[0].symbol: self.policy}
        policies: dict[str, Policy] = {}
        for leg in self.legs:
            if leg.symbol in given:
                policies[leg.symbol] = given[leg.symbol]
                continue
            policies[leg.symbol], why = await asyncio.to_thread(
                load_startup_policy,
                leg.models_dir,
                self.spec,
                gate_db,
                leg.cfg.model_requirements(),
                cfg.live,
                svc.inference_budget_ms / 1000,
            )
            if why:
                log.error("model_fallback_at_startup", instrument=leg.symbol, reason=why)
                self.startup_events.append((leg.symbol, why))
        # the run's model: the one model, or each instrument's (a portfolio's runs row)
        run_model = models_line({leg.symbol: policies[leg.symbol].sha for leg in self.legs})
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
            assert cfg.replay is not None  # a paper daemon has one (DaemonConfig checks)
            if self.ticks is None:
                start, end = cfg.replay.range.ns()
                quotes: dict[str, np.ndarray] = {}
                for leg in self.legs:
                    quotes[leg.symbol] = await asyncio.to_thread(replay_ticks, leg.cfg, start, end, self.spec.window)
            else:
                if not isinstance(self.ticks, dict) and len(self.legs) > 1:
                    raise ValueError("a portfolio's quotes are given by instrument (a dict), not one array")
                quotes = self.ticks if isinstance(self.ticks, dict) else {self.legs[0].symbol: self.ticks}
            self.ticks = quotes
            self.feed = ReplayFeed(quotes, cfg.replay.batch_ticks, cfg.replay.speed, cfg.bars.period_ns)
            mode, clock_ns = "paper-replay", self.feed.now_ns
        self.store = await Store.open(svc.db_path)
        self.store.max_secs = svc.flush_secs
        stack.push_async_callback(self._close_with_limit, "database", self.store.close)
        prefix = cfg.broker.kind if cfg.live else "replay"
        # unique even for two runs of one process within a second (a restart test, a supervisor)
        self.run_id = f"{prefix}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{os.getpid()}-{os.urandom(3).hex()}"
        self.models = ModelEvents(cfg, self.legs, self.slots, self.alerter, self.control, self.store, self.run_id)
        crashed = await self.store.start_run(self.run_id, time.time_ns(), mode, run_model, cfg.model_dump_json())
        stack.push_async_exit(self._record_failed_setup)
        for inst, why in self.startup_events:  # a model fallback is a risk event, as a refused swap is
            kind = "model_observe_only" if why.startswith("no model verifies") else "model_fallback"
            self.store.add(RiskEventRow(self.run_id, time.time_ns(), inst, kind, why, None, None))
        if crashed:
            log.warning("runs_marked_crashed", run_ids=crashed, db=str(svc.db_path))
        for leg in self.legs:
            try:
                removed = await asyncio.to_thread(clean_leftovers, leg.models_dir)
            except OSError as e:  # a read-only models dir is the trainer's business
                log.warning("publish_leftovers_not_checked", models_dir=str(leg.models_dir), error=str(e))
            else:
                if removed:
                    log.warning("publish_leftovers_removed", files=[str(p) for p in removed])
        self.risk = RiskEngine(cfg.risk, cfg.instrument.lot_units, cfg.bars.period_minutes)
        pf = cfg.portfolio
        self.account = Account(
            self.risk,
            cfg.account.initial_equity,
            pf.max_margin_pct if pf else None,
            margin_rates={leg.symbol: leg.margin_rate for leg in self.legs},
        )
        self.account.on_flatten_tier = self.models.on_flatten_tier
        self.supervisor = ControlSupervisor(
            svc,
            cfg.live,
            self.control,
            self.risk,
            self.slots,
            lambda: self.feed.stale_instruments(),
            self.alerter,
            self.stop,
            self.clock,
            self._after_poll,
        )
        for leg in self.legs:
            lots = leg.cfg.risk.max_position_lots if pf else None
            self.risk.add_instrument(leg.symbol, leg.cfg.instrument.lot_units, lots)
        self.exs = {leg.symbol: ExecutionModel.from_config(leg.cfg.execution, leg.cfg.instrument) for leg in self.legs}
        if cfg.real_orders:
            assert self.adapter is not None  # real orders are live
            router = self.router = LiveRouter(self.adapter, self.store, self.run_id, self.clock)
            for leg in self.legs:
                await router.restore(leg.symbol)
            self.broker = router
        else:
            self.broker = PaperBroker(self.exs)
        g = cfg.guards
        for leg in self.legs:
            lc = leg.cfg
            self.slots[leg.symbol] = Slot(
                self.run_id,
                leg.symbol,
                self.spec,
                cfg.bars.builder(),
                self.exs[leg.symbol],
                policies[leg.symbol],
                self.broker,
                self.store,
                self.account,
                SlotOptions(
                    lc.instrument.calendar(),
                    clock_ns,
                    SlotWatch(
                        self.alerter.notify,
                        RegimeDetector(cfg.regime, cfg.bars),
                        LiveGuard(
                            cfg.account.initial_equity,
                            g.live_sharpe_window_days,
                            g.min_live_sharpe,
                            g.breach_days,
                            g.min_days,
                            g.pnl_z_limit,
                        ),
                        FeatureWatch(
                            leg.symbol,
                            self.spec.market_names,
                            g.feature_drift_window_bars,
                            g.feature_outside_max,
                            g.feature_drift_action == "observe_only",
                            self.risk.permission,
                        ),
                        on_guard_breach=self.models.on_guard_breach,
                        halt_on_trade_band=g.trade_band_action == "stop_opening",
                        rollback_below_expectation=g.pnl_expectation_action == "rollback",
                    ),
                    self.latency_capacity,
                ),
            )
        wire_cross_view(self.slots)  # cross-instrument features read the other slots' bars
        if cfg.real_orders:
            await self._restore_book()
        for slot in self.slots.values():
            slot.swap.ramp = cfg.risk.size_ramp
        if svc.record_ticks:
            for leg in self.legs:
                self.recorders[leg.symbol] = TickRecorder(
                    svc.ticks_dir, leg.symbol, svc.recorder_flush_secs, retention_days=svc.tick_retention_days
                )
        for leg in self.legs:
            self.watchers[leg.symbol] = await asyncio.to_thread(  # it reads models/current
                ModelWatcher,
                leg.models_dir,
                self.spec,
                gate_db,
                svc.model_poll_secs,
                self._live_obs_of(leg.symbol),
                policies[leg.symbol].sha,
                leg.cfg.model_requirements(),
                svc.inference_budget_ms / 1000,
            )
        if svc.warm_start:
            self.lifecycle.set(State.WARMING, "warm start from history")
            await self._warm_start()
        for slot in self.slots.values():
            try:
                await asyncio.to_thread(slot.warm_up)
            except Exception as e:
                raise CheckpointError(
                    f"{slot.instrument} model {slot.policy.sha[:12]}: the policy failed its warm-up inference: {e!r}"
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
            instruments=list(self.slots),
            model_shas={k: s.policy.sha[:12] for k, s in self.slots.items()},
            ticks=len(self.feed) if isinstance(self.feed, ReplayFeed) else None,
            db=str(svc.db_path),
            feature_spec=self.spec.hash,
            config=json.loads(cfg.model_dump_json()),
        )

    async def _warm_start(self) -> None:
        """Each slot's buffers from history before its first quote (daemon.warm_start): the
        broker's bars (live), then bars stored by earlier runs of the same kind."""
        cfg = self.cfg
        prefix = cfg.broker.kind if cfg.live else "paper-replay"
        for inst, slot in self.slots.items():
            sources: list[Source] = []
            history = self.adapter.history_bars if cfg.live and self.adapter is not None else None
            if history is not None:
                sources.append(("broker", partial(history, inst, cfg.bars.period_minutes, cfg.bars.price)))
            sources.append(("store", partial(self.store.recent_bars, inst, mode_prefix=prefix)))
            if cfg.live:
                until = self.clock()
            else:
                q = self.ticks[inst] if isinstance(self.ticks, dict) else None
                if q is None or not len(q):
                    continue
                until = int(q["ts_ns"][0])
            svc = cfg.service
            await warm_slot(
                slot,
                sources,
                until,
                cfg.bars.period_minutes,
                svc.warm_start_max_days,
                svc.warm_start_timeout_secs,
                cfg.live,
            )

    async def _record_failed_setup(self, exc_type, exc, tb) -> bool:
        """The run row of a start that failed after it was written records why."""
        if exc is not None:
            try:
                await within(
                    self.store.end_run(self.run_id, time.time_ns(), {"setup_failed": str(exc)}),
                    self.cfg.service.shutdown_timeout_secs,
                )
            except Exception as e:
                log.error("database_end_run_failed", error=repr(e))
        return False

    async def _restore_book(self) -> None:
        """The book as last committed (it moves with every fill) and the client-id sequence,
        per instrument; orders stay blocked until the reconciler has compared every book with
        the broker."""
        cfg = self.cfg
        router = self.router
        assert router is not None and self.adapter is not None  # the book is restored only where orders are real

        router.books = {inst: s.orders for inst, s in self.slots.items()}  # where its fills are booked
        for inst, slot in self.slots.items():
            slot.orders.persist_book = True
            self.risk.permission.reconciled(inst, False)  # no order until the reconciler has compared
            book = await self.store.book(inst)
            if book is not None:
                slot.orders.set_position(*book)
            last = await self.store.last_order_seq(inst)
            if last is not None:
                slot.orders.seed_order_seq(*last)
            log.info(
                "book_restored",
                instrument=inst,
                units=float(slot.position[0]),
                avg_price=float(slot.position[1]),
                unresolved_orders=[k for k, i in router.unresolved.items() if i.instrument == inst],
                cursor=router.cursor,
            )
        self.reconciler = Reconciler(
            self.adapter,
            router,
            self.slots,
            self.store,
            self.run_id,
            UnknownPositionPolicy(cfg.broker.unknown_positions),
            self.risk.max_units,
            cfg.service.reconcile_secs,
            cfg.broker.emergency_check_secs,
            self.clock,
            account=self.account,
            alert=self.alerter.notify,
            balance_tolerance=cfg.guards.balance_tolerance,
        )
