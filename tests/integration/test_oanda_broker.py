"""The OANDA adapter against the local v20 emulator: no duplicate orders under ambiguous
outcomes, 429/5xx handling, rejects, over-fills, manual trades and reconciliation."""

import asyncio
import time

import pytest

from stairway.core.broker import OrderState
from stairway.core.errors import FatalError, OrderRejected, TransientError
from stairway.core.types import OrderIntent, Side, client_order_id
from stairway.daemon.brokers.oanda.broker import OandaBroker
from stairway.daemon.brokers.oanda.parsing import Heartbeat, PriceLine
from stairway.daemon.reconciliation import UnknownPositionPolicy, reconcile
from stairway.emulators.oanda_v20 import OandaEmulator


def intent(units=100_000.0, side=Side.BUY, seq=0):
    return OrderIntent(
        client_order_id("EUR_USD", 1_506_934_800 * 10**9, seq), "EUR_USD", side, units, 1_506_934_800 * 10**9, 0
    )


def run(scenario, token="test-token", **knobs):
    async def go():
        emu = OandaEmulator()
        for k, v in knobs.items():
            setattr(emu.knobs, k, v)
        url = await emu.start()
        broker = OandaBroker(url, emu.account, token, timeout_secs=2.0)
        await broker.connect()
        try:
            return await scenario(emu, broker)
        finally:
            await broker.close()
            await emu.stop()

    return asyncio.run(go())


def test_submit_fills_and_positions_agree():
    async def s(emu, b):
        rep = await b.submit(intent())
        return rep, await b.positions(), emu.order_requests

    rep, pos, n = run(s)
    assert rep.state is OrderState.FILLED and rep.filled_units == 100_000.0 and n == 1
    assert [(p.instrument, p.units) for p in pos] == [("EUR_USD", 100_000.0)]


@pytest.mark.parametrize("knobs", [{"drop_order_response": 1}, {"http_status": [503]}, {"http_status": [502, 504]}])
def test_ambiguous_outcome_never_duplicates_the_order(knobs):
    async def s(emu, b):
        rep = await b.submit(intent())
        return rep, emu.order_requests, emu.positions

    rep, n, positions = run(s, **knobs)
    assert n == 1 and positions == {"EUR_USD": 100_000.0}  # exactly one order reached the book
    assert rep.state is OrderState.FILLED and rep.filled_units == 100_000.0


def test_resubmitting_the_same_client_id_returns_the_first_order():
    async def s(emu, b):
        first = await b.submit(intent())
        again = await b.submit(intent())  # e.g. after a restart between send and acknowledgement
        return first, again, emu.order_requests

    first, again, n = run(s)
    assert n == 1 and again.broker_order_id == first.broker_order_id and again.filled_units == 100_000.0


def test_429_honours_retry_after():
    async def s(emu, b):
        t0 = time.monotonic()
        rep = await b.submit(intent())
        return rep, time.monotonic() - t0, emu.order_requests

    rep, waited, n = run(s, http_status=[429], retry_after_secs=0.3)
    assert rep.state is OrderState.FILLED and waited >= 0.3 and n == 1


@pytest.mark.parametrize("reason", ["INSUFFICIENT_MARGIN", "MARKET_HALTED"])
def test_rejects_are_not_retried(reason):
    async def s(emu, b):
        with pytest.raises(OrderRejected, match=reason):
            await b.submit(intent())
        return emu.order_requests, emu.positions

    n, positions = run(s, reject_reason=reason)
    assert n == 1 and positions.get("EUR_USD", 0.0) == 0.0


@pytest.mark.parametrize("ratio, state", [(1.5, OrderState.FILLED), (0.4, OrderState.PARTIALLY_FILLED)])
def test_partial_and_over_fills_reported_as_filled(ratio, state):
    async def s(emu, b):
        return await b.submit(intent())

    rep = run(s, fill_ratio=ratio)
    assert rep.filled_units == pytest.approx(100_000.0 * ratio) and rep.state is state


def test_manual_trade_while_down_is_found_and_reconciled():
    async def s(emu, b):
        await b.submit(intent())
        start = b.last_transaction_id
        emu.manual_trade("EUR_USD", -40_000.0)  # a manual partial close at the broker
        emu.manual_trade("USD_JPY", 10_000.0)  # and a position we never opened
        return (await b.fills(start)).fills, await b.positions()

    fills, positions = run(s)
    assert [(f.instrument, f.units, f.client_order_id) for f in fills] == [
        ("EUR_USD", -40_000.0, None),
        ("USD_JPY", 10_000.0, None),
    ]
    fixes = {c.instrument: c for c in reconcile({"EUR_USD": 100_000.0}, positions, UnknownPositionPolicy.FLATTEN)}
    assert fixes["EUR_USD"].kind == "adopt_size" and fixes["EUR_USD"].book_units == 60_000.0
    assert fixes["USD_JPY"].kind == "flatten_unknown" and fixes["USD_JPY"].order_units == -10_000.0


def test_bad_token_is_fatal_and_never_printed():
    async def s(emu, b):
        with pytest.raises(FatalError) as e:
            await b.positions()
        return str(e.value), repr(b)

    msg, shown = run(s, token="wrong-secret")
    assert "401 unauthorized" in msg and "wrong-secret" not in msg and "wrong-secret" not in shown


def test_price_stream_parsed_and_a_drop_is_transient():
    async def s(emu, b):
        emu.prices = [(1_506_934_800 * 10**9 + k * 10**9, 1.1733 + k * 1e-5, 1.1734 + k * 1e-5) for k in range(12)]
        got = [x async for x in b.stream_prices(["EUR_USD"])]
        emu.cursor = 0  # replay the same prices on the next connection
        emu.knobs.drop_stream_after_lines = 3
        partial = []
        with pytest.raises(TransientError, match="stream dropped"):
            async for x in b.stream_prices(["EUR_USD"]):
                partial.append(x)
        return got, partial

    got, partial = run(s)
    prices = [x for x in got if isinstance(x, PriceLine)]
    assert len(prices) == 12 and sum(isinstance(x, Heartbeat) for x in got) == 2
    assert prices[5].bid == pytest.approx(1.17335) and prices[5].tradeable
    assert len(partial) <= 3 and partial == prices[: len(partial)]  # lines in flight at the cut may be lost


@pytest.mark.parametrize("knob", [{"drop_stream_after_lines": 4}, {"silent_after_lines": 4}])
def test_feed_reconnects_after_a_drop_or_silence_without_losing_the_stream(knob):
    from stairway.core.broker import FeedStatus
    from stairway.daemon.brokers.oanda.feed import OandaFeed

    async def s(emu, b):
        emu.prices = [(1_506_934_800 * 10**9 + k * 10**9, 1.1733, 1.1734 + k * 1e-5) for k in range(10)]
        for k, v in knob.items():
            setattr(emu.knobs, k, v)
        feed = OandaFeed(b, ["EUR_USD"], heartbeat_timeout_secs=0.3, backoff_base_secs=0.05)
        got = []
        async for inst, batch in feed.ticks():
            assert inst == "EUR_USD"
            got.append(int(batch["ts_ns"][0]) // 10**9 - 1_506_934_800)
            if got[-1] == 9:
                break
        return got, feed.reconnects, emu.connections, feed.status

    got, reconnects, connections, status = run(s)
    # quotes in flight when the connection died are gone (candle backfill covers bars);
    # after the reconnect the stream resumes: in order, no duplicates, nothing after the gap lost
    assert got[0] == 0 and got[-4:] == [6, 7, 8, 9] and got == sorted(set(got))
    assert reconnects == 1 and connections == 2 and status is FeedStatus.CONNECTED


def test_account_summary_is_parsed():
    async def s(emu, b):
        return await b.account()

    acct = run(s)
    assert (acct.balance, acct.equity, acct.margin_used, acct.currency) == (100_000.0, 100_000.0, 0.0, "USD")


def test_daily_financing_is_reported_and_a_malformed_one_never_blocks_fills():
    async def s(emu, b):
        await b.submit(intent())
        start = b.last_transaction_id
        good = emu.daily_financing(2.6, -0.6)
        emu._tx("DAILY_FINANCING", financing="-1.0", positionFinancings=[{"financing": "-1.0"}])  # no instrument
        emu.manual_trade("EUR_USD", -40_000.0)
        return good, await b.fills(start), b.bad_financing

    good, batch, bad = run(s)
    assert [(f.instrument, f.units) for f in batch.fills] == [("EUR_USD", -40_000.0)]  # the fill behind it arrived
    assert [(f.transaction_id, f.instrument, f.amount) for f in batch.financing] == [
        (good["id"], "EUR_USD", float(good["positionFinancings"][0]["financing"]))
    ]
    assert batch.financing[0].amount < 0 and bad == 1  # a long paying 2.6 %/yr; the bad one counted


def test_the_brokers_current_prices_are_its_last_streamed_ones():
    """quotes(): GET .../pricing, the (bid, ask) the broker marks open trades at now (for
    reconciliation's open-P&L check); an instrument it has not priced is left out."""

    async def s(emu, b):
        emu.quotes["EUR_USD"] = (1.17012, 1.17025)
        return await b.quotes(["EUR_USD", "GBP_USD"])

    assert run(s) == {"EUR_USD": (1.17012, 1.17025)}


@pytest.mark.parametrize(
    "body, fragment",
    [
        ({"prices": "none"}, "pricing: prices = 'none': expected a list of prices"),
        ({"prices": [{"instrument": "EUR_USD", "bids": [], "asks": []}]}, "PRICE EUR_USD.closeoutBid: missing"),
    ],
)
def test_a_bad_pricing_answer_is_named(body, fragment):
    from stairway.core.errors import BadPayload

    async def s(emu, b):
        with pytest.raises(BadPayload) as e:
            await b.quotes(["EUR_USD"])
        return str(e.value)

    assert fragment in run(s, pricing_body=body)
