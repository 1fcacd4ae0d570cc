"""How the daemon is assembled: ``build`` makes its parts (daemon.parts); daemon.app runs
and stops them.

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

from stairway.core.broker import Feed
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
from stairway.daemon.parts import Given, Parts
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


async def build(
    cfg: DaemonConfig,
    spec: FeatureSpec,
    given: Given,
    stop: asyncio.Event,
    lifecycle: Lifecycle,
    after_poll: Callable[[], None],
    stack: contextlib.AsyncExitStack,
) -> Parts:
    """Every component of the daemon, in order, each resource registered on ``stack`` as it
    opens (the caller closes them if a later step fails)."""
    svc = cfg.service
    legs = await asyncio.to_thread(cfg.legs)  # models_dir/<symbol> when it holds a current link
    a = cfg.alerts
    urls = await asyncio.to_thread(alert_urls, a, given.environ)
    alerter = Alerter(urls, a.min_interval_secs, a.max_per_minute, timeout_secs=a.timeout_secs)
    control = await asyncio.to_thread(  # refuses a group/other-writable dir
        ControlFiles, svc.control_dir, True, [leg.symbol for leg in legs] if cfg.portfolio else ()
    )
    policies, startup_events = await _policies(cfg, spec, given, legs)
    # the run's model: the one model, or each instrument's (a portfolio's runs row)
    run_model = models_line({leg.symbol: policies[leg.symbol].sha for leg in legs})
    bundle = adapter = None
    quotes: dict[str, np.ndarray] | None = None
    feed: Feed | ReplayFeed
    if cfg.live:
        from stairway.daemon.brokers.factory import make_adapters

        bundle = (given.adapters or make_adapters)(cfg, given.environ)
        adapter, feed = bundle.broker, bundle.feed
        stack.push_async_callback(close_with_limit, "broker", adapter.close, svc.shutdown_timeout_secs)
        await adapter.connect()
        mode = f"{cfg.broker.kind}-live" if cfg.real_orders else f"{cfg.broker.kind}-paper-live"
        source = f"{cfg.broker.kind} prices"
        clock = given.clock
        clock_ns = lambda closing_ts: clock()  # noqa: E731
    else:
        source = "supplied" if given.ticks is not None else ReplayFeed.source
        quotes = await _replay_quotes(cfg, spec, given, legs)
        assert cfg.replay is not None  # a paper daemon has one (DaemonConfig checks)
        feed = ReplayFeed(quotes, cfg.replay.batch_ticks, cfg.replay.speed, cfg.bars.period_ns)
        mode, clock_ns = "paper-replay", feed.now_ns
    store = await Store.open(svc.db_path)
    store.max_secs = svc.flush_secs
    stack.push_async_callback(close_with_limit, "database", store.close, svc.shutdown_timeout_secs)
    prefix = cfg.broker.kind if cfg.live else "replay"
    # unique even for two runs of one process within a second (a restart test, a supervisor)
    run_id = f"{prefix}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{os.getpid()}-{os.urandom(3).hex()}"
    slots: dict[str, Slot] = {}  # filled below; the model events and the supervisor read them
    models = ModelEvents(cfg, legs, slots, alerter, control, store, run_id)
    crashed = await store.start_run(run_id, time.time_ns(), mode, run_model, cfg.model_dump_json())
    stack.push_async_exit(partial(record_failed_setup, store, run_id, svc.shutdown_timeout_secs))
    for inst, why in startup_events:  # a model fallback is a risk event, as a refused swap is
        kind = "model_observe_only" if why.startswith("no model verifies") else "model_fallback"
        store.add(RiskEventRow(run_id, time.time_ns(), inst, kind, why, None, None))
    if crashed:
        log.warning("runs_marked_crashed", run_ids=crashed, db=str(svc.db_path))
    for leg in legs:
        try:
            removed = await asyncio.to_thread(clean_leftovers, leg.models_dir)
        except OSError as e:  # a read-only models dir is the trainer's business
            log.warning("publish_leftovers_not_checked", models_dir=str(leg.models_dir), error=str(e))
        else:
            if removed:
                log.warning("publish_leftovers_removed", files=[str(p) for p in removed])
    risk = RiskEngine(cfg.risk, cfg.instrument.lot_units, cfg.bars.period_minutes)
    pf = cfg.portfolio
    account = Account(
        risk,
        cfg.account.initial_equity,
        pf.max_margin_pct if pf else None,
        margin_rates={leg.symbol: leg.margin_rate for leg in legs},
    )
    account.on_flatten_tier = models.on_flatten_tier
    supervisor = ControlSupervisor(
        svc, cfg.live, control, risk, slots, feed.stale_instruments, alerter, stop, given.clock, after_poll
    )
    for leg in legs:
        lots = leg.cfg.risk.max_position_lots if pf else None
        risk.add_instrument(leg.symbol, leg.cfg.instrument.lot_units, lots)
    exs = {leg.symbol: ExecutionModel.from_config(leg.cfg.execution, leg.cfg.instrument) for leg in legs}
    router = None
    broker: OrderGateway
    if cfg.real_orders:
        assert adapter is not None  # real orders are live
        router = LiveRouter(adapter, store, run_id, given.clock)
        for leg in legs:
            await router.restore(leg.symbol)
        broker = router
    else:
        broker = PaperBroker(exs)
    for leg in legs:
        slots[leg.symbol] = Slot(
            run_id,
            leg.symbol,
            spec,
            cfg.bars.builder(),
            exs[leg.symbol],
            policies[leg.symbol],
            broker,
            store,
            account,
            SlotOptions(
                leg.cfg.instrument.calendar(),
                clock_ns,
                _slot_watch(cfg, spec, leg, alerter, risk, models),
                given.latency_capacity,
            ),
        )
    wire_cross_view(slots)  # cross-instrument features read the other slots' bars
    p = Parts(
        legs,
        run_id,
        mode,
        alerter,
        Conditions(alerter, partial(hold_secs, a)),
        control,
        feed,
        store,
        risk,
        account,
        exs,
        broker,
        models,
        supervisor,
        slots,
        quotes=quotes,
        bundle=bundle,
        adapter=adapter,
        router=router,
        startup_events=startup_events,
    )
    if router is not None:
        p.reconciler = await restore_book(cfg, p, given.clock)
    for slot in slots.values():
        slot.swap.ramp = cfg.risk.size_ramp
    if svc.record_ticks:
        for leg in legs:
            p.recorders[leg.symbol] = TickRecorder(
                svc.ticks_dir, leg.symbol, svc.recorder_flush_secs, retention_days=svc.tick_retention_days
            )
    gate_db = svc.gate_db if svc.require_gate_record else None
    for leg in legs:
        p.watchers[leg.symbol] = await asyncio.to_thread(  # it reads models/current
            ModelWatcher,
            leg.models_dir,
            spec,
            gate_db,
            svc.model_poll_secs,
            partial(live_obs, slots[leg.symbol]),
            policies[leg.symbol].sha,
            leg.cfg.model_requirements(),
            svc.inference_budget_ms / 1000,
        )
    if svc.warm_start:
        lifecycle.set(State.WARMING, "warm start from history")
        await warm_start(cfg, p, given.clock)
    for slot in slots.values():
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
    log.info(
        "daemon_started",
        run_id=run_id,
        mode=mode,
        source=source,
        instruments=list(slots),
        model_shas={k: s.policy.sha[:12] for k, s in slots.items()},
        ticks=len(feed) if isinstance(feed, ReplayFeed) else None,
        db=str(svc.db_path),
        feature_spec=spec.hash,
        config=json.loads(cfg.model_dump_json()),
    )
    return p


def live_obs(slot: Slot) -> np.ndarray | None:
    """The slot's current observation for a candidate model's verification (None: not warm)."""
    return slot.obs.copy() if slot.features.warm else None


async def _policies(
    cfg: DaemonConfig, spec: FeatureSpec, given: Given, legs: list[Leg]
) -> tuple[dict[str, Policy], list[tuple[str, str]]]:
    """Each instrument's starting policy (given, or loaded as daemon.hot_swap verifies), and
    (instrument, why) of each that is not its current model."""
    svc = cfg.service
    gate_db = svc.gate_db if svc.require_gate_record else None
    mine: dict[str, Policy] = {}
    if isinstance(given.policy, dict):
        mine = given.policy
    elif given.policy is not None:  # one policy: a daemon of one instrument
        if len(legs) > 1:
            raise ValueError("a portfolio's policies are given by instrument (a dict), not one for all")
        mine = {legs[0].symbol: given.policy}
    policies: dict[str, Policy] = {}
    events: list[tuple[str, str]] = []
    for leg in legs:
        if leg.symbol in mine:
            policies[leg.symbol] = mine[leg.symbol]
            continue
        policies[leg.symbol], why = await asyncio.to_thread(
            load_startup_policy,
            leg.models_dir,
            spec,
            gate_db,
            leg.cfg.model_requirements(),
            cfg.live,
            svc.inference_budget_ms / 1000,
        )
        if why:
            log.error("model_fallback_at_startup", instrument=leg.symbol, reason=why)
            events.append((leg.symbol, why))
    return policies, events


async def _replay_quotes(cfg: DaemonConfig, spec: FeatureSpec, given: Given, legs: list[Leg]) -> dict[str, np.ndarray]:
    """A paper replay's quotes by instrument: the given ones, or each leg's bar-derived quotes."""
    assert cfg.replay is not None  # a paper daemon has one (DaemonConfig checks)
    if given.ticks is not None:
        if not isinstance(given.ticks, dict) and len(legs) > 1:
            raise ValueError("a portfolio's quotes are given by instrument (a dict), not one array")
        return given.ticks if isinstance(given.ticks, dict) else {legs[0].symbol: given.ticks}
    start, end = cfg.replay.range.ns()
    quotes: dict[str, np.ndarray] = {}
    for leg in legs:
        quotes[leg.symbol] = await asyncio.to_thread(replay_ticks, leg.cfg, start, end, spec.window)
    return quotes


def _slot_watch(
    cfg: DaemonConfig, spec: FeatureSpec, leg: Leg, alerter: Alerter, risk: RiskEngine, models: ModelEvents
) -> SlotWatch:
    """One instrument's watchers: regime, live guard, feature drift (daemon.slot_watch)."""
    g = cfg.guards
    return SlotWatch(
        alerter.notify,
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
            spec.market_names,
            g.feature_drift_window_bars,
            g.feature_outside_max,
            g.feature_drift_action == "observe_only",
            risk.permission,
        ),
        on_guard_breach=models.on_guard_breach,
        halt_on_trade_band=g.trade_band_action == "stop_opening",
        rollback_below_expectation=g.pnl_expectation_action == "rollback",
    )


async def close_with_limit(what: str, close: Callable, limit_secs: float) -> None:
    try:
        await within(close(), limit_secs)
    except Exception as e:  # the set-up error is the one to report
        log.error(f"{what}_close_failed", error=repr(e))


async def warm_start(cfg: DaemonConfig, p: Parts, clock: Callable[[], int]) -> None:
    """Each slot's buffers from history before its first quote (daemon.warm_start): the
    broker's bars (live), then bars stored by earlier runs of the same kind."""
    prefix = cfg.broker.kind if cfg.live else "paper-replay"
    svc = cfg.service
    for inst, slot in p.slots.items():
        sources: list[Source] = []
        history = p.adapter.history_bars if cfg.live and p.adapter is not None else None
        if history is not None:
            sources.append(("broker", partial(history, inst, cfg.bars.period_minutes, cfg.bars.price)))
        sources.append(("store", partial(p.store.recent_bars, inst, mode_prefix=prefix)))
        if cfg.live:
            until = clock()
        else:
            q = p.quotes.get(inst) if p.quotes is not None else None
            if q is None or not len(q):
                continue
            until = int(q["ts_ns"][0])
        await warm_slot(
            slot,
            sources,
            until,
            cfg.bars.period_minutes,
            svc.warm_start_max_days,
            svc.warm_start_timeout_secs,
            cfg.live,
        )


async def record_failed_setup(store: Store, run_id: str, limit_secs: float, exc_type, exc, tb) -> bool:
    """The run row of a start that failed after it was written records why."""
    if exc is not None:
        try:
            await within(store.end_run(run_id, time.time_ns(), {"setup_failed": str(exc)}), limit_secs)
        except Exception as e:
            log.error("database_end_run_failed", error=repr(e))
    return False


async def restore_book(cfg: DaemonConfig, p: Parts, clock: Callable[[], int]) -> Reconciler:
    """The book as last committed (it moves with every fill) and the client-id sequence,
    per instrument; orders stay blocked until the reconciler has compared every book with
    the broker. Returns that reconciler."""
    router = p.router
    assert router is not None and p.adapter is not None  # the book is restored only where orders are real

    router.books = {inst: s.orders for inst, s in p.slots.items()}  # where its fills are booked
    for inst, slot in p.slots.items():
        slot.orders.persist_book = True
        p.risk.permission.reconciled(inst, False)  # no order until the reconciler has compared
        book = await p.store.book(inst)
        if book is not None:
            slot.orders.set_position(*book)
        last = await p.store.last_order_seq(inst)
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
    return Reconciler(
        p.adapter,
        router,
        p.slots,
        p.store,
        p.run_id,
        UnknownPositionPolicy(cfg.broker.unknown_positions),
        p.risk.max_units,
        cfg.service.reconcile_secs,
        cfg.broker.emergency_check_secs,
        clock,
        account=p.account,
        alert=p.alerter.notify,
        balance_tolerance=cfg.guards.balance_tolerance,
    )
