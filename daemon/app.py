"""The daemon service: one asyncio program that owns every long-lived task. This module runs
and stops it; how it is assembled (and torn down when start-up fails) is daemon.build.

Tasks (named, owned by a TaskGroup): ``feed`` (quotes -> slot -> store), ``model-watcher``
(hot-swap), ``control`` (signal files), ``watchdog`` (sd_notify pings), ``loop-lag``.
Beside them: the tick recorder thread, the HTTP server and APScheduler jobs. What it reports
about itself (status snapshot, health reasons, status.json) is in daemon.status.

Live brokers (``[broker] kind = "oanda" | "ib"``): quotes come from the broker's feed and
decisions are timed by the wall clock. With ``fills = "broker"`` orders go to the broker
through the LiveRouter (write-ahead journal, no resends) and two more tasks run:
``orders`` (the sender) and ``reconcile`` (start-up pass, after fills, periodic, 30-s
emergency size check); the book is restored from the store at start-up and no order is
sent until the first reconciliation has passed. With ``fills = "paper"`` (paper-live) the
broker's prices are traded by the PaperBroker.

Shutdown, in this order and with time limits: stop new intents -> cancel the working
order -> flush the recorder and the database -> close the broker -> cancel leftover tasks
(their names are logged). SIGINT/SIGTERM stop it; SIGHUP reloads the risk limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable
from pathlib import Path

import structlog

from stairway.core.config import load_config
from stairway.core.errors import FatalError, StairwayError
from stairway.core.features import FeatureSpec
from stairway.core.locks import state_lock
from stairway.daemon import status
from stairway.daemon.aio import primary_error, sleep_or_stop, spawn, spawned, within
from stairway.daemon.build import build
from stairway.daemon.config import DaemonConfig
from stairway.daemon.hot_swap import ModelWatcher
from stairway.daemon.http import ConnectionLimits
from stairway.daemon.jobs import backup_database, make_scheduler
from stairway.daemon.lifecycle import Lifecycle, State, derive
from stairway.daemon.notify import Notifier
from stairway.daemon.parts import Given, Parts
from stairway.daemon.result import DaemonResult, run_result
from stairway.daemon.slot import Slot
from stairway.daemon.status import StatusView, Vitals
from stairway.daemon.supervisor import LoopLag

log = structlog.get_logger("daemon")


class Daemon:
    """One daemon run: builds its parts (daemon.build), runs their tasks, stops them in order.
    ``parts`` (daemon.parts.Parts) and ``view`` (daemon.status.StatusView) exist once set-up
    has finished (``setup_done``)."""

    def __init__(
        self,
        cfg: DaemonConfig,
        policy=None,
        ticks=None,
        latency_capacity: int = 4096,
        config_path: Path | None = None,
        stop: asyncio.Event | None = None,
        clock: Callable[[], int] = time.time_ns,
        environ: dict[str, str] | None = None,
        adapters: Callable | None = None,
    ) -> None:
        self.cfg, self.config_path = cfg, config_path
        self.given = Given(policy, ticks, adapters, environ, clock, latency_capacity)
        self.stop = stop or asyncio.Event()
        self.spec = FeatureSpec.from_config(cfg)  # one feature spec: the legs share [bars] and [features]
        self._parts: Parts | None = None
        self._view: StatusView | None = None
        self.notifier = Notifier()
        self.lifecycle = Lifecycle()  # starting -> warming -> trading / halted / observe_only -> stopping
        self.lag = LoopLag()  # the event loop's lag (daemon.supervisor)
        self.vitals = Vitals()  # last quote, database error, stopped (daemon.status)
        self.http_limits = ConnectionLimits()  # open, refused and idle-closed HTTP connections
        self.http_port: int | None = None
        self.interrupted = False
        self.summaries: dict[str, dict] = {}  # each instrument's result (after shutdown)
        self.summary: dict = {}  # the run's result (after shutdown)
        self._end_error: Exception | None = None

    @property
    def setup_done(self) -> bool:
        """Every component exists (slots, router, reconciler, watchers)."""
        return self._parts is not None

    @property
    def parts(self) -> Parts:
        if self._parts is None:
            raise AttributeError("parts: the daemon is not set up yet")
        return self._parts

    @property
    def view(self) -> StatusView:
        if self._view is None:
            raise AttributeError("view: the daemon is not set up yet")
        return self._view

    @property
    def slot(self) -> Slot:
        """The slot of a one-instrument daemon; a portfolio's are ``parts.slots[instrument]``."""
        return self._only(self.parts.slots, "slot")

    @property
    def watcher(self) -> ModelWatcher:
        """The model watcher of a one-instrument daemon; a portfolio's are ``parts.watchers[instrument]``."""
        return self._only(self.parts.watchers, "watcher")

    @staticmethod
    def _only(parts: dict, what: str):
        if len(parts) != 1:
            raise AttributeError(
                f"{what}: a portfolio has one per instrument ({', '.join(parts)}): {what}s[instrument]"
            )
        return next(iter(parts.values()))

    async def _start(self) -> None:
        """Build the parts, or, when set-up fails part-way, close everything it had opened
        (database, broker connection) before the error propagates: a failed start exits,
        never hangs."""
        async with contextlib.AsyncExitStack() as stack:
            p = await build(self.cfg, self.spec, self.given, self.stop, self.lifecycle, self._after_poll, stack)
            self._view = StatusView(self.cfg, p, self.lifecycle, self.lag, self.vitals, self.stop, self.given.clock)
            self._parts = p
            stack.pop_all()  # success: the ordered shutdown closes them

    # -- callbacks ------------------------------------------------------------------------
    # -- tasks ----------------------------------------------------------------------------
    async def _feed_task(self) -> None:
        p, vitals = self.parts, self.vitals
        slots, store, recorders, feed = p.slots, p.store, p.recorders, p.feed
        try:
            async for inst, batch in feed.ticks():
                slot = slots.get(inst)
                if slot is None:  # a feed serves the instruments it was asked for; anything else is dropped
                    continue
                vitals.last_tick_monotonic = now = time.monotonic()
                if recorders and not feed.last_batch_backfilled:
                    recorders[inst].enqueue(batch)  # real quotes only: never candle-derived backfill
                slot.on_ticks(batch)
                if not feed.chunk_end:  # a replay's run inside a batch: commit at the batch's end
                    continue
                if store.due(now):  # fills and orders at once; bars, decisions batched
                    try:
                        await store.flush()
                    except Exception as e:  # the database is the record of what happened: stop
                        vitals.db_error = str(e)
                        raise FatalError(f"{self.cfg.service.db_path}: write failed: {e}") from e
                    for s in slots.values():  # reported only once committed (a live fill may land on any)
                        for f in s.orders.new_fills:
                            log.info(
                                "order_filled",
                                client_order_id=f.client_order_id,
                                units=f.units * int(f.side),
                                price=f.price,
                            )
                        s.orders.new_fills.clear()
                if self.stop.is_set():
                    self.interrupted = True
                    log.info("shutdown_requested", ticks=self.ticks_seen)
                    return
            for s in slots.values():
                s.finish()
        finally:
            self.stop.set()

    @property
    def ticks_seen(self) -> int:
        return sum(s.counters.ticks for s in self.parts.slots.values())

    async def _feed_stopper(self, feed_task: asyncio.Task) -> None:
        """A live feed never ends and may be quiet: cancel it when the daemon stops."""
        await self.stop.wait()
        if not feed_task.done():
            self.interrupted = True
            log.info("shutdown_requested", ticks=self.ticks_seen)
            feed_task.cancel()

    def _after_poll(self) -> None:
        """After each control poll (daemon.supervisor): alert what has held and what cleared
        (daemon.alerts.Conditions: a tier that flaps or a broker that connects at start-up
        sends nothing; a halt, the flatten tier and a long disconnect are critical), then the
        lifecycle state."""
        if self._parts is None or self._view is None:  # a poll during set-up: nothing to judge yet
            return
        self._parts.conditions.update(self._view.conditions())
        self._set_state()

    def _set_state(self) -> None:
        p = self.parts
        self.lifecycle.set(*derive(p.slots, p.risk, self.stop.is_set()))

    async def _watchdog_task(self) -> None:
        interval = (self.notifier.watchdog_secs or 10.0) / 2
        while not self.stop.is_set():
            self.notifier.watchdog()
            snapshot = self.view.snapshot()  # taken on the loop, written by a worker thread
            await asyncio.to_thread(self.view.write, snapshot)
            await self._sleep(interval)

    async def _sleep(self, secs: float) -> None:
        await sleep_or_stop(self.stop, secs)

    async def _guard(self, coro) -> None:
        """A task that fails stops the daemon at once: every loop sees ``stop`` even if the
        TaskGroup's cancellation were lost."""
        try:
            await coro
        except BaseException:
            self.stop.set()
            raise

    # -- jobs -----------------------------------------------------------------------------
    async def _reconcile_job(self) -> None:
        # The paper broker keeps no book of its own: its fills are the slots' positions.
        for inst, slot in self.parts.slots.items():
            log.info(
                "reconciled", broker="paper", instrument=inst, position_units=float(slot.position[0]), discrepancies=0
            )

    async def _backup_job(self) -> None:
        svc = self.cfg.service
        try:
            await self.parts.store.flush()
            await asyncio.to_thread(backup_database, svc.db_path, svc.state_dir / "backups", svc.backup_keep)
        except Exception as e:  # trading goes on; the operator must know
            log.error("backup_failed", error=str(e))
            self.parts.alerter.notify("backup_failed", f"{svc.db_path}: {e}", level="failure")

    async def _retention_job(self) -> None:
        for inst, recorder in self.parts.recorders.items():
            removed = await asyncio.to_thread(recorder.prune)
            log.info("tick_files_pruned", instrument=inst, removed=removed)

    def _reload(self) -> None:
        """SIGHUP: re-read the config file (in a worker thread), then apply its [risk]."""
        if self._parts is None:  # still starting: the risk engine it would change is not built yet
            log.warning("reload_ignored", reason="SIGHUP during start-up; send it again once started")
            return
        if self.config_path is not None:
            self.notifier.reloading()  # systemd shows "reloading" until READY=1
            spawn(self._reload_risk(), "reload")

    async def _reload_risk(self) -> None:
        path = self.config_path
        assert path is not None  # _reload spawns this only with a config file
        try:
            new = await asyncio.to_thread(load_config, DaemonConfig, path)
        except Exception as e:
            log.error("reload_failed", reason=str(e))
            self.parts.alerter.notify("reload_failed", f"SIGHUP: {path} not applied: {e}", level="failure")
            return
        finally:
            self.notifier.ready(f"{self.lifecycle.state.value} (reloaded)")
        self.parts.risk.cfg = new.risk  # every derived limit (risk engine, reconciler) reads this from now on
        for slot in self.parts.slots.values():
            slot.swap.ramp = new.risk.size_ramp
        log.info("config_reloaded", what="risk limits", risk=new.risk.model_dump(mode="json"))
        ignored = [k for k in type(new).model_fields if k != "risk" and getattr(new, k) != getattr(self.cfg, k)]
        if ignored:  # only risk limits reload; anything else needs a restart
            log.warning("config_reload_ignored", sections=ignored, reason="only [risk] is reloaded; restart to apply")

    # -- main -----------------------------------------------------------------------------
    async def run(self) -> DaemonResult:
        """Run under the state directory's lock, held until the process has shut down: a second
        daemon on the same state (database, control files, account) refuses to start, naming
        the pid that holds it, and never marks this one's run crashed."""
        lock = await asyncio.to_thread(state_lock(self.cfg.service.state_dir).acquire)
        try:
            return await self._run()
        finally:
            lock.release()

    async def _run(self) -> DaemonResult:
        t0 = time.perf_counter()
        # before anything starts: a SIGTERM during start-up (systemd stopping a starting unit, an
        # operator's kill right after "daemon_started") stops it cleanly, not by the default action
        loop = asyncio.get_running_loop()
        for sig, handler in (
            (signal.SIGINT, self.stop.set),
            (signal.SIGTERM, self.stop.set),
            (signal.SIGHUP, self._reload),
        ):
            try:
                loop.add_signal_handler(sig, handler)
            except (NotImplementedError, RuntimeError):
                pass
        await self._start()
        p = self.parts
        p.alerter.start()
        p.alerter.notify(
            "daemon_started",
            f"{p.run_id}: " + ", ".join(f"{k} with {s.policy.sha[:12]}" for k, s in p.slots.items()),
            level="info",
        )
        for inst, why in p.startup_events:
            p.alerter.notify("model_fallback", f"{inst}: {why}", key=f"model_fallback:{inst}", level="failure")
        runner = None
        sched = None
        try:
            for recorder in p.recorders.values():
                recorder.start()
            if self.cfg.service.http_port is not None:
                from stairway.daemon.http import bound_port, make_app, start_http

                runner = await start_http(
                    make_app(self.view.snapshot, self.view.health), self.cfg.service.http_port, self.http_limits
                )
                self.http_port = bound_port(runner)
                log.info(
                    "http_listening",
                    host="127.0.0.1",
                    port=self.http_port,
                    endpoints=["/health", "/metrics", "/status"],
                )
            jobs = {"backup": self._backup_job, "retention": self._retention_job}
            if p.reconciler is None:  # live brokers reconcile in their own task
                jobs["reconcile"] = self._reconcile_job
            sched = make_scheduler(jobs, self.cfg.service.reconcile_secs, self.cfg.service.backup_hour_utc)
            sched.start()
            self._set_state()
            self.notifier.ready("trading " + ", ".join(f"{k} with {s.policy.sha[:12]}" for k, s in p.slots.items()))
            async with asyncio.TaskGroup() as tg:
                feed_task = tg.create_task(self._guard(self._feed_task()), name="feed")
                if self.cfg.live:
                    tg.create_task(self._guard(self._feed_stopper(feed_task)), name="feed-stopper")
                if p.router is not None:
                    rec, bundle = p.reconciler, p.bundle
                    assert rec is not None and bundle is not None  # real orders: built together with the router
                    tg.create_task(self._guard(p.router.run(self.stop)), name="orders")
                    tg.create_task(self._guard(rec.run(self.stop)), name="reconcile")
                    for name, task in bundle.tasks.items():  # the adapter's own (OANDA: transactions)
                        tg.create_task(self._guard(task(rec.wake, self.stop)), name=name)
                for inst, w in p.watchers.items():
                    watcher = w.run(self.stop, p.models.on_policy_of(inst), p.models.on_refused_of(inst))
                    name = "model-watcher" if len(p.watchers) == 1 else f"model-watcher-{inst}"
                    tg.create_task(self._guard(watcher), name=name)
                tg.create_task(self._guard(p.supervisor.run()), name="control")
                tg.create_task(self._guard(self._watchdog_task()), name="watchdog")
                tg.create_task(self._guard(self.lag.run(self.stop)), name="loop-lag")
        except BaseExceptionGroup as eg:  # the task that failed, not the group, is the error to report
            raise primary_error(eg, (FatalError, StairwayError)) from eg
        finally:
            await self._shutdown(runner, sched)
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                try:
                    loop.remove_signal_handler(sig)
                except (NotImplementedError, RuntimeError):
                    pass
        if self._end_error is not None:
            raise FatalError(
                f"{self.cfg.service.db_path}: the end of run {p.run_id} was not recorded: {self._end_error!r}"
            ) from self._end_error
        return run_result(self, t0)

    async def _shutdown(self, runner, sched) -> None:
        """stop new intents -> cancel open orders -> flush recorder and database -> close broker
        -> cancel leftovers (logged by name)."""
        p, limit = self.parts, self.cfg.service.shutdown_timeout_secs
        self.notifier.stopping()
        self.stop.set()
        self.lifecycle.set(State.STOPPING, "interrupted" if self.interrupted else "end of data")
        p.risk.permission.control(False, "shutting down")  # 1. no new intents
        if sched is not None:
            sched.shutdown(wait=False)
        if self.interrupted:
            for slot in p.slots.values():
                slot.cancel_working()  # 2. cancel the working orders (recorded)
        if p.router is not None and (n := p.router.abandon_queued()):
            log.warning("orders_not_sent_at_shutdown", count=n)  # journaled not_sent, never sent
        for inst, recorder in p.recorders.items():
            if not await asyncio.to_thread(recorder.stop, limit):
                log.error("recorder_stop_timed_out", instrument=inst, seconds=limit)  # 3a. recorders flushed
        self.summaries = {inst: slot.tracker.summary() for inst, slot in p.slots.items()}
        if len(p.slots) == 1:
            (self.summary,) = self.summaries.values()
        else:  # the account's result, and each instrument's
            pnl = sum(x["pnl"] for x in self.summaries.values())
            self.summary = {
                "pnl": pnl,
                "pnl_pct": 100.0 * pnl / self.cfg.account.initial_equity,
                "trades": sum(x["trades"] for x in self.summaries.values()),
                "instruments": self.summaries,
            }
        try:
            await within(p.store.end_run(p.run_id, time.time_ns(), self.summary), limit)
        except Exception as e:  # still close below: an open connection would keep the process alive
            log.error("database_end_run_failed", error=repr(e))
            self.vitals.db_error = self.vitals.db_error or repr(e)
            self._end_error = e
        finally:
            try:
                await within(p.store.close(), limit)  # 3b. database committed and closed
            except Exception as e:
                log.error("database_close_failed", error=repr(e), seconds=limit)
        if p.adapter is not None:  # 4. the broker connection
            try:
                await within(p.adapter.close(), limit)
            except Exception as e:
                log.error("broker_close_failed", error=str(e))
        else:
            p.broker.working.clear()  # the paper broker has nothing else to close
        if runner is not None:
            await runner.cleanup()
        # the task group's tasks have all ended here; what a component spawned may not have
        leftovers = [t for t in spawned() if t is not asyncio.current_task()]
        for t in leftovers:  # 5. anything still running is cancelled
            t.cancel()
        if leftovers:
            log.warning("tasks_cancelled_at_shutdown", names=[t.get_name() for t in leftovers])
        self.vitals.stopped = True
        why = "interrupted" if self.interrupted else "end of data"
        p.alerter.notify("daemon_stopped", f"{p.run_id}: {why}", level="info")
        if not await asyncio.to_thread(p.alerter.stop, limit):  # delivers what is queued
            log.error("alerts_stop_timed_out", seconds=limit)
        await asyncio.to_thread(self.view.write)
        self.notifier.close()
        c = status.summed([status.slot_counters(slot) for slot in p.slots.values()])
        log.info(
            "daemon_stopped",
            run_id=p.run_id,
            interrupted=self.interrupted,
            **{k: c[k] for k in ("ticks", "bars", "decisions", "orders", "fills", "swaps")},
        )


async def run_daemon(
    cfg: DaemonConfig,
    policy=None,
    stop: asyncio.Event | None = None,
    ticks=None,
    latency_capacity: int = 4096,
    config_path: Path | None = None,
    clock: Callable[[], int] = time.time_ns,
    environ: dict[str, str] | None = None,
) -> DaemonResult:
    """Run the daemon. ``ticks`` replaces the bar-derived quotes of a paper replay
    (benchmarks, recordings): an array (the first instrument's) or a dict by instrument;
    ``policy`` likewise (otherwise each instrument's models/current); ``clock`` and
    ``environ`` are the live clock and secrets."""
    return await Daemon(cfg, policy, ticks, latency_capacity, config_path, stop, clock, environ).run()
