"""The TWS wire emulator (stairway/emulators/tws.py) checked message by message against what the
real ib_async client decodes (issue 21 §4), as the OANDA emulator was against OANDA's own
payloads: every message it sends goes through ib_async's Decoder without an error, and
arrives as the values it was given (a fill's price, orderRef and commission, a position, an
account value, a historical bar, a quote, an error code)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

import ib_async
import pytest
from ib_async import IB, Forex, LimitOrder, MarketOrder, StopOrder

from stairway.emulators.tws import SERVER_VERSION, TwsEmulator

T0 = 1_506_934_800 * 10**9  # 2017-10-02 09:00 UTC


class Errors(logging.Handler):
    """ib_async's decoder logs (and swallows) a message it cannot decode."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record.getMessage())


async def until(ib: IB, cond, secs: float = 5.0) -> None:
    """Wait, on the client's ``updateEvent`` (each network packet it has handled), until
    ``cond()`` holds; fails after ``secs``."""

    async def wait() -> None:
        while not cond():
            await ib.updateEvent

    await asyncio.wait_for(wait(), secs)


def test_every_emulated_message_decodes_in_ib_async_as_sent():
    decode_errors = Errors()
    logging.getLogger("ib_async.Decoder").addHandler(decode_errors)
    ib_errors: list[tuple[int, int]] = []

    async def go():
        ib_async.util.getLoop.cache_clear()
        gw = TwsEmulator("EURUSD", "USDJPY")
        gw.prices = [(T0 + k * 60 * 10**9, 1.17 + k * 1e-5, 1.17 + k * 1e-5 + 1e-4) for k in range(180)]
        gw.server_positions["USDJPY"], gw.avg_price["USDJPY"] = -50_000.0, gw.quote("USDJPY")[1]  # held before
        port = await gw.start()
        ib = IB()
        ib.errorEvent += lambda req_id, code, *_: ib_errors.append((req_id, code))
        try:
            await ib.connectAsync("127.0.0.1", port, clientId=17, timeout=5)
            assert ib.client.serverVersion() == SERVER_VERSION and ib.managedAccounts() == ["DU123"]
            # the position held before the session, from ib_async's own start-up requests
            [pos] = ib.positions()
            assert (pos.contract.symbol, pos.contract.currency, pos.position) == ("USD", "JPY", -50_000.0)
            eur, unknown = Forex("EURUSD"), Forex("EURCHF")
            assert await ib.qualifyContractsAsync(eur, unknown) == [eur, None]
            assert eur.conId == 12087792 and eur.localSymbol == "EUR.USD"
            ticker = ib.reqMktData(eur)
            streamer = asyncio.create_task(gw.stream(0.002))
            await until(ib, lambda: gw.cursor >= 30 and ticker.bid == gw.quote("EURUSD")[0])
            assert ticker.ask == gw.quote("EURUSD")[1] and ticker.bidSize == 1_000_000
            streamer.cancel()
            bid, ask = gw.quote("EURUSD")
            trade = ib.placeOrder(eur, MarketOrder("BUY", 100_000, orderRef="c-1", tif="IOC"))
            await until(ib, trade.isDone)
            assert trade.orderStatus.status == "Filled" and trade.orderStatus.avgFillPrice == ask
            await until(ib, lambda: any(f.commissionReport.commission for f in ib.fills()))
            [fill] = ib.fills()
            e = fill.execution
            assert (e.orderRef, e.side, e.shares, e.price, e.permId) == (
                "c-1",
                "BOT",
                100_000.0,
                ask,
                trade.orderStatus.permId,
            )
            assert e.time == dt.datetime.fromtimestamp(gw.now_ns / 1e9, dt.UTC)
            assert fill.commissionReport.commission == 2.0 and fill.commissionReport.currency == "USD"
            await until(ib, lambda: any(p.contract.symbol == "EUR" for p in ib.positions()))
            assert {p.contract.symbol: p.position for p in ib.positions()} == {"EUR": 100_000.0, "USD": -50_000.0}
            # a limit the market has left: cancelled, nothing filled
            far = ib.placeOrder(eur, LimitOrder("SELL", 100_000, bid + 0.01, orderRef="c-2", tif="IOC"))
            await until(ib, far.isDone)
            assert far.orderStatus.status == "Cancelled" and far.orderStatus.filled == 0
            # a rejection: error 201 on the order's id, the trade cancelled with the code in its log
            gw.reject_next = 1
            rejected = ib.placeOrder(eur, MarketOrder("BUY", 100_000, orderRef="c-3"))
            await until(ib, rejected.isDone)
            assert (rejected.order.orderId, 201) in ib_errors and any(x.errorCode == 201 for x in rejected.log)
            # a resting order, cancelled
            gw.hold_fills = True
            resting = ib.placeOrder(eur, MarketOrder("SELL", 100_000, orderRef="c-4"))
            await until(ib, lambda: resting.orderStatus.status == "Submitted")
            ib.cancelOrder(resting.order)
            await until(ib, resting.isDone)
            assert resting.orderStatus.status == "Cancelled"
            values = {v.tag: float(v.value) for v in await ib.accountSummaryAsync("DU123")}
            assert values["TotalCashValue"] == 100_000.0 - 2.0  # one commission; nothing realised yet
            open_pnl = 100_000.0 * (gw.quote("EURUSD")[0] - ask)  # the long marked at the bid
            assert values["NetLiquidation"] == pytest.approx(values["TotalCashValue"] + open_pnl, abs=0.01)
            execs = await ib.reqExecutionsAsync()
            assert [f.execution.orderRef for f in execs] == ["c-1"]
            end = dt.datetime.fromtimestamp(gw.now_ns / 1e9, dt.UTC)
            bars = await ib.reqHistoricalDataAsync(eur, end, "1 D", "1 hour", "BID", False, 2)
            assert bars and bars[0].date == dt.datetime.fromtimestamp(T0 / 1e9, dt.UTC)
            first_hour = [
                p[1] for p in gw.prices if p[0] < min(T0 + 3600 * 10**9, gw.now_ns)
            ]  # up to the end, exclusive
            assert (bars[0].open, bars[0].high, bars[0].low, bars[0].close) == (
                first_hour[0],
                max(first_hour),
                min(first_hour),
                first_hour[-1],
            )
            await gw.night_restart(down_secs=0.05, client_id_in_use=0, notices=False)
        finally:
            ib.disconnect()
            await gw.close()
        return gw

    try:
        gw = asyncio.run(go())
    finally:
        logging.getLogger("ib_async.Decoder").removeHandler(decode_errors)
    assert decode_errors.records == []
    # every reply the emulator claims (the module's table), each sent at least once and decoded
    assert set(gw.sent) >= {1, 3, 4, 9, 10, 11, 15, 17, 52, 53, 54, 55, 59, 61, 62, 63, 64, 74, 102}
    assert set(gw.sent) <= set(ib_async.decoder.Decoder(None, SERVER_VERSION).handlers)
    assert (-1, 1100) in ib_errors  # the restart's notice reached the client before its socket closed


def test_a_resting_stop_is_listed_as_open_decoded_and_triggered_by_the_market():
    """A stop order (STP, GTC) rests: openOrder 5 decodes in ib_async with its trigger price,
    quantity, orderRef and status; a client connecting afresh finds it among its open orders
    (reqOpenOrders at start-up); a quote at the stop fills it at that quote, down to the cent,
    while no client is connected too."""
    decode_errors = Errors()
    logging.getLogger("ib_async.Decoder").addHandler(decode_errors)

    async def go():
        ib_async.util.getLoop.cache_clear()
        gw = TwsEmulator("EURUSD")
        gw.move_market("EURUSD", 1.1700, 1.1701)
        port = await gw.start()
        ib = IB()
        try:
            await ib.connectAsync("127.0.0.1", port, clientId=3, timeout=5)
            eur = Forex("EURUSD")
            await ib.qualifyContractsAsync(eur)
            entry = ib.placeOrder(eur, MarketOrder("BUY", 100_000, orderRef="e-1", tif="IOC"))
            await until(ib, entry.isDone)
            stop = ib.placeOrder(eur, StopOrder("SELL", 100_000, 1.1650, orderRef="e-1-stop", tif="GTC"))
            await until(ib, lambda: stop.orderStatus.status == "Submitted")
            assert gw.sent[5] == 1 and not stop.isDone()
            gw.move_market("EURUSD", 1.1660, 1.1661)  # not there yet
            assert not stop.isDone()
            ib.disconnect()
            ib_async.util.getLoop.cache_clear()
            again = IB()
            await again.connectAsync("127.0.0.1", port, clientId=3, timeout=5)
            [found] = again.openTrades()
            o = found.order
            assert (o.orderType, o.action, o.totalQuantity, o.auxPrice, o.orderRef, o.tif) == (
                "STP", "SELL", 100_000.0, 1.1650, "e-1-stop", "GTC"
            )  # fmt: skip
            assert found.orderStatus.status == "Submitted" and found.contract.symbol == "EUR"
            again.disconnect()
            gw.move_market("EURUSD", 1.1645, 1.1646)  # through the stop while nobody is connected
            assert gw.server_position == 0.0 and gw.executions[-1].price == 1.1645
            assert gw.executions[-1].order.order_ref == "e-1-stop" and gw.executions[-1].side == "SLD"
        finally:
            ib.disconnect()
            await gw.close()

    try:
        asyncio.run(go())
    finally:
        logging.getLogger("ib_async.Decoder").removeHandler(decode_errors)
    assert decode_errors.records == []


@pytest.mark.parametrize("versions", [b"v100..150", b"v180..190"])
def test_a_client_outside_the_server_version_is_closed(versions):
    """A client whose version range excludes the emulator's is disconnected at the handshake."""

    async def go():
        gw = TwsEmulator()
        port = await gw.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"API\0" + len(versions).to_bytes(4, "big") + versions)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 2)
        writer.close()
        await gw.close()
        return data

    assert asyncio.run(go()) == b""


def test_a_contract_the_gateway_does_not_know_stops_the_adapter_in_one_line():
    """The adapter qualifies its contracts on connect (ib_async refuses market data on one
    without a conId); one IB has no definition for is fatal, named, not retried for ever."""
    from stairway.core.errors import FatalError
    from stairway.daemon.brokers.ib.broker import IBBroker
    from stairway.daemon.config import IBConfig

    async def go():
        ib_async.util.getLoop.cache_clear()
        gw = TwsEmulator("EURUSD")  # serves EUR.USD only
        port = await gw.start()
        cfg = IBConfig(host="127.0.0.1", port=port, symbol="EUR", currency="CHF")
        broker = IBBroker(cfg, "EUR_CHF", max_connect_attempts=2)
        try:
            with pytest.raises(FatalError, match=r"IB does not know the contract\(s\) \['EURCHF'\]"):
                await broker.connect()
        finally:
            await broker.close()
            await gw.close()
        return gw

    gw = asyncio.run(go())
    assert gw.calls.count("req_contract_details") == 1 and gw.calls.count("req_mkt_data") == 0


def test_a_trailing_stop_is_refused_at_ib_before_anything_is_sent():
    """Trailing stops are OANDA's (execution.stop_trailing is refused for IB at start-up); the
    adapter's set_stop refuses one too, before touching the connection."""
    from stairway.core.errors import OrderRejected
    from stairway.daemon.brokers.ib.broker import IBBroker
    from stairway.daemon.config import IBConfig

    broker = IBBroker(IBConfig(host="127.0.0.1", port=1, symbol="EUR", currency="USD"), "EUR_USD")
    with pytest.raises(OrderRejected, match="a trailing stop at IB: not supported"):
        asyncio.run(broker.set_stop("EUR_USD", "EUR_USD", 1000.0, 1.1, "x-stop", trail=0.002))


def test_an_order_on_a_contract_not_traded_here_is_named_by_its_own_contract():
    """No first-instrument fallback: an order of ours on USD.JPY (placed when an earlier run's
    config traded it) reports USD_JPY, as its position does, never EUR_USD, the one instrument
    this connection trades."""
    from stairway.daemon.brokers.ib.broker import IBBroker
    from stairway.daemon.config import IBConfig

    async def go():
        ib_async.util.getLoop.cache_clear()
        gw = TwsEmulator("EURUSD", "USDJPY")
        gw.prices = [(T0 + k * 60 * 10**9, 1.17, 1.1701) for k in range(10)]
        port = await gw.start()
        broker = IBBroker(IBConfig(host="127.0.0.1", port=port, symbol="EUR", currency="USD"), "EUR_USD")
        try:
            await broker.connect()
            jpy = Forex("USDJPY")
            await broker.ib.qualifyContractsAsync(jpy)
            trade = broker.ib.placeOrder(jpy, MarketOrder("SELL", 20_000, orderRef="c-old", tif="IOC"))
            await until(broker.ib, trade.isDone)
            report = await broker.order_status("c-old")
            positions = {p.instrument: p.units for p in await broker.positions()}
            return report, positions, list(broker.contracts)
        finally:
            await broker.close()
            await gw.close()

    report, positions, traded = asyncio.run(go())
    assert traded == ["EUR_USD"]
    assert report is not None and report.instrument == "USD_JPY" and report.filled_units == -20_000
    assert positions == {"USD_JPY": -20_000.0}
