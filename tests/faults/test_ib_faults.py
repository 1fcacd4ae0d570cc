"""Fault matrix, Interactive Brokers side: the live daemon through the IB adapter and the real
``ib_async.IB`` client, against a local gateway that speaks the TWS API socket protocol
(stairway/emulators/tws.py) on 127.0.0.1. Each case ends with the same invariants: no duplicate
order (one placeOrder per orderRef), no lost execution, the book equal to the gateway's
position, nothing left new/unknown in the journal."""

from __future__ import annotations

import asyncio
import sqlite3
import time

import ib_async
import pytest

from stairway.core.types import is_stop_id
from stairway.daemon.app import Daemon
from stairway.daemon.brokers.factory import AdapterBundle
from stairway.daemon.brokers.ib.broker import IBBroker
from stairway.daemon.brokers.ib.errors import IBErrorClass, classify
from stairway.daemon.brokers.ib.feed import IBFeed
from stairway.emulators.tws import TwsEmulator
from tests.faults.harness import ConditionNotReached, live_config, prices
from tests.helpers import tiny_checkpoint, without_stops

pytestmark = pytest.mark.usefixtures("no_blocking")  # fail on blocking calls in the event loop


def test_error_codes_are_classified():
    assert classify(1100) is IBErrorClass.CONNECTIVITY_LOST
    assert classify(1101) is IBErrorClass.RESTORED_DATA_LOST and classify(1102) is IBErrorClass.RESTORED
    assert {classify(c) for c in (2103, 2104, 2105, 2106)} == {IBErrorClass.FARM_NOTICE}
    assert classify(326) is IBErrorClass.CLIENT_ID_IN_USE and classify(201) is IBErrorClass.ORDER_REJECTED
    assert classify(399) is IBErrorClass.OTHER


class IBRig:
    def __init__(self, tmp, spec, stops: bool = False, **ib) -> None:
        tiny_checkpoint(tmp / "models", spec, seed=3)
        self.gw = TwsEmulator()
        cfg = live_config(tmp, "http://unused")
        self.ib_settings = {
            "backoff_base_secs": 0.05,
            "backoff_cap_secs": 0.2,
            "fill_timeout_secs": 0.5,
            "price_stale_secs": 1.0,
            **ib,
        }
        # the fault matrix's cases without the shipped stop (its own cases: tests/faults/test_ib_stops.py)
        self.cfg = cfg if stops else without_stops(cfg)
        self.gw.prices = prices(self.cfg, 12)

    async def start(self) -> IBRig:
        # ib_async caches the first event loop it sees (util.getLoop is functools.cache'd): one
        # loop per process, as a daemon has; each test runs its own
        ib_async.util.getLoop.cache_clear()
        port = await self.gw.start()
        b = self.cfg.broker
        ib = b.ib.model_copy(update={"host": "127.0.0.1", "port": port, **self.ib_settings})
        self.cfg = self.cfg.model_copy(update={"broker": b.model_copy(update={"kind": "ib", "ib": ib})})
        return self

    def adapters(self, cfg, environ):
        broker = IBBroker(cfg.broker.ib, cfg.instrument.symbol)  # the real ib_async.IB client
        return AdapterBundle(broker, IBFeed(broker, cfg.broker.ib.price_stale_secs, clock=lambda: self.gw.now_ns))

    async def run(self, during=None, timeout: float = 45.0, keep_gateway: bool = False, policy=None):
        stop = asyncio.Event()
        d = Daemon(self.cfg, policy=policy, stop=stop, clock=lambda: self.gw.now_ns, adapters=self.adapters)
        task = asyncio.create_task(d.run())
        streamer = None
        t_end = time.monotonic() + timeout
        reached = False
        while time.monotonic() < t_end and not task.done():
            await asyncio.sleep(0.02)
            if not d.setup_done:
                continue
            if streamer is None and any(s.market_data for s in self.gw.sessions):
                streamer = asyncio.create_task(self.gw.stream())
            if during is not None:
                await during(d)
            if (
                streamer is not None
                and streamer.done()
                and not d.parts.router.busy()
                and d.parts.router.queue.empty()
                and d.parts.reconciler.ready
            ):
                reached = True
                break
        stopped_by_itself = task.done()
        stop.set()
        try:
            await asyncio.wait_for(task, 15)
            error = None
        except BaseException as e:
            error = e
        if streamer is not None:
            streamer.cancel()
        if not keep_gateway:
            await self.gw.close()
        if not reached and not stopped_by_itself:
            raise ConditionNotReached(
                f"the IB run ended at its {timeout:.0f} s limit, not by its stopping condition; error: {error!r}"
            )
        return d, error

    def check(self) -> dict:
        with sqlite3.connect(self.cfg.service.db_path) as c:
            journal = dict(c.execute("SELECT client_order_id, state FROM order_journal").fetchall())
            fills = {r[0] for r in c.execute("SELECT broker_fill_id FROM broker_fills")}
            book = c.execute("SELECT units FROM book").fetchone()
        refs = [o.order_ref for o in self.gw.orders if o.order_ref]
        assert len(refs) == len(set(refs)), refs  # one placeOrder per client id
        assert {r for r in refs if not is_stop_id(r)} <= set(journal)  # (a stop carries its order's id + "-stop")
        assert not [k for k, s in journal.items() if s in ("new", "unknown")], journal
        assert {e.exec_id for e in self.gw.executions} <= fills  # no lost execution
        assert abs((book[0] if book else 0.0) - self.gw.server_position) < 1e-6, (book, self.gw.server_position)
        return journal


async def rig_for(tmp, spec, stops: bool = False, **ib) -> IBRig:
    return await (await asyncio.to_thread(IBRig, tmp, spec, stops, **ib)).start()


def run(coro):
    return asyncio.run(coro)


def test_ib_trades_and_reconciles(tmp_path, spec):
    async def go():
        rig = await rig_for(tmp_path, spec)
        d, error = await rig.run()
        assert error is None
        journal = rig.check()
        assert sum(s == "filled" for s in journal.values()) >= 3

    run(go())


def test_ib_gateway_night_restart_sequence(tmp_path, spec):
    """1100, socket closed while an order rests at the broker and fills during the outage,
    refused connects, 326 client id in use, then 1102 and farm notices (2103-2106, 2158):
    one reconnect, full resync, the outage's execution recovered, nothing placed twice."""

    async def go():
        rig = await rig_for(tmp_path, spec)
        state = {}

        async def during(d):
            f = rig.gw
            if "armed" not in state and f.orders_placed >= 2 and not d.parts.router.busy():
                state["armed"] = True
                f.hold_fills = True  # the next order rests at the broker
            elif "armed" in state and "night" not in state and f.orders_placed >= 3:
                state["night"] = True
                state["calls_before"] = len(f.calls)
                restart = asyncio.create_task(f.night_restart(down_secs=0.3, client_id_in_use=1))
                await asyncio.sleep(0.05)
                f.release_fills()  # it fills while the client is away
                await restart
                await asyncio.sleep(0.05)
                state["link_after"] = d.parts.adapter.link_up  # 2103/2105 'broken' notices did not drop it

        d, error = await rig.run(during=during)
        assert error is None and "night" in state
        rig.check()
        f = rig.gw
        after = f.calls[state["calls_before"] :]
        assert f.connects == 2  # one reconnect; the farm notices tore nothing down
        ids = [o.order_id for o in f.orders]
        assert len(ids) == len(set(ids))  # order ids never reused across the reconnect
        assert after.count("start_api") >= 2  # 326 (the old session's client id), then connected
        i = max(k for k, c in enumerate(after) if c == "start_api")
        # ib_async's own start-up requests, then the adapter's resync, then the quotes again
        # (a subsequence: 1102's resync follows with its own three)
        want = iter(after[i + 1 :])
        assert all(c in want for c in ("req_open_orders", "req_executions", "req_positions", "req_mkt_data")), after[i:]
        codes = [c for c, _ in d.parts.adapter.errors]
        assert {1100, 326, 1102, 2103, 2104, 2105, 2106, 2158} <= set(codes)
        assert state["link_after"] and d.parts.feed.subscriptions == 2

    run(go())


def test_ib_fill_timeout_is_resolved_by_order_ref_not_resent(tmp_path, spec):
    async def go():
        rig = await rig_for(tmp_path, spec)
        state = {}

        async def during(d):
            f = rig.gw
            if "held" not in state and f.orders_placed >= 1 and not d.parts.router.busy():
                state["held"] = True
                f.hold_fills = True
            elif "held" in state and "released" not in state and d.parts.router.unresolved:
                state["released"] = True
                state["placed"] = f.orders_placed
                f.release_fills()

        d, error = await rig.run(during=during)
        assert error is None and "released" in state
        journal = rig.check()
        assert list(journal.values()).count("filled") >= 2

    run(go())


@pytest.mark.parametrize("what", ["reject", "manual_trade"])
def test_ib_reject_and_manual_trade(what, tmp_path, spec):
    async def go():
        rig = await rig_for(tmp_path, spec)
        done = []

        async def during(d):
            f = rig.gw
            if not done and f.orders_placed >= 2 and not d.parts.router.busy():
                done.append(1)
                if what == "reject":
                    f.reject_next = 1
                else:
                    f.manual_trade(30_000.0)

        d, error = await rig.run(during=during)
        assert error is None
        journal = rig.check()
        if what == "reject":
            assert "rejected" in journal.values()
        else:
            import sqlite3

            with sqlite3.connect(rig.cfg.service.db_path) as c:
                kinds = {r[0] for r in c.execute("SELECT kind FROM reconciliation_events")}
            assert kinds & {"adopt_size", "flatten_excess", "flatten_unknown", "adopt_unknown"}, kinds

    run(go())


def test_ib_outage_is_backfilled_from_minute_bars(tmp_path, spec):
    """Issue 13 §1: 12 hours of quotes lost while the gateway was away come back, on
    reconnect, as bar-derived quotes from 1-minute BID and ASK historical bars: every hour
    the prices cover became a bar; nothing was placed twice."""

    async def go():
        rig = await rig_for(tmp_path, spec)
        state = {}

        async def during(d):
            f = rig.gw
            if "night" not in state and f.cursor > 200 and not d.parts.router.busy():
                state["night"] = True
                f.lost_on_restart = 60  # 5 quotes an hour
                await f.night_restart(down_secs=0.2, client_id_in_use=0)

        d, error = await rig.run(during=during)
        assert error is None and "night" in state
        rig.check()
        assert d.parts.feed.backfilled > 0 and rig.gw.calls.count("req_historical") >= 2  # bid and ask
        with sqlite3.connect(rig.cfg.service.db_path) as c:
            bars = {r[0] for r in c.execute("SELECT ts_ns FROM bars")}
        want = {ts - ts % 3_600_000_000_000 for ts, _, _ in rig.gw.prices[:-1]}
        assert want - bars <= {max(want)}, sorted(want - bars)[:5]  # the last hour is still open

    run(go())


def test_ib_a_bounded_order_is_a_marketable_limit_and_an_unfilled_one_is_counted(tmp_path, spec):
    """Issue 21 §2 on IB: a decision's order goes out as an IOC limit at its bound (on
    IDEALPRO's half-pip grid, rounded inward); one the market has left is cancelled unfilled,
    counted as a price-bound cancel, and never placed again."""

    async def go():
        rig = await rig_for(tmp_path, spec)
        ex = rig.cfg.execution.model_copy(update={"price_bound_pips": 0.1})
        rig.cfg = rig.cfg.model_copy(update={"execution": ex})
        d, error = await rig.run()
        assert error is None
        journal = rig.check()  # one placeOrder per client id, book == gateway
        orders = [o for o in rig.gw.orders if o.order_ref]
        assert orders and all(o.order_type == "LMT" and o.tif == "IOC" for o in orders)
        assert all(abs(o.limit / 0.00005 - round(o.limit / 0.00005)) < 1e-6 for o in orders)
        cancelled = [o for o in orders if journal[o.order_ref] == "cancelled"]
        assert 0 < len(cancelled) < len(orders)
        assert d.slot.counters.bound_cancels == len(cancelled)

    run(go())
