"""The fault matrix, OANDA side: the live daemon against the v20 emulator with one fault
per case. Every case ends with Rig.check(): no duplicate order (one POST per order, every
broker order journaled and settled), no lost fill (every ORDER_FILL part recorded), the
book equal to the broker's position, no order left new/unknown; plus the daemon either
still running when stopped by the test or stopped on purpose with the reason raised."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from stairway.core.errors import FatalError
from tests.faults.harness import Rig, prices, reconcile_events

pytestmark = pytest.mark.usefixtures("no_blocking")  # fail on blocking calls in the event loop


def last_price_done(d, emu) -> bool:
    return (
        emu.cursor >= len(emu.prices)
        and d.slot.marks.last_quote_ts == emu.prices[-1][0]
        and not d.parts.router.busy()
        and d.parts.reconciler.ready
        and d.parts.router.queue.empty()
    )


def idle(d) -> bool:
    return not d.parts.router.busy() and d.parts.reconciler.ready and d.parts.router.queue.empty()


def reconnected_and_done(d, emu) -> bool:
    """Driven by events, not time: the stream was re-established and the last price reached the slot."""
    return d.parts.feed.reconnects >= 1 and last_price_done(d, emu)


def stop_fills_booked(rig, out, creates: list, reason: str) -> list:
    """The broker's stop fills (ORDER_FILL for ``reason``) are ours: each a stop_filled risk
    event, the stops never sent as orders of their own, and never read as a position gone
    missing. Races the broker's stops bring, handled as designed: a stop that fills while a
    reversal is in flight leaves an excess (flattened); one that fills while that correction is
    in flight lets the correction open a position without a stop (the next pass gives it one).
    Returns the fills."""
    fired = [t for t in rig.emu.transactions if t["type"] == "ORDER_FILL" and t["reason"] == reason]
    assert fired and rig.emu.stops_filled == len(fired)
    assert out.daemon.slot.counters.risk_events.get("stop_filled") == len(fired)
    assert rig.emu.order_requests == len(creates)
    misread = [e for e in reconcile_events(rig) if e[1] not in ("in_sync", "flatten_excess", "stop_replaced")]
    assert misread == []
    return fired


def marked_stale(d, emu) -> bool:
    return d.slot.data_stale and idle(d)


def non_tradeable_seen(d, emu) -> bool:
    return emu.cursor >= len(emu.prices) and d.parts.feed.non_tradeable >= 100 and idle(d)


def backfilled_and_done(d, emu) -> bool:
    return d.parts.feed.backfilled > 0 and reconnected_and_done(d, emu)


@dataclass
class Case:
    name: str
    knobs: dict = field(default_factory=dict)  # set before the run
    armed: dict = field(default_factory=dict)  # order number -> knobs
    until: object = None
    expect: object = None  # (rig, outcome) -> None, extra assertions
    during: object = None
    broker: dict = field(default_factory=dict)
    days: float = 12


def states(rig):
    return list(rig.check()["journal"].values())


def risk_kinds(rig):
    with rig.db() as c:
        return [r[0] for r in c.execute("SELECT kind FROM risk_events")]


def expect_reconnected(rig, out):
    assert out.daemon.parts.feed.reconnects >= 1 and out.error is None


def expect_no_reconnect(rig, out):
    assert out.daemon.parts.feed.reconnects == 0 and rig.emu.order_requests >= 3


def expect_stale(rig, out):
    assert any("stale" in h for h in out.health), out.health
    assert out.daemon.slot.data_stale


def expect_non_tradeable(rig, out):
    assert out.daemon.parts.feed.non_tradeable >= 100
    first = rig.emu.first_non_tradeable_ts
    with rig.db() as c:  # no bar, so no decision, was built from a non-tradeable price
        assert c.execute("SELECT MAX(ts_ns) FROM bars").fetchone()[0] < first


def expect_trading(rig, out):
    assert out.error is None and rig.emu.order_requests >= 3


def expect_partial(rig, out):
    assert "partially_filled" in states(rig)


def expect_overfill(rig, out):
    assert "overfill" in risk_kinds(rig) and abs(rig.emu.positions["EUR_USD"]) <= 100_000


def expect_rejected(rig, out):
    assert states(rig).count("rejected") == 1 and rig.emu.order_requests >= 3


def expect_duplicates_ignored(rig, out):
    assert out.daemon.parts.router.duplicate_fills > 0


def expect_backfill(rig, out):
    assert out.daemon.parts.feed.backfilled > 0 and out.daemon.parts.feed.reconnects >= 1
    with rig.db() as c:  # every hour the prices cover became a bar: the gap was filled from candles
        bars = {r[0] for r in c.execute("SELECT ts_ns FROM bars")}
    want = {ts - ts % 3_600_000_000_000 for ts, _, _ in rig.emu.prices[:-1]}
    assert want - bars <= {max(want)}, sorted(want - bars)[:5]  # the last hour is still open


def manual_when(n_orders: int, units: float):
    done = []

    async def during(d, emu):
        if not done and emu.order_requests >= n_orders and not d.parts.router.busy():
            done.append(emu.manual_trade("EUR_USD", units))

    return during


def expect_documented_fills_applied(rig, out):
    """Fills shaped like OANDA's documented examples (no per-trade price) and PRICE lines
    with only the legacy status: every order settles, every fill is applied at the fill's
    own price, and the book's average is the broker's entry average."""
    expect_trading(rig, out)
    with rig.db() as c:
        prices = [r[0] for r in c.execute("SELECT price FROM broker_fills WHERE applied = 1")]
        book = c.execute("SELECT units, avg_price FROM book").fetchone()
    want = {float(t["fullVWAP"]) for t in rig.emu.transactions if t["type"] == "ORDER_FILL"}
    assert prices and set(prices) <= want
    if book[0]:
        assert abs(book[1] - rig.emu.average_price("EUR_USD")) < 1e-9, (book, rig.emu.average_price("EUR_USD"))


def expect_manual_handled(rig, out):
    kinds = [e[1] for e in reconcile_events(rig)]
    assert {"adopt_size", "flatten_excess", "adopt_unknown", "flatten_unknown"} & set(kinds), kinds
    assert abs(rig.emu.positions["EUR_USD"]) <= 100_000


CASES = [
    Case("baseline", expect=expect_trading),
    Case(
        "stream_dropped", knobs={"drop_stream_after_lines": 200}, expect=expect_reconnected, until=reconnected_and_done
    ),
    Case("stream_silent", knobs={"silent_after_lines": 200}, expect=expect_reconnected, until=reconnected_and_done),
    Case("no_heartbeats", knobs={"stop_heartbeats": True}, expect=expect_no_reconnect),
    Case("instrument_muted", armed={2: {"mute_instrument": "EUR_USD"}}, expect=expect_stale, until=marked_stale),
    Case(
        "weekend_non_tradeable",
        armed={2: {"non_tradeable": True}},
        expect=expect_non_tradeable,
        until=non_tradeable_seen,
    ),
    Case("http_5xx_at_startup", knobs={"http_status": [500, 503]}, expect=expect_trading),
    Case("order_503", armed={2: {"http_status": [503]}}, expect=expect_trading),
    Case("order_502_then_504_on_lookup", armed={2: {"http_status": [502, 504]}}, expect=expect_trading),
    Case("order_429_retry_after", armed={2: {"http_status": [429], "retry_after_secs": 0.2}}, expect=expect_trading),
    Case("order_response_dropped", armed={2: {"drop_order_response": 1}}, expect=expect_trading),
    Case("slow_responses", armed={2: {"slow_secs": 0.2}}, expect=expect_trading),
    Case("partial_fill", armed={1: {"fill_ratio": 0.5}, 2: {"fill_ratio": 1.0}}, expect=expect_partial),
    Case("over_fill", armed={1: {"fill_ratio": 1.5}, 2: {"fill_ratio": 1.0}}, expect=expect_overfill),
    Case(
        "reject_insufficient_margin",
        armed={2: {"reject_reason": "INSUFFICIENT_MARGIN"}, 3: {"reject_reason": None}},
        expect=expect_rejected,
    ),
    Case(
        "reject_market_halted",
        armed={2: {"reject_reason": "MARKET_HALTED"}, 3: {"reject_reason": None}},
        expect=expect_rejected,
    ),
    Case("duplicated_transactions", knobs={"duplicate_transactions": True}, expect=expect_duplicates_ignored),
    Case("out_of_order_transactions", knobs={"reverse_transactions": True}, expect=expect_trading),
    Case("manual_trade_while_running", during=manual_when(2, 30_000.0), expect=expect_manual_handled),
    Case(
        "documented_fills_without_trade_prices",
        knobs={"per_trade_price": False, "legacy_price_status": True},
        expect=expect_documented_fills_applied,
    ),
    Case(
        "stream_dropped_gap_backfilled",
        knobs={"drop_stream_after_lines": 300, "lost_on_drop": 40},
        expect=expect_backfill,
        until=backfilled_and_done,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_single_run_fault(case, tmp_path, spec):
    async def go():
        rig = Rig(tmp_path, spec, **case.broker)
        await rig.start()
        try:
            emu = rig.emu
            emu.prices = await asyncio.to_thread(prices, rig.cfg, case.days)
            for k, v in case.knobs.items():
                setattr(emu.knobs, k, v)
            for n, kn in case.armed.items():
                emu.arm_on_order(n, **kn)
            until = case.until or last_price_done
            during = (lambda d: case.during(d, emu)) if case.during else None
            out = await rig.run(lambda d: until(d, emu), timeout=45, during=during)
            assert out.error is None, repr(out.error)
            rig.check()
            if case.expect:
                case.expect(rig, out)
        finally:
            await rig.close()

    asyncio.run(go())


def test_long_disconnect_backfilled_from_paged_minute_candles(tmp_path, spec, monkeypatch):
    """Issue 13 §1: a gap longer than one S5 request may hold (v20 refuses more than 5000
    candles) comes back from M1 candles, page by page: every hour becomes a bar."""
    from stairway.daemon.brokers.oanda.broker import OandaBroker

    monkeypatch.setattr(OandaBroker, "CANDLES_PAGE", 20)  # S5 up to 100 s; M1 pages of 20 candles

    async def go():
        rig = Rig(tmp_path, spec)
        await rig.start()
        try:
            rig.emu.prices = await asyncio.to_thread(prices, rig.cfg, 10)
            rig.emu.knobs.drop_stream_after_lines, rig.emu.knobs.lost_on_drop = 300, 60  # 12 hours lost
            out = await rig.run(lambda d: backfilled_and_done(d, rig.emu), timeout=45)
            assert out.error is None, repr(out.error)
            rig.check()
            expect_backfill(rig, out)
            assert rig.emu.candle_requests >= 1 + 3  # warm start, then 60 minute candles (12 h) in pages of 20
        finally:
            await rig.close()

    asyncio.run(go())


def test_clock_jump_blocks_entries_as_stale(tmp_path, spec):
    """The wall clock jumps 3 days ahead of the quotes: every later decision is refused as
    stale data; nothing is sent twice and the book still equals the broker."""

    async def go():
        rig = Rig(tmp_path, spec)
        await rig.start()
        try:
            rig.emu.prices = await asyncio.to_thread(prices, rig.cfg, 9)
            at_jump = []

            async def during(d):
                if not at_jump and rig.emu.order_requests >= 2 and not d.parts.router.busy():
                    rig.clock_offset_ns = 3 * 86400 * 10**9
                    at_jump.append(rig.emu.positions.get("EUR_USD", 0.0))

            out = await rig.run(lambda d: last_price_done(d, rig.emu), timeout=45, during=during)
            assert out.error is None
            rig.check()
            # after the jump only reductions pass (closing is always allowed): never larger
            assert abs(rig.emu.positions.get("EUR_USD", 0.0)) <= abs(at_jump[0])
            assert "stale_data" in risk_kinds(rig)
        finally:
            await rig.close()

    asyncio.run(go())


def test_pricing_stream_down_shows_broker_disconnected_then_recovers(tmp_path, spec):
    async def go():
        rig = Rig(tmp_path, spec)
        await rig.start()
        try:
            rig.emu.prices = await asyncio.to_thread(prices, rig.cfg, 12)
            state = {"seen": set()}

            async def during(d):
                emu = rig.emu
                if "down" not in state and emu.order_requests >= 2 and not d.parts.router.busy():
                    state["down"] = emu.order_requests
                    emu.knobs.refuse_streams = True
                    emu.knobs.drop_stream_after_lines = 1
                elif "down" in state and "up" not in state:
                    state["seen"].update(h for h in d.view.health() if h.startswith("broker disconnected"))
                    if state["seen"]:
                        state["up"] = True
                        emu.knobs.refuse_streams = False

            out = await rig.run(lambda d: "up" in state and last_price_done(d, rig.emu), timeout=45, during=during)
            assert out.error is None
            assert state["seen"] == {"broker disconnected: oanda feed disconnected"}
            assert out.daemon.parts.feed.reconnects >= 1 and not any("disconnected" in h for h in out.health)
            assert rig.emu.order_requests > state["down"]  # trading resumed after the outage
            rig.check()
        finally:
            await rig.close()

    asyncio.run(go())


def test_transaction_stream_wakes_reconciliation_for_a_manual_trade(tmp_path, spec):
    """Periodic passes and the emergency check 5 minutes apart: a trade made by hand at the
    broker is still reconciled within a second, woken by the transaction stream."""

    async def go():
        rig = Rig(tmp_path, spec, emergency_check_secs=300.0)
        await rig.start()
        try:
            svc = rig.cfg.service.model_copy(update={"reconcile_secs": 300.0})
            rig.cfg = rig.cfg.model_copy(update={"service": svc})
            rig.emu.prices = await asyncio.to_thread(prices, rig.cfg, 12)
            state = {}

            async def during(d):
                if "manual" not in state and rig.emu.order_requests >= 2 and not d.parts.router.busy():
                    held = rig.emu.positions.get("EUR_USD", 0.0)
                    state["manual"] = asyncio.get_running_loop().time()
                    rig.emu.manual_trade("EUR_USD", -held / 2 if held else 30_000.0)

            def fixed(d):
                return "manual" in state and any(
                    e[0] == "fill" and e[1] in ("adopt_size", "adopt_unknown", "flatten_unknown")
                    for e in reconcile_events(rig)
                )

            out = await rig.run(fixed, timeout=20, during=during)
            assert out.error is None and fixed(out.daemon)
            assert out.daemon.parts.bundle.parts["transactions"].fills_seen >= 3  # our own fills and the manual one
            assert asyncio.get_running_loop().time() - state["manual"] < 5.0
        finally:
            await rig.close()

    asyncio.run(go())


@pytest.mark.parametrize("reconcile_secs,emergency_secs", [(300.0, 0.3), (0.3, 300.0)])
def test_manual_trade_above_the_maximum_is_cut_back(reconcile_secs, emergency_secs, tmp_path, spec):
    """Someone adds 30 % to our full position by hand: the size check (the 30-second
    emergency one, or the reconciliation pass the fill wakes) flattens the excess."""

    async def go():
        rig = Rig(tmp_path, spec, emergency_check_secs=emergency_secs)
        await rig.start()
        try:
            svc = rig.cfg.service.model_copy(update={"reconcile_secs": reconcile_secs})
            rig.cfg = rig.cfg.model_copy(update={"service": svc})
            rig.emu.prices = await asyncio.to_thread(prices, rig.cfg, 12)
            state = {}

            async def during(d):
                held = rig.emu.positions.get("EUR_USD", 0.0)
                if "manual" not in state and abs(held) == 100_000 and not d.parts.router.busy():
                    state["manual"] = held
                    rig.emu.manual_trade("EUR_USD", 0.3 * held)

            out = await rig.run(lambda d: "manual" in state and last_price_done(d, rig.emu), timeout=45, during=during)
            assert out.error is None and "manual" in state
            rig.check()
            cuts = [e for e in reconcile_events(rig) if e[1] == "flatten_excess"]
            assert cuts and cuts[0][3] == pytest.approx(1.3 * state["manual"])
            assert cuts[0][4] == pytest.approx(-0.3 * state["manual"])
        finally:
            await rig.close()

    asyncio.run(go())


def test_revoked_token_stops_the_daemon_then_a_restart_resolves_the_order(tmp_path, spec):
    """A 401 is fatal: the daemon stops with the reason raised; the order it was sending
    is journaled 'new'; after the token is fixed a restart finds the broker never got it
    (journal: not_sent) and nothing is resent."""

    async def go():
        rig = Rig(tmp_path, spec)
        await rig.start()
        try:
            rig.emu.prices = await asyncio.to_thread(prices, rig.cfg, 9)
            good = rig.emu.token
            revoked = []

            async def during(d):
                if not revoked and rig.emu.order_requests >= 2 and not d.parts.router.busy():
                    rig.emu.token = "revoked"
                    revoked.append(rig.emu.order_requests)

            out = await rig.run(lambda d: False, timeout=30, during=during)
            # the task's own error, not an ExceptionGroup around it (one clear line at the CLI)
            assert isinstance(out.error, FatalError) and "401" in str(out.error), repr(out.error)
            rig.emu.token = good
            with rig.db() as c:
                open_before = [
                    r[0] for r in c.execute("SELECT state FROM order_journal WHERE state IN ('new', 'unknown')")
                ]
            out2 = await rig.run(lambda d: d.parts.reconciler.ready and not d.parts.router.busy(), timeout=20)
            assert out2.error is None
            info = rig.check()
            if open_before:
                assert "not_sent" in info["journal"].values()
        finally:
            await rig.close()

    asyncio.run(go())


def test_price_bounds_reach_oanda_and_a_bounds_violation_is_counted_not_resent(tmp_path, spec):
    """Issue 21 §2: every decision's market order carries priceBound (the emulator refuses
    one with more decimals than the instrument's precision, as OANDA does); with a bound of
    0.1 pip the market has moved past it for some orders: OANDA cancels them
    (BOUNDS_VIOLATION), the journal says cancelled, each is counted and raised as a
    price_bound risk event, and none is sent again; the next decision decides afresh."""

    async def go():
        rig = Rig(tmp_path, spec)
        await rig.start_with(price_bound_pips=0.1)
        try:
            rig.emu.prices = await asyncio.to_thread(prices, rig.cfg, 12)
            out = await rig.run(lambda d: last_price_done(d, rig.emu), timeout=45)
            assert out.error is None
            rig.check()  # one POST per order, cancelled ones journaled cancelled, book == broker
            creates = [t for t in rig.emu.transactions if t["type"] == "MARKET_ORDER"]
            assert creates and all("priceBound" in t for t in creates)
            cancels = [t for t in rig.emu.transactions if t["type"] == "ORDER_CANCEL"]
            assert cancels and all(t["reason"] == "BOUNDS_VIOLATION" for t in cancels)
            c = out.daemon.slot.counters
            assert c.bound_cancels == len(cancels) and c.risk_events["price_bound"] == len(cancels)
            assert out.daemon.view.instrument("EUR_USD")["bound_cancels"] == len(cancels)  # /status, /metrics
            assert len(cancels) < len(creates)  # others filled within their bound
        finally:
            await rig.close()

    asyncio.run(go())


@pytest.mark.parametrize(
    "protection", [{"stop_pips": 6.0}, {"stop_atr_multiple": 0.6, "stop_atr_bars": 12}], ids=["fixed", "atr"]
)
def test_every_entry_carries_its_stop_to_oanda_and_a_stop_filled_there_is_booked(tmp_path, spec, protection):
    """Issue 21 §1 at OANDA: with execution.stop_pips (or stop_atr_multiple: the distance from
    the range, different at each entry) each entry order carries stopLossOnFill (the
    instrument's precision, our client id + "-stop"); OANDA holds the stop with the trade and
    fills it when the price reaches it (the emulator at the quote through it); the fill is ours:
    it moves the book (a stop_filled risk event), reconciliation finds nothing to fix, and
    nothing is ever sent twice."""

    async def go():
        rig = Rig(tmp_path, spec)
        await rig.start_with(**protection)
        try:
            rig.emu.prices = await asyncio.to_thread(prices, rig.cfg, 12)
            out = await rig.run(lambda d: last_price_done(d, rig.emu), timeout=45)
            assert out.error is None
            rig.check()  # book == broker after every stop, one POST per order, all fills recorded
            txs = rig.emu.transactions
            creates = [t for t in txs if t["type"] == "MARKET_ORDER"]
            with_stop = {t["id"] for t in creates if "stopLossOnFill" in t}
            opened = [t for t in txs if t["type"] == "ORDER_FILL" and t["orderID"] in with_stop and "tradeOpened" in t]
            stops = [t for t in txs if t["type"] == "STOP_LOSS_ORDER"]
            # every trade a decision's order opened has its stop at the broker (a correction carries
            # none: a trade it opens in a race gets one from the next pass, a stop_replaced row)
            assert {t["tradeOpened"]["tradeID"] for t in opened} <= {t["tradeID"] for t in stops} and len(opened) > 3
            assert stops and all(t["clientExtensions"]["id"].endswith("-stop") for t in stops)
            # the stop's distance from the order's bound (the decision's quote + 10 pips)
            gaps = {
                round(abs(float(t["priceBound"]) - float(t["stopLossOnFill"]["price"])), 5)
                for t in creates
                if "stopLossOnFill" in t
            }
            assert len(gaps) > 3 if "stop_atr_multiple" in protection else len(gaps) >= 1
            assert all(len(t["price"].split(".")[1]) <= 5 for t in stops)
            stop_fills_booked(rig, out, creates, "STOP_LOSS_ORDER")
        finally:
            await rig.close()

    asyncio.run(go())


def test_a_trailing_stop_goes_to_oanda_with_each_entry_and_its_fill_there_is_booked(tmp_path, spec):
    """Issue 21 §1 (trailingStopLossOnFill): with execution.stop_trailing each entry order carries
    a trailing stop of the decision's distance (6 pips, at the price precision, our id + "-stop")
    instead of a fixed one; OANDA keeps it behind the price (the emulator as the paper broker
    and the env do: armed at the fill quote, following the bid up or the ask down, never back)
    and fills it when the price turns (TRAILING_STOP_LOSS_ORDER); the fill is ours: booked as
    a stop_filled risk event, book = broker, nothing sent twice, nothing misread."""

    async def go():
        rig = Rig(tmp_path, spec)
        await rig.start_with(stop_pips=6.0, stop_trailing=True)
        try:
            rig.emu.prices = await asyncio.to_thread(prices, rig.cfg, 12)
            out = await rig.run(lambda d: last_price_done(d, rig.emu), timeout=45)
            assert out.error is None
            rig.check()
            txs = rig.emu.transactions
            creates = [t for t in txs if t["type"] == "MARKET_ORDER"]
            trailing = [t for t in creates if "trailingStopLossOnFill" in t]
            assert trailing and not any("stopLossOnFill" in t for t in creates)
            assert {t["trailingStopLossOnFill"]["distance"] for t in trailing} == {"0.00060"}
            assert all(t["trailingStopLossOnFill"]["clientExtensions"]["id"].endswith("-stop") for t in trailing)
            placed = [t for t in txs if t["type"] == "TRAILING_STOP_LOSS_ORDER"]
            assert placed
            fired = stop_fills_booked(rig, out, creates, "TRAILING_STOP_LOSS_ORDER")
            # it trailed: some closed their trade beyond its entry, which a stop fixed 6 pips behind never can
            opened = {t["tradeOpened"]["tradeID"]: float(t["price"]) for t in txs if t.get("tradeOpened")}
            gains = [
                (float(f["price"]) - opened[c["tradeID"]]) * (1 if float(c["units"]) < 0 else -1)
                for f in fired
                for c in f.get("tradesClosed", [])
                if c["tradeID"] in opened
            ]
            assert gains and max(gains) > 0.0, gains
        finally:
            await rig.close()

    asyncio.run(go())
