"""Emergency close without the daemon: ``stairway ctl flatten --direct``.

When the daemon is not running (the host came back without it, systemd gave up, the model
is bad and nobody wants it started), every open position is closed at the broker with the
daemon's own credentials and its own order path, and written to its own database, so the
next start finds book = broker and nothing to explain:

1. The state directory's lock is taken (a running daemon holds it: refused, naming its pid;
   while this runs, no daemon can start).
2. The journal is brought up to date first, exactly as a daemon start does
   (daemon.order_router): the fills since the stored cursor (ours move the book; anyone
   else's are recorded), and every order whose outcome was never learned is asked about by
   its client id; one still working at the broker is cancelled.
3. For each instrument of the config (or ``--instrument``) that the broker says is open, one
   market order for the opposite units: journaled ``new`` and committed before it is sent,
   with the next client id of that instrument (never reused); never resent. Its fills move
   the stored book through core.position.apply_fill, as the slot books them.
4. The broker's positions are read again: the exit code says whether everything asked for is
   flat.

The run is a row in ``runs`` (mode ``flatten-direct``) with what was done in its summary.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
import structlog

from stairway.core.broker import OrderReport, OrderState
from stairway.core.errors import TRANSIENT, ConfigError, OrderRejected, TransientError
from stairway.core.locks import LockHeld, state_lock
from stairway.core.position import PS_AVG, PS_REALIZED, PS_UNITS, apply_fill, new_state
from stairway.core.types import OrderIntent, Side, client_order_id
from stairway.daemon.brokers.factory import AdapterBundle, make_adapters
from stairway.daemon.config import DaemonConfig
from stairway.daemon.order_router import LiveRouter
from stairway.daemon.rows import BookRow, FillRow
from stairway.daemon.store import Store

log = structlog.get_logger("flatten_direct")
UNREACHABLE: tuple[type[BaseException], ...] = (*TRANSIENT, aiohttp.ClientError)


@dataclass
class DirectFlatten:
    lines: list[str] = field(default_factory=list)
    closed: dict[str, float] = field(default_factory=dict)  # instrument -> units closed
    left: dict[str, float] = field(default_factory=dict)  # instrument -> units still open after
    cancelled: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.left


async def direct_flatten(
    cfg: DaemonConfig,
    instrument: str | None = None,
    environ: dict[str, str] | None = None,
    clock: Callable[[], int] = time.time_ns,
    bundle: AdapterBundle | None = None,
) -> DirectFlatten:
    """Close at the broker what ``cfg``'s daemon trades (see the module doc). ``bundle``: the
    adapters to use (default: built from ``cfg`` with its credentials)."""
    if not cfg.live or not cfg.real_orders:
        raise ConfigError(
            f"broker.kind = {cfg.broker.kind!r}, fills = {cfg.broker.fills!r}: this daemon's positions are "
            "simulated (paper); there is nothing to close at a broker"
        )
    symbols = [leg.symbol for leg in cfg.legs(look_on_disk=False)]
    if instrument is not None and instrument not in symbols:
        raise ConfigError(f"--instrument {instrument}: not traded by this daemon ({', '.join(symbols)})")
    wanted = [instrument] if instrument else symbols
    try:
        lock = await asyncio.to_thread(state_lock(cfg.service.state_dir).acquire)
    except LockHeld as e:
        raise LockHeld(f"{e}; the daemon is running: use `stairway ctl flatten` (its signal file) instead") from None
    try:
        return await _flatten(cfg, wanted, environ, clock, bundle)
    except UNREACHABLE as e:  # one line, the journal keeps what went out
        raise TransientError(
            f"flatten --direct: the broker could not be reached or answered badly ({type(e).__name__}: {e}); "
            "every order sent is in the journal, and the next run (or daemon start) asks the broker about it"
        ) from None
    finally:
        lock.release()


async def _flatten(cfg, wanted, environ, clock, bundle) -> DirectFlatten:
    out = DirectFlatten()
    bundle = bundle or await asyncio.to_thread(make_adapters, cfg, environ)  # reads credential files
    broker = bundle.broker
    store = await Store.open(cfg.service.db_path)
    run_id = f"flatten-direct-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{os.getpid()}-{os.urandom(3).hex()}"
    await store.start_run(run_id, clock(), "flatten-direct", "none", cfg.model_dump_json())
    router = LiveRouter(broker, store, run_id, clock)
    try:
        await broker.connect()
        for inst in wanted:
            await router.restore(inst)
        await router.sync_fills(apply=False)  # what happened while no daemon ran, ours booked below
        await _book(store, router, run_id, clock)
        await router.resolve_unknown()
        for coid, intent in list(router.unresolved.items()):  # still working at the broker: cancel
            await broker.cancel(coid)
            out.cancelled.append(coid)
            out.lines.append(f"{intent.instrument}: cancelled working order {coid}")
        await router.resolve_unknown()
        await _book(store, router, run_id, clock)
        held = {p.instrument: p.units for p in await broker.positions() if p.units}
        for inst in wanted:
            units = held.get(inst, 0.0)
            if not units:
                out.lines.append(f"{inst}: flat at the broker, nothing to close")
                continue
            rep = await _close(store, router, inst, units, clock)
            await _book(store, router, run_id, clock)
            if rep is not None and rep.filled_units:
                out.closed[inst] = rep.filled_units
            state = rep.state.value if rep is not None else "outcome unknown (the next daemon start asks the broker)"
            why = f" ({rep.reason})" if rep is not None and rep.reason else ""
            out.lines.append(f"{inst}: {units:+g} units held; close order {state}{why}")
        after = {p.instrument: p.units for p in await broker.positions() if p.units}
        out.left = {i: after[i] for i in wanted if after.get(i)}
        for inst, units in out.left.items():
            out.lines.append(f"{inst}: STILL OPEN at the broker: {units:+g} units")
    finally:
        summary = {"closed": out.closed, "left": out.left, "cancelled": out.cancelled}
        try:
            await store.flush()
            await store.end_run(run_id, clock(), summary)
        finally:
            await store.close()
            await broker.close()
    return out


async def _close(store: Store, router: LiveRouter, inst: str, units: float, clock) -> OrderReport | None:
    """One market order for -units with the instrument's next client id, journaled and
    committed before it is sent; its fills are left in the router's inbox."""
    last = await store.last_order_seq(inst)
    now = clock()
    bar_ts, seq = (last[0], last[1] + 1) if last is not None and last[0] >= now else (now, 0)
    side = Side.SELL if units > 0 else Side.BUY
    intent = OrderIntent(client_order_id(inst, bar_ts, seq), inst, side, abs(units), bar_ts, now)
    router._journal(intent, "new", reason="flatten --direct")
    await store.flush()  # on disk before the broker hears of it
    log.warning("direct_flatten_order", instrument=inst, units=-units, client_order_id=intent.client_order_id)
    try:
        rep = await broker_submit(router, intent)
    except TRANSIENT as e:
        router._unknown(intent, f"{type(e).__name__}: {e}")
        await store.flush()
        return None
    await router._settle(intent, rep)
    return rep


async def broker_submit(router: LiveRouter, intent: OrderIntent) -> OrderReport:
    try:
        return await router.broker.submit(intent)
    except OrderRejected as e:
        signed = intent.units * int(intent.side)
        return OrderReport(intent.client_order_id, "", intent.instrument, signed, 0.0, OrderState.REJECTED, str(e))


async def _book(store: Store, router: LiveRouter, run_id: str, clock) -> None:
    """Our fills in the router's inbox onto the stored book (core.position.apply_fill)."""
    fills, router.inbox = router.inbox, []
    for inst in sorted({f.instrument for f in fills}):
        st = new_state()
        book = await store.book(inst)
        if book is not None:
            st[PS_UNITS], st[PS_AVG], st[PS_REALIZED] = book
        for f in fills:
            if f.instrument == inst:
                signed = f.units * int(f.side)
                apply_fill(st, signed, f.price, f.commission)
                store.add(FillRow(run_id, f.client_order_id, f.seq, inst, f.ts_ns, signed, f.price, f.commission))
        store.add(BookRow(inst, float(st[PS_UNITS]), float(st[PS_AVG]), float(st[PS_REALIZED]), clock(), run_id))
    await store.flush()
