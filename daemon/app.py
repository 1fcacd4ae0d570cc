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
import signal
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import structlog

from stairway.core.config import load_config
from stairway.core.errors import FatalError, StairwayError
from stairway.core.features import FeatureSpec
from stairway.core.locks import state_lock
from stairway.core.risk_rules import TIER_NAMES
from stairway.daemon import status
from stairway.daemon.aio import primary_error, sleep_or_stop, spawn, spawned, within
from stairway.daemon.alerts import Alerter, health_conditions
from stairway.daemon.build import DaemonBuild
from stairway.daemon.config import DaemonConfig
from stairway.daemon.hot_swap import ModelWatcher
from stairway.daemon.http import ConnectionLimits
from stairway.daemon.jobs import backup_database, make_scheduler
from stairway.daemon.lifecycle import Lifecycle, State, derive
from stairway.daemon.notify import Notifier
from stairway.daemon.order_router import LiveRouter
from stairway.daemon.reconcile_runner import Reconciler
from stairway.daemon.recorder import TickRecorder
from stairway.daemon.result import DaemonResult, run_result
from stairway.daemon.slot import Slot
from stairway.daemon.supervisor import LoopLag

log = structlog.get_logger("daemon")


class Daemon(DaemonBuild):
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
        self.adapters = adapters  # (cfg, environ) -> AdapterBundle; default: daemon.brokers.factory
        self.clock, self.environ = clock, environ  # wall clock (live decisions), secrets' source
        self.bundle = None  # live: the adapter bundle (broker, feed, extra tasks; daemon.brokers.factory)
        self.adapter = None  # the live broker adapter
        self.router: LiveRouter | None = None
        self.reconciler: Reconciler | None = None
        self.policy, self.ticks, self.latency_capacity = policy, ticks, latency_capacity
        self.stop = stop or asyncio.Event()
        self.legs = cfg.legs(look_on_disk=False)  # the instruments: one, or a portfolio's (set-up looks on disk)
        self.spec = FeatureSpec.from_config(cfg)  # one feature spec: the legs share [bars] and [features]
        self.slots: dict[str, Slot] = {}
        self.watchers: dict[str, ModelWatcher] = {}
        self.recorders: dict[str, TickRecorder] = {}
        self.notifier = Notifier()
        self.lifecycle = Lifecycle()  # starting -> warming -> trading / halted / observe_only -> stopping
        self.interrupted = False
        self.db_error = ""
        self.last_tick_monotonic = time.monotonic()
        self.lag = LoopLag()  # the event loop's lag (daemon.supervisor)
        self.http_port: int | None = None
        self.http_limits = ConnectionLimits()  # open, refused and idle-closed HTTP connections
        self._end_error: Exception | None = None
        self._stopped = False
        self.summaries: dict[str, dict] = {}
        self.startup_events: list[tuple[str, str]] = []
        self.alerter = Alerter(
            []
        )  # the configured one is made at set-up (daemon.alerts)  # (instrument, why) of a model fallback at start-up
        self.setup_done = False  # every component exists (slot, router, reconciler, watcher)

    @property
    def slot(self) -> Slot:
        """The slot of a one-instrument daemon; a portfolio's are ``slots[instrument]``."""
        return self._only(self.slots, "slot")

    @property
    def watcher(self) -> ModelWatcher:
        """The model watcher of a one-instrument daemon; a portfolio's are ``watchers[instrument]``."""
        return self._only(self.watchers, "watcher")

    @staticmethod
    def _only(parts: dict, what: str):
        if len(parts) != 1:
            raise AttributeError(
                f"{what}: the daemon is not set up yet"
                if not parts
                else f"{what}: a portfolio has one per instrument ({', '.join(parts)}): {what}s[instrument]"
            )
        return next(iter(parts.values()))

    def _live_obs_of(self, instrument: str) -> Callable[[], np.ndarray | None]:
        def live_obs() -> np.ndarray | None:
            slot = self.slots[instrument]
            return slot.obs.copy() if slot.features.warm else None

        return live_obs

    # -- callbacks ------------------------------------------------------------------------
    # -- tasks ----------------------------------------------------------------------------
    async def _feed_task(self) -> None:
        slots, store, recorders = self.slots, self.store, self.recorders
        try:
            async for inst, batch in self.feed.ticks():
                slot = slots.get(inst)
                if slot is None:  # a feed serves the instruments it was asked for; anything else is dropped
                    continue
                self.last_tick_monotonic = now = time.monotonic()
                if recorders and not self.feed.last_batch_backfilled:
                    recorders[inst].enqueue(batch)  # real quotes only: never candle-derived backfill
                slot.on_ticks(batch)
                if not self.feed.chunk_end:  # a replay's run inside a batch: commit at the batch's end
                    continue
                if store.due(now):  # fills and orders at once; bars, decisions batched
                    try:
                        await store.flush()
                    except Exception as e:  # the database is the record of what happened: stop
                        self.db_error = str(e)
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
        return sum(s.counters.ticks for s in self.slots.values())

    async def _feed_stopper(self, feed_task: asyncio.Task) -> None:
        """A live feed never ends and may be quiet: cancel it when the daemon stops."""
        await self.stop.wait()
        if not feed_task.done():
            self.interrupted = True
            log.info("shutdown_requested", ticks=self.ticks_seen)
            feed_task.cancel()

    def _after_poll(self) -> None:
        """After each control poll (daemon.supervisor): alert conditions, then the lifecycle state."""
        self._update_conditions()
        self.lifecycle.set(*derive(self))

    def _update_conditions(self) -> None:
        """Alert what has held (/health reasons, the account's drawdown tier) and what cleared
        (daemon.alerts.Conditions): a tier that flaps or a broker that connects at start-up
        sends nothing; a halt, the flatten tier and a long disconnect are critical."""
        active = health_conditions(self.health())
        active.pop("health:halted", None)  # alerted at once above; its clearing is the operator's resume
        tier = self.risk.state.tier
        if tier:
            name = TIER_NAMES[tier]
            active["drawdown_tier"] = (
                f"tier_{name}",
                f"drawdown tier {name}: intraday drawdown {self._drawdown():.2f} %",
            )
        self.conditions.update(active)

    def _drawdown(self) -> float:
        return max((s.marks.drawdown_pct for s in self.slots.values()), default=0.0)

    async def _watchdog_task(self) -> None:
        interval = (self.notifier.watchdog_secs or 10.0) / 2
        while not self.stop.is_set():
            self.notifier.watchdog()
            snapshot = self.snapshot()  # taken on the loop, written by a worker thread
            await asyncio.to_thread(self._write_status, snapshot)
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
        for inst, slot in self.slots.items():
            log.info(
                "reconciled", broker="paper", instrument=inst, position_units=float(slot.position[0]), discrepancies=0
            )

    async def _backup_job(self) -> None:
        svc = self.cfg.service
        try:
            await self.store.flush()
            await asyncio.to_thread(backup_database, svc.db_path, svc.state_dir / "backups", svc.backup_keep)
        except Exception as e:  # trading goes on; the operator must know
            log.error("backup_failed", error=str(e))
            self.alerter.notify("backup_failed", f"{svc.db_path}: {e}", level="failure")

    async def _retention_job(self) -> None:
        for inst, recorder in self.recorders.items():
            removed = await asyncio.to_thread(recorder.prune)
            log.info("tick_files_pruned", instrument=inst, removed=removed)

    # -- status (daemon.status) -------------------------------------------------------------
    def snapshot(self) -> dict:
        return status.snapshot(self)

    def health(self) -> list[str]:
        return status.health(self)

    def _write_status(self, snapshot: dict | None = None) -> None:
        status.write_status(self.cfg.service.status_file, snapshot if snapshot is not None else self.snapshot())

    def _reload(self) -> None:
        """SIGHUP: re-read the config file (in a worker thread), then apply its [risk]."""
        if not self.slots:  # still starting: the risk engine it would change is not built yet
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
            self.alerter.notify("reload_failed", f"SIGHUP: {path} not applied: {e}", level="failure")
            return
        finally:
            self.notifier.ready(f"{self.lifecycle.state.value} (reloaded)")
        self.risk.cfg = new.risk  # every derived limit (risk engine, reconciler) reads this from now on
        for slot in self.slots.values():
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
        self.alerter.start()
        self.alerter.notify(
            "daemon_started",
            f"{self.run_id}: " + ", ".join(f"{k} with {s.policy.sha[:12]}" for k, s in self.slots.items()),
            level="info",
        )
        for inst, why in self.startup_events:
            self.alerter.notify("model_fallback", f"{inst}: {why}", key=f"model_fallback:{inst}", level="failure")
        runner = None
        sched = None
        try:
            for recorder in self.recorders.values():
                recorder.start()
            if self.cfg.service.http_port is not None:
                from stairway.daemon.http import bound_port, make_app, start_http

                runner = await start_http(
                    make_app(self.snapshot, self.health), self.cfg.service.http_port, self.http_limits
                )
                self.http_port = bound_port(runner)
                log.info(
                    "http_listening",
                    host="127.0.0.1",
                    port=self.http_port,
                    endpoints=["/health", "/metrics", "/status"],
                )
            jobs = {"backup": self._backup_job, "retention": self._retention_job}
            if self.reconciler is None:  # live brokers reconcile in their own task
                jobs["reconcile"] = self._reconcile_job
            sched = make_scheduler(jobs, self.cfg.service.reconcile_secs, self.cfg.service.backup_hour_utc)
            sched.start()
            self.lifecycle.set(*derive(self))
            self.notifier.ready("trading " + ", ".join(f"{k} with {s.policy.sha[:12]}" for k, s in self.slots.items()))
            async with asyncio.TaskGroup() as tg:
                feed_task = tg.create_task(self._guard(self._feed_task()), name="feed")
                if self.cfg.live:
                    tg.create_task(self._guard(self._feed_stopper(feed_task)), name="feed-stopper")
                if self.router is not None:
                    rec, bundle = self.reconciler, self.bundle
                    assert rec is not None and bundle is not None  # real orders: built together with the router
                    tg.create_task(self._guard(self.router.run(self.stop)), name="orders")
                    tg.create_task(self._guard(rec.run(self.stop)), name="reconcile")
                    for name, task in bundle.tasks.items():  # the adapter's own (OANDA: transactions)
                        tg.create_task(self._guard(task(rec.wake, self.stop)), name=name)
                for inst, w in self.watchers.items():
                    watcher = w.run(self.stop, self.models.on_policy_of(inst), self.models.on_refused_of(inst))
                    name = "model-watcher" if len(self.watchers) == 1 else f"model-watcher-{inst}"
                    tg.create_task(self._guard(watcher), name=name)
                tg.create_task(self._guard(self.supervisor.run()), name="control")
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
                f"{self.cfg.service.db_path}: the end of run {self.run_id} was not recorded: {self._end_error!r}"
            ) from self._end_error
        return run_result(self, t0)

    async def _shutdown(self, runner, sched) -> None:
        """stop new intents -> cancel open orders -> flush recorder and database -> close broker
        -> cancel leftovers (logged by name)."""
        limit = self.cfg.service.shutdown_timeout_secs
        self.notifier.stopping()
        self.stop.set()
        self.lifecycle.set(State.STOPPING, "interrupted" if self.interrupted else "end of data")
        self.risk.permission.control(False, "shutting down")  # 1. no new intents
        if sched is not None:
            sched.shutdown(wait=False)
        if self.interrupted:
            for slot in self.slots.values():
                slot.cancel_working()  # 2. cancel the working orders (recorded)
        if self.router is not None and (n := self.router.abandon_queued()):
            log.warning("orders_not_sent_at_shutdown", count=n)  # journaled not_sent, never sent
        for inst, recorder in self.recorders.items():
            if not await asyncio.to_thread(recorder.stop, limit):
                log.error("recorder_stop_timed_out", instrument=inst, seconds=limit)  # 3a. recorders flushed
        self.summaries = {inst: slot.tracker.summary() for inst, slot in self.slots.items()}
        if len(self.slots) == 1:
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
            await within(self.store.end_run(self.run_id, time.time_ns(), self.summary), limit)
        except Exception as e:  # still close below: an open connection would keep the process alive
            log.error("database_end_run_failed", error=repr(e))
            self.db_error = self.db_error or repr(e)
            self._end_error = e
        finally:
            try:
                await within(self.store.close(), limit)  # 3b. database committed and closed
            except Exception as e:
                log.error("database_close_failed", error=repr(e), seconds=limit)
        if self.adapter is not None:  # 4. the broker connection
            try:
                await within(self.adapter.close(), limit)
            except Exception as e:
                log.error("broker_close_failed", error=str(e))
        else:
            self.broker.working.clear()  # the paper broker has nothing else to close
        if runner is not None:
            await runner.cleanup()
        # the task group's tasks have all ended here; what a component spawned may not have
        leftovers = [t for t in spawned() if t is not asyncio.current_task()]
        for t in leftovers:  # 5. anything still running is cancelled
            t.cancel()
        if leftovers:
            log.warning("tasks_cancelled_at_shutdown", names=[t.get_name() for t in leftovers])
        self._stopped = True
        why = "interrupted" if self.interrupted else "end of data"
        self.alerter.notify("daemon_stopped", f"{self.run_id}: {why}", level="info")
        if not await asyncio.to_thread(self.alerter.stop, limit):  # delivers what is queued
            log.error("alerts_stop_timed_out", seconds=limit)
        await asyncio.to_thread(self._write_status)
        self.notifier.close()
        c = status.summed([status.slot_counters(slot) for slot in self.slots.values()])
        log.info(
            "daemon_stopped",
            run_id=self.run_id,
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
