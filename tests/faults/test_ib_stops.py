"""Issue 21 §1 at Interactive Brokers: every position carries one protective stop at the broker,
a GTC stop order (STP) for the whole position, placed as soon as the entry fills, cancelled
before any other order for the instrument (an IB stop is an order of its own, not tied to a
trade as OANDA's is), found again among the open orders after a restart and placed again by
reconciliation where it is missing. Against the TWS wire emulator and the real ib_async
client; each case ends with the fault matrix's invariants (tests/faults/test_ib_faults.py:
one placeOrder per id, no lost execution, book = broker) and exactly one working stop for
the open position, or none when flat."""

from __future__ import annotations

import sqlite3

import pytest

from stairway.core.policy import ScriptedPolicy
from tests.faults.test_ib_faults import rig_for, run

pytestmark = pytest.mark.usefixtures("no_blocking")

LOT = 100_000.0


def working_stops(gw) -> list:
    return [o for o in gw.orders if o.order_type == "STP" and not o.done]


def check_stop(gw) -> None:
    """Exactly one working stop, for the whole open position and against it; none when flat."""
    pos, stops = gw.server_position, working_stops(gw)
    if not pos:
        assert stops == [], stops
        return
    assert len(stops) == 1, stops
    assert stops[0].quantity == abs(pos) and stops[0].action == ("SELL" if pos > 0 else "BUY"), (pos, stops)
    assert stops[0].order_ref.endswith("-stop") and stops[0].tif == "GTC"


def once_protected(rig, act) -> tuple[list, object]:
    """A ``during`` callback that calls ``act(stop)`` once, the first time the gateway holds a
    long with its stop working; and the list of the stops it acted on."""
    done: list = []

    async def during(d) -> None:
        stops = working_stops(rig.gw)
        if not done and stops and rig.gw.server_position > 0:
            act(stops[0])
            done.append(stops[0])

    return done, during


def events(rig, like: str) -> list[tuple]:
    with sqlite3.connect(rig.cfg.service.db_path) as c:
        return c.execute(
            "SELECT trigger, kind, broker, detail FROM reconciliation_events WHERE kind LIKE ? ORDER BY id", (like,)
        ).fetchall()


def test_each_position_has_one_stop_a_reversal_cancels_it_first_and_a_close_removes_it(tmp_path, spec):
    """Long, then short, then flat: the long's stop (SELL) is cancelled before the reversal's
    order goes out, the short gets its own (BUY) for the whole short, the close cancels it.
    Sampled every 20 ms through the run: never two working stops."""

    async def go():
        rig = await rig_for(tmp_path, spec, stops=True)
        seen: list[int] = []

        async def during(d):
            seen.append(len(working_stops(rig.gw)))
            assert seen[-1] <= 1

        script = [1, 0, 0, 2, 0, 0, 3]  # a few hours each: 3 ATRs away, the stops are not reached
        d, error = await rig.run(during, policy=ScriptedPolicy(script))
        assert error is None
        rig.check()
        check_stop(rig.gw)
        stops = [o for o in rig.gw.orders if o.order_type == "STP"]
        assert [(o.action, o.quantity, o.status) for o in stops] == [
            ("SELL", LOT, "Cancelled"),
            ("BUY", LOT, "Cancelled"),
        ], stops
        # the entry's stop sits the decision's distance under the entry: 3 ATRs, capped at 500 a lot
        entry = next(o for o in rig.gw.orders if o.order_type != "STP")
        fill = next(e for e in rig.gw.executions if e.order is entry)
        assert 0.0 < fill.price - stops[0].aux <= 500.0 / LOT + 0.0011  # the cap, the bound and a tick
        # each stop was cancelled before the next order for the instrument was placed
        requests = [(int(f[0]), f) for f in rig.gw.received if f[0] in ("3", "4")]
        order_ids = {o.order_id: o for o in rig.gw.orders}
        sequence = [("cancel", order_ids[int(f[2])].order_type) if m == 4 else ("place", f[18]) for m, f in requests]
        assert sequence == [
            ("place", "LMT"), ("place", "STP"), ("cancel", "STP"), ("place", "LMT"), ("place", "STP"),
            ("cancel", "STP"), ("place", "LMT"),
        ], sequence  # fmt: skip
        assert max(seen) == 1

    run(go())


def test_a_stop_filled_at_ib_is_booked_as_the_positions_end(tmp_path, spec):
    """The market runs through the long's stop: IB fills it (orderRef = the entry's id +
    "-stop"), the daemon books it as its own fill, a stop_filled risk event, flat, no stop left
    working, book = broker."""

    async def go():
        rig = await rig_for(tmp_path, spec, stops=True)

        def through(stop) -> None:
            bid, ask = rig.gw.quote("EURUSD")
            drop = bid - stop.aux + 0.0005  # 5 pips through the stop
            rig.gw.move_market("EURUSD", bid - drop, ask - drop)

        moved, during = once_protected(rig, through)
        d, error = await rig.run(during, policy=ScriptedPolicy([1]))
        assert error is None
        assert moved, "the stop was never in place"
        rig.check()
        check_stop(rig.gw)
        assert rig.gw.server_position == 0.0
        [stop_fill] = [e for e in rig.gw.executions if e.order.order_type == "STP"]
        assert stop_fill.order.order_ref.endswith("-stop") and stop_fill.side == "SLD"
        assert d.slot.counters.risk_events.get("stop_filled", 0) == 1

    run(go())


def test_a_refused_stop_is_placed_again_and_a_restart_finds_a_missing_one_before_trading(tmp_path, spec):
    """The gateway refuses every stop (error 201): the long stays without one, each pass says
    so (stop_refused). Stopped there, as a kill -9 between the entry's fill and its stop would
    leave it, the next start's first reconciliation pass places it (stop_replaced, startup)
    before any order may go out; a later pass finds it and does nothing."""

    async def go():
        rig = await rig_for(tmp_path, spec, stops=True)
        rig.gw.reject_stops = 10**6
        d, error = await rig.run(policy=ScriptedPolicy([1]), keep_gateway=True)
        assert error is None
        assert rig.gw.server_position == LOT and working_stops(rig.gw) == []
        assert events(rig, "stop_refused"), "no pass reported the missing stop"
        rig.check()
        rig.gw.reject_stops = 0
        placed_before = len(rig.gw.orders)
        d, error = await rig.run(policy=ScriptedPolicy([1]))
        assert error is None
        check_stop(rig.gw)
        replaced = events(rig, "stop_replaced")
        assert [(r[0], r[1], r[2]) for r in replaced] == [("startup", "stop_replaced", LOT)], replaced
        first_new = rig.gw.orders[placed_before]
        assert first_new.order_type == "STP"  # the first order of the new run: the stop
        rig.check()

    run(go())


def test_a_stop_cancelled_by_hand_is_put_back(tmp_path, spec):
    """Someone cancels the long's stop in TWS: the next periodic pass places it again."""

    async def go():
        rig = await rig_for(tmp_path, spec, stops=True)

        def by_hand(stop) -> None:
            stop.status = "Cancelled"  # in TWS: the client hears of it like any cancellation
            rig.gw._status(stop)

        cancelled, during = once_protected(rig, by_hand)
        d, error = await rig.run(during, policy=ScriptedPolicy([1]))
        assert error is None and cancelled
        check_stop(rig.gw)
        # the one placed again: working, or filled since (3 ATRs under the entry's price, not the quote's)
        [again] = [o for o in rig.gw.orders if o.order_type == "STP" and o.order_ref != cancelled[0].order_ref]
        assert again.status in ("Submitted", "Filled") and again.quantity == LOT and again.action == "SELL"
        assert [r[1] for r in events(rig, "stop_%")] == ["stop_replaced"]
        assert not events(rig, "account_%")  # no false alarm from IB's figures refreshed every 3 minutes
        rig.check()

    run(go())


def test_a_stop_ib_refuses_is_one_line_naming_it(tmp_path, spec):
    """A stop IB refuses: OrderRejected naming the stop's id and price; set_stop places one;
    while flat there is no position to list."""
    from stairway.core.errors import OrderRejected

    async def go():
        rig = await rig_for(tmp_path, spec, stops=True)
        broker = rig.adapters(rig.cfg, {}).broker
        await broker.connect()
        try:
            rig.gw.reject_stops = 1
            with pytest.raises(OrderRejected, match=r"x-stop: IB refused the stop at 1\.16"):
                await broker._place_stop(broker.contracts["EUR_USD"], "EUR_USD", LOT, 1.1650, "x-stop")
            await broker.set_stop("EUR_USD", "EUR_USD", LOT, 1.1650, "y-stop")
            listed = await broker.open_trades()
        finally:
            await broker.close()
            await rig.gw.close()
        assert listed == []  # flat: nothing to protect, nothing listed
        assert [(o.order_ref, o.aux) for o in working_stops(rig.gw)] == [("y-stop", 1.1650)]

    run(go())


def test_partial_fills_leave_one_stop_for_exactly_what_filled(tmp_path, spec):
    """IB fills 40 % of the entry (an IOC limit: the rest cancelled) and half of the reversal:
    long 40,000 with a SELL stop for 40,000, then the 140,000 SELL fills 70,000, short 30,000
    with a BUY stop for 30,000. Each order is journaled as partially filled, both executions
    are booked, book = broker, one working stop all along and none for the units that did not
    fill."""

    async def go():
        rig = await rig_for(tmp_path, spec, stops=True)
        rig.gw.partial_fills = [0.4, 0.5]
        seen: list[tuple[float, list]] = []

        async def during(d):
            stops = working_stops(rig.gw)
            assert len(stops) <= 1
            seen.append((rig.gw.server_position, [(s.action, s.quantity) for s in stops]))

        d, error = await rig.run(during, policy=ScriptedPolicy([1, 0, 0, 2]))
        assert error is None
        journal = rig.check()
        check_stop(rig.gw)
        entries = [o for o in rig.gw.orders if o.order_type != "STP"]
        assert [(o.action, o.quantity, o.filled, o.status) for o in entries[:2]] == [
            ("BUY", LOT, 40_000.0, "Cancelled"),
            ("SELL", LOT + 40_000.0, 70_000.0, "Cancelled"),
        ]
        assert [journal[o.order_ref] for o in entries[:2]] == ["partially_filled"] * 2
        stops = [o for o in rig.gw.orders if o.order_type == "STP"]
        assert [(o.action, o.quantity) for o in stops[:2]] == [("SELL", 40_000.0), ("BUY", 30_000.0)]
        assert (40_000.0, [("SELL", 40_000.0)]) in seen  # the long's stop seen working
        assert rig.gw.partial_fills == []

    run(go())
