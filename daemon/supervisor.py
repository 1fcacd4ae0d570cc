"""The daemon's supervisor (issue 23 §2): the ``control`` task, which every
``service.control_poll_secs`` reads the signal files and turns them, the risk engine's halt,
the feed's staleness and the models' age into the permission to open positions; and the
event-loop lag monitor. Each receives what it reads and writes, not the daemon.

What it decides, per poll:
- trading enabled: START_TRADING present (or not required) and the control directory private
  (re-checked every ``control_check_secs``: group/other-writable stops new positions until
  fixed);
- a halt (daemon.risk) is alerted once, with START_TRADING removed when only an operator may
  lift it, and ends with a START_TRADING newer than the halt or with a new session;
- live: an instrument whose feed went stale while its market is open opens nothing;
- models older than ``max_model_age_days``: ``expired_model_action``;
- flatten requests (FLATTEN, FLATTEN_<instrument>): requested on the slots, then the file is
  consumed;
- unknown control files are logged once each, with the closest known name.
Then ``after_poll`` (the daemon's alert conditions and lifecycle state).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable

import structlog

from stairway.core.errors import FatalError
from stairway.daemon.aio import sleep_or_stop
from stairway.daemon.alerts import Alerter
from stairway.daemon.config import ServiceConfig
from stairway.daemon.control import ControlFiles, check_private, hint
from stairway.daemon.risk import RiskEngine, expire_models

log = structlog.get_logger("daemon")


class ControlSupervisor:
    def __init__(
        self,
        svc: ServiceConfig,
        live: bool,
        control: ControlFiles,
        risk: RiskEngine,
        slots: dict,
        stale_instruments: Callable[[], Iterable[str]],
        alerter: Alerter,
        stop: asyncio.Event,
        clock: Callable[[], int],
        after_poll: Callable[[], None],
    ) -> None:
        self.svc, self.live, self.control, self.risk, self.slots = svc, live, control, risk, slots
        self.stale_instruments, self.alerter, self.stop, self.clock = stale_instruments, alerter, stop, clock
        self.after_poll = after_poll
        self.unsafe = ""  # why the control directory is unsafe now, if it is
        self.unknown: tuple[str, ...] = ()  # unknown names in the control directory now
        self._seen: set[str] = set()  # unknown names and odd entries already logged
        self._halt_ns = 0  # when the current halt was alerted (0: none)

    def check_dir(self) -> None:
        """Re-check the control directory's ownership and permissions while running: an unsafe
        directory (someone else could write START_TRADING) stops new positions until fixed."""
        try:
            check_private(self.control.dir)
        except FatalError as e:
            if not self.unsafe:
                log.error("control_directory_unsafe", reason=str(e), action="no new positions until fixed")
            self.unsafe = str(e)
            return
        if self.unsafe:
            log.warning("control_directory_safe_again", directory=str(self.control.dir))
        self.unsafe = ""

    async def run(self) -> None:
        svc = self.svc
        next_check = 0.0
        while not self.stop.is_set():
            if time.monotonic() >= next_check:
                await asyncio.to_thread(self.check_dir)
                next_check = time.monotonic() + svc.control_check_secs
            await self.poll()
            await sleep_or_stop(self.stop, svc.control_poll_secs)

    async def poll(self) -> None:
        svc, risk = self.svc, self.risk
        st = await asyncio.to_thread(self.control.poll)
        for name in st.unknown:
            if name not in self._seen:  # once per name
                self._seen.add(name)
                known = self.control.known
                log.warning("control_file_ignored", name=name, shown=hint(name, known), known=list(known))
        self.unknown = st.unknown
        for what in st.odd:
            if what not in self._seen:  # once per entry and reason
                self._seen.add(what)
                log.warning("control_entry_not_a_file", entry=what)
        enabled = (st.start_trading or not svc.require_start_file) and not self.unsafe
        await self._halt(st.start_trading, st.start_mtime_ns)
        permission = risk.permission
        if enabled != permission.control_allows:
            log.info("trading_enabled" if enabled else "trading_disabled", start_file=st.start_trading)
        why = "control directory unsafe: no new positions" if self.unsafe else None
        permission.control(enabled, why or "START_TRADING absent: observe only")
        if self.live:
            stale_now = set(self.stale_instruments())
            for inst, slot in self.slots.items():
                stale = inst in stale_now and slot.calendar.is_open(self.clock())
                if stale != slot.data_stale:
                    log.warning("instrument_stale" if stale else "instrument_fresh", instrument=inst)
                permission.set_stale(inst, stale)
        expire_models(self.slots, svc.max_model_age_days, svc.expired_model_action, permission)
        for name, targets in st.flatten_requests(list(self.slots)):
            for inst in targets:
                self.slots[inst].request_flatten(f"{name} control file")
            left = await asyncio.to_thread(self.control.consume, name)
            log.warning("flatten_requested", source="control file", file=name, instruments=targets)
            if left:  # flattened all the same: it is a safety command
                log.error("flatten_file_not_removed", file=name, reason=left)
        self.after_poll()

    async def _halt(self, start_trading: bool, start_mtime_ns: int) -> None:
        """A halt lasts until the next session (risk.halt_resume) or an operator starts trading
        again with a START_TRADING newer than the halt."""
        risk = self.risk
        rs = risk.state
        if rs.halted:
            if not self._halt_ns:
                self._halt_ns = time.time_ns()
                if not rs.halt_resumable:  # the operator's to lift: START_TRADING goes
                    await asyncio.to_thread(self.control.stop_trading)
                until = "the next session" if rs.halt_resumable else "an operator runs `stairway ctl start`"
                log.error("trading_halted", reason=rs.halted_reason, until=until)
                self.alerter.notify("halted", f"{rs.halted_reason}; halted until {until}", level="failure")
            elif start_trading and start_mtime_ns > self._halt_ns:
                risk.resume()
                self._halt_ns = 0
                log.warning("trading_resumed_by_operator")
                self.alerter.notify("halted_resolved", "trading resumed by an operator (START_TRADING)", level="info")
        elif self._halt_ns:  # ended by a new session (the slot logged it)
            self._halt_ns = 0
            self.alerter.notify("halted_resolved", "trading resumed: a new session began", level="info")


class LoopLag:
    """The event loop's lag: how late a 100-ms sleep wakes, the last value and every one
    measured (at most a million, for the run's summary)."""

    PERIOD = 0.1
    KEEP = 1_000_000

    def __init__(self) -> None:
        self.last = 0.0
        self.all: list[float] = []

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            t = time.perf_counter()
            await asyncio.sleep(self.PERIOD)
            self.last = max(0.0, time.perf_counter() - t - self.PERIOD)
            if len(self.all) < self.KEEP:
                self.all.append(self.last)
