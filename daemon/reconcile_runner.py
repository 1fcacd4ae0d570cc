"""The thin runner around daemon.reconciliation's pure functions.

When: at start-up (orders stay blocked until the first pass succeeds), after every order
that filled, every ``reconcile_secs`` (5 minutes), and an emergency size check every
``emergency_secs`` (30 s). Each pass, holding the router's broker lock so no order is in
the air: fetch new fills, resolve orders whose outcome is unknown, then compare the book
with the broker's open positions (the truth) and apply the corrections. Every
discrepancy and every action is a row in reconciliation_events; a pass that finds nothing
writes no row, except the start-up pass, which always records its outcome.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import structlog

from stairway.core.broker import Broker
from stairway.core.errors import TRANSIENT, FatalError
from stairway.core.position import PS_UNITS
from stairway.daemon.aio import backoff_delay, first_of, sleep_or_stop
from stairway.daemon.order_router import LiveRouter
from stairway.daemon.reconciliation import Correction, UnknownPositionPolicy, excess_over_limit, reconcile
from stairway.daemon.rows import ReconciliationRow
from stairway.daemon.slot import Slot
from stairway.daemon.store import Store

log = structlog.get_logger("reconcile")


class Reconciler:
    def __init__(
        self,
        broker: Broker,
        router: LiveRouter,
        slot: Slot,
        store: Store,
        run_id: str,
        policy: UnknownPositionPolicy,
        max_units: Callable[[], float],
        reconcile_secs: float,
        emergency_secs: float,
        clock_ns: Callable[[], int] = time.time_ns,
        backoff_cap_secs: float = 30.0,
    ) -> None:
        self.broker, self.router, self.slot, self.store, self.run_id = broker, router, slot, store, run_id
        self.policy, self._max_units = policy, max_units  # read at every check: SIGHUP may lower it
        self.reconcile_secs, self.emergency_secs, self.clock_ns = reconcile_secs, emergency_secs, clock_ns
        self.backoff_cap = backoff_cap_secs
        self.ready = False
        self.passes = 0
        self.discrepancies = 0
        self.last_error = ""
        self.ignored: set[str] = set()
        self._wake = asyncio.Event()
        router.on_settled = self.wake

    def wake(self) -> None:
        """Run a pass soon (a fill was reported: ours or one made at the broker by hand)."""
        self._wake.set()

    # -- one pass ---------------------------------------------------------------------------
    async def run_once(self, trigger: str) -> list[Correction] | None:
        """None when it could not finish (an order still unresolved): try again later."""
        async with self.router.io_lock:
            now = self.clock_ns()
            await self.router.sync_fills()
            await self.router.resolve_unknown()
            self.slot.apply_pending_fills(now)  # settled orders are finished by the slot
            if self.router.busy():
                log.warning("reconcile_deferred", trigger=trigger, unresolved=list(self.router.unresolved))
                return None
            reports = await self.broker.positions()
            inst = self.slot.instrument
            for r in reports:
                if r.instrument != inst and r.instrument not in self.ignored:
                    self.ignored.add(r.instrument)
                    self._event(
                        now,
                        trigger,
                        r.instrument,
                        "other_instrument",
                        None,
                        r.units,
                        0.0,
                        f"{r.units:+g} {r.instrument} held at the broker; not traded here: left alone",
                    )
            mine = [r for r in reports if r.instrument == inst]
            book = {inst: float(self.slot.position[PS_UNITS])}
            fixes = reconcile(book, mine, self.policy)
            avg = next((r.avg_price for r in mine), 0.0)
            for c in fixes:
                self._apply(c, avg, now, trigger)
            if not any(c.order_units for c in fixes):  # an adopted size may be above the maximum
                excess = self._cut_excess(now, trigger, mine)
                fixes += [excess] if excess is not None else []
            if trigger == "startup" and not fixes:
                self._event(now, trigger, inst, "in_sync", book[inst], book[inst], 0.0, "book agrees with the broker")
            self.passes += 1
            self.discrepancies += len(fixes)
            await self.store.flush()
            log.info("reconciled", trigger=trigger, discrepancies=len(fixes), position_units=book[inst])
            return fixes

    def _apply(self, c: Correction, avg: float, now: int, trigger: str) -> None:
        self.slot.set_position(c.book_units, avg)  # the broker's size is the truth
        action = c.detail
        if c.order_units:
            if self.slot.submit_correction(c.order_units, now, c.detail, f"reconcile_{c.kind}"):
                action += f"; order {c.order_units:+g} sent"
            else:
                action += "; order deferred: another order is working"
        self._event(now, trigger, c.instrument, c.kind, c.ours, c.broker, c.order_units, action)
        log.warning(
            "reconcile_correction",
            trigger=trigger,
            kind=c.kind,
            ours=c.ours,
            broker=c.broker,
            order_units=c.order_units,
        )

    async def emergency_check(self) -> Correction | None:
        """The 30-second check on the broker's own size; excess is flattened and alerted."""
        async with self.router.io_lock:
            if self.router.busy():
                return None
            now = self.clock_ns()
            self.slot.apply_pending_fills(now)
            mine = [r for r in await self.broker.positions() if r.instrument == self.slot.instrument]
            c = self._cut_excess(now, "emergency", mine)
            if c is not None:
                await self.store.flush()
            return c

    def _cut_excess(self, now: int, trigger: str, mine: list) -> Correction | None:
        units = sum(r.units for r in mine)
        maximum = self._max_units()
        c = excess_over_limit(units, maximum, self.slot.instrument)
        if c is None:
            return None
        ours = float(self.slot.position[PS_UNITS])
        self.slot.set_position(units, mine[0].avg_price)  # the broker's size first, then cut it
        sent = self.slot.submit_correction(c.order_units, now, c.detail, "emergency_flatten_excess")
        self._event(
            now,
            trigger,
            c.instrument,
            c.kind,
            ours,
            units,
            c.order_units,
            c.detail + ("" if sent else "; deferred: another order is working"),
        )
        log.error("position_above_maximum", units=units, maximum=maximum, order_units=c.order_units)
        return c

    def _event(self, ts: int, trigger: str, inst: str | None, kind: str, ours, broker, order_units, detail) -> None:
        self.store.add(ReconciliationRow(self.run_id, ts, trigger, inst, kind, ours, broker, order_units, detail))

    # -- the task ---------------------------------------------------------------------------
    async def startup(self, stop: asyncio.Event) -> bool:
        attempt = 0
        while not stop.is_set():
            try:
                if await self.run_once("startup") is not None:
                    self.ready = self.slot.broker_ready = True
                    self.last_error = ""
                    return True
            except FatalError:
                raise
            except TRANSIENT as e:
                self.last_error = str(e)
                log.error("reconcile_failed", trigger="startup", error=str(e))
            attempt += 1
            delay = backoff_delay(attempt, 0.5, self.backoff_cap)
            await sleep_or_stop(stop, delay)
        return False

    async def run(self, stop: asyncio.Event) -> None:
        self.slot.broker_ready = False
        if not await self.startup(stop):
            return
        loop = asyncio.get_running_loop()
        next_full = loop.time() + self.reconcile_secs
        next_emergency = loop.time() + self.emergency_secs
        while not stop.is_set():
            timeout = max(0.0, min(next_full, next_emergency) - loop.time())
            await first_of(stop.wait(), self._wake.wait(), timeout=timeout)
            if stop.is_set():
                return
            try:
                if self._wake.is_set():
                    self._wake.clear()
                    await self.run_once("fill")
                if loop.time() >= next_full:
                    next_full = loop.time() + self.reconcile_secs
                    await self.run_once("periodic")
                if loop.time() >= next_emergency:
                    next_emergency = loop.time() + self.emergency_secs
                    await self.emergency_check()
                self.last_error = ""
            except FatalError:
                raise
            except TRANSIENT as e:
                self.last_error = str(e)
                log.error("reconcile_failed", error=str(e))
