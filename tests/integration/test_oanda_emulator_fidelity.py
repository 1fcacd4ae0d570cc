"""Issue 9.14: the v20 emulator answers like OANDA. Its responses are checked against the
example responses that ship with oandapyV20 for every endpoint the adapter uses, its trade
bookkeeping against v20's rules (FIFO trades, entry-average prices, real trade ids, the
balance on every fill), and it is driven once by the real oandapyV20 client."""

from __future__ import annotations

import asyncio
import json
import threading

import aiohttp
import pytest

from stairway.emulators.oanda_v20 import OandaEmulator
from tests.oanda_examples import market_order_create_response, order_fill_examples, response


def kind(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    return type(v).__name__


def shape_problems(ours, example, where: str = "$") -> list[str]:
    """Fields present in both with a different JSON type, recursively; nulls we send."""
    out = []
    if ours is None:
        return [f"{where}: null"]
    if kind(ours) != kind(example):
        return [f"{where}: {kind(ours)} here, {kind(example)} in OANDA's example"]
    if isinstance(ours, dict):
        for k, v in ours.items():
            if v is None:
                out.append(f"{where}.{k}: null")
            elif k in example:
                out += shape_problems(v, example[k], f"{where}.{k}")
    elif isinstance(ours, list) and ours and example:
        for k, v in enumerate(ours):
            out += shape_problems(v, example[0], f"{where}[{k}]")
    return out


def missing(ours: dict, keys: set[str], where: str) -> list[str]:
    return [f"{where}.{k} missing" for k in sorted(keys - set(ours))]


@pytest.fixture()
def emu_http():
    """(emulator, base url, get/post coroutine runner) on a private loop."""
    loop = asyncio.new_event_loop()
    emu = OandaEmulator()
    url = loop.run_until_complete(emu.start())
    headers = {"Authorization": f"Bearer {emu.token}"}

    def call(method: str, path: str, body: dict | None = None):
        async def go():
            async with aiohttp.ClientSession(headers=headers) as s:
                async with s.request(method, f"{url}/{path}", json=body) as r:
                    return r.status, await r.json(content_type=None)

        return loop.run_until_complete(go())

    call.run = loop.run_until_complete  # for other coroutines on the emulator's loop
    yield emu, url, call
    loop.run_until_complete(emu.stop())
    loop.close()


def order(units: int, coid: str | None) -> dict:
    o = {
        "type": "MARKET",
        "instrument": "EUR_USD",
        "units": str(units),
        "timeInForce": "FOK",
        "positionFill": "DEFAULT",
    }
    if coid:
        o["clientExtensions"] = {"id": coid}
    return {"order": o}


def test_emulator_responses_match_oanda_examples_for_every_endpoint_the_adapter_uses(emu_http):
    emu, _, call = emu_http
    acct = f"v3/accounts/{emu.account}"
    problems = []
    fills = list(order_fill_examples().values())
    fill_example = {k: v for f in fills for k, v in f.items()}  # every field any example shows
    status, created = call("POST", f"{acct}/orders", order(10_000, "a-1"))
    assert status == 201
    ex = market_order_create_response()
    problems += shape_problems(created, ex, "POST orders")
    problems += missing(created, set(ex), "POST orders")
    problems += missing(created["orderFillTransaction"], set(ex["orderFillTransaction"]), "orderFillTransaction")
    problems += shape_problems(created["orderFillTransaction"], fill_example, "orderFillTransaction")
    status, od = call("GET", f"{acct}/orders/@a-1")
    ex = response("orders", "_v3_accounts_accountID_order_details")
    problems += shape_problems(od, ex, "GET orders/@id")
    problems += missing(
        od["order"],
        {"id", "createTime", "instrument", "state", "units", "type", "timeInForce", "positionFill"},
        "order",
    )
    status, since = call("GET", f"{acct}/transactions/sinceid?id=1")
    ex = response("transactions", "_v3_accounts_transaction_sinceid")
    problems += shape_problems({k: v for k, v in since.items() if k != "transactions"}, ex, "sinceid")
    for tx in since["transactions"]:
        same = [t for t in ex["transactions"] if t["type"] == tx["type"]]
        problems += shape_problems(
            tx, fill_example if tx["type"] == "ORDER_FILL" else (same[0] if same else {}), f"sinceid {tx['type']}"
        )
        problems += missing(tx, {"id", "time", "type", "accountID", "batchID", "userID"}, f"sinceid {tx['type']}")
    status, pos = call("GET", f"{acct}/openPositions")
    ex = response("positions", "_v3_accounts_accountID_openpositions")
    problems += shape_problems(pos, ex, "openPositions")
    ex_long = next(p["long"] for p in ex["positions"] if p["long"]["units"] != "0")
    problems += missing(pos["positions"][0]["long"], set(ex_long), "openPositions long")
    problems += missing(pos["positions"][0], set(ex["positions"][0]), "openPositions position")
    status, summary = call("GET", f"{acct}/summary")
    ex = response("accounts", "_v3_account_by_accountID_summary")
    problems += shape_problems(summary, ex, "summary")
    problems += missing(
        summary["account"],
        {"id", "currency", "balance", "NAV", "marginUsed", "openPositionCount", "lastTransactionID"},
        "summary.account",
    )
    # the streams and candles
    emu.prices = [(emu.now_ns + k * 10**9, 1.1 + k * 1e-4, 1.1002 + k * 1e-4) for k in range(12)]
    lines = call.run(stream_lines(emu, f"{acct}/pricing/stream?instruments=EUR_USD"))
    ex = response("pricing", "_v3_accounts_accountID_pricing_stream")
    ex_price = next(x for x in ex if x.get("type", "PRICE") == "PRICE")
    ex_hb = next(x for x in ex if x.get("type") == "HEARTBEAT")
    for x in lines:
        problems += shape_problems(x, ex_price if x["type"] == "PRICE" else ex_hb, f"pricing stream {x['type']}")
    problems += missing(next(x for x in lines if x["type"] == "PRICE"), set(ex_price) - {"type"}, "PRICE")
    status, pr = call("GET", f"{acct}/pricing?instruments=EUR_USD")
    ex = response("pricing", "_v3_accounts_accountID_pricing")
    problems += shape_problems(pr, ex, "pricing")
    problems += missing(
        pr["prices"][0], set(ex["prices"][0]) - {"quoteHomeConversionFactors", "unitsAvailable"}, "pricing"
    )
    status, candles = call(
        "GET",
        "v3/instruments/EUR_USD/candles?granularity=S5&price=BA&from=2017-10-02T09:00:00Z&to=2017-10-02T09:05:00Z",
    )
    ex = response("instruments", "_v3_instruments_instrument_candles")
    problems += shape_problems(candles, ex, "candles")
    problems += missing(candles["candles"][0], set(ex["candles"][0]) - {"mid"}, "candle")
    problems += shape_problems(candles["candles"][0]["bid"], ex["candles"][0]["mid"], "candle.bid")
    assert not problems, "\n".join(problems)


async def stream_lines(emu, path: str) -> list[dict]:
    """Every line of a pricing stream (the emulator ends it when its prices run out)."""
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {emu.token}"}) as s:
        async with s.get(f"http://127.0.0.1:{emu.port}/{path}") as r:
            return [json.loads(x) async for x in r.content if x.strip()]


def test_emulator_keeps_trades_like_v20(emu_http):
    emu, _, call = emu_http
    acct = f"v3/accounts/{emu.account}"
    emu.ask, emu.bid = 1.10000, 1.09990
    _, a = call("POST", f"{acct}/orders", order(10_000, "a-1"))
    emu.ask, emu.bid = 1.20000, 1.19990
    _, b = call("POST", f"{acct}/orders", order(10_000, "a-2"))
    first, second = (
        a["orderFillTransaction"]["tradeOpened"]["tradeID"],
        b["orderFillTransaction"]["tradeOpened"]["tradeID"],
    )
    assert first == a["orderFillTransaction"]["id"] and second == b["orderFillTransaction"]["id"] and first != second
    _, pos = call("GET", f"{acct}/openPositions")
    long = pos["positions"][0]["long"]
    assert float(long["averagePrice"]) == pytest.approx(1.15) and long["tradeIDs"] == [first, second]
    emu.ask, emu.bid = 1.30010, 1.30000
    _, c = call("POST", f"{acct}/orders", order(-15_000, "a-3"))  # closes the first, reduces the second
    fill = c["orderFillTransaction"]
    assert [t["tradeID"] for t in fill["tradesClosed"]] == [first]
    assert fill["tradeReduced"]["tradeID"] == second and fill["tradeReduced"]["units"] == "-5000"
    realized = 10_000 * (1.3 - 1.1) + 5_000 * (1.3 - 1.2)
    assert float(fill["pl"]) == pytest.approx(realized)
    assert float(fill["accountBalance"]) == pytest.approx(100_000 + realized)
    _, pos = call("GET", f"{acct}/openPositions")
    long = pos["positions"][0]["long"]
    assert (
        long["units"] == "5000" and float(long["averagePrice"]) == pytest.approx(1.2) and long["tradeIDs"] == [second]
    )
    # an order without clientExtensions: no clientOrderID at all, never null
    _, d = call("POST", f"{acct}/orders", order(1_000, None))
    assert "clientOrderID" not in d["orderFillTransaction"]
    assert "clientExtensions" not in d["orderCreateTransaction"]
    # unsupported endpoints and methods answer JSON, like v20
    status, body = call("GET", f"{acct}/trades")
    assert status == 404 and "errorMessage" in body
    status, body = call("DELETE", f"{acct}/orders")
    assert status == 405 and "errorMessage" in body


def test_real_oandapyV20_client_against_the_emulator(monkeypatch):
    import oandapyV20
    import oandapyV20.endpoints.accounts as accounts
    import oandapyV20.endpoints.orders as orders
    import oandapyV20.endpoints.positions as positions
    import oandapyV20.endpoints.pricing as pricing
    import oandapyV20.endpoints.transactions as transactions
    import oandapyV20.oandapyV20 as client
    from oandapyV20.contrib.requests import ClientExtensions, MarketOrderRequest
    from oandapyV20.exceptions import V20Error

    loop = asyncio.new_event_loop()
    emu = OandaEmulator()
    emu.prices = [(emu.now_ns + k * 10**9, 1.1 + k * 1e-4, 1.1002 + k * 1e-4) for k in range(12)]
    url = loop.run_until_complete(emu.start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    monkeypatch.setitem(client.TRADING_ENVIRONMENTS, "emulator", {"api": url, "stream": url})
    try:
        api = oandapyV20.API(access_token=emu.token, environment="emulator")
        ext = ClientExtensions(clientID="stairway-1").data
        mo = MarketOrderRequest(instrument="EUR_USD", units=10_000, clientExtensions=ext)
        rv = api.request(orders.OrderCreate(emu.account, data=mo.data))
        assert rv["orderFillTransaction"]["clientOrderID"] == "stairway-1"
        assert api.request(orders.OrderDetails(emu.account, orderID="@stairway-1"))["order"]["state"] == "FILLED"
        pos = api.request(positions.OpenPositions(emu.account))["positions"]
        assert pos[0]["instrument"] == "EUR_USD" and pos[0]["long"]["units"] == "10000"
        summary = api.request(accounts.AccountSummary(emu.account))["account"]
        assert summary["openPositionCount"] == 1
        txs = api.request(transactions.TransactionsSinceID(emu.account, params={"id": "1"}))["transactions"]
        assert [t["type"] for t in txs] == ["MARKET_ORDER", "ORDER_FILL"]
        lines = list(api.request(pricing.PricingStream(emu.account, params={"instruments": "EUR_USD"})))
        assert sum(1 for x in lines if x["type"] == "PRICE") == 12 and any(x["type"] == "HEARTBEAT" for x in lines)
        with pytest.raises(V20Error) as e:
            api.request(orders.OrderDetails(emu.account, orderID="@nope"))
        assert e.value.code == 404 and "errorMessage" in json.loads(e.value.msg)
        bad = oandapyV20.API(access_token="wrong", environment="emulator")
        with pytest.raises(V20Error) as e:
            bad.request(accounts.AccountSummary(emu.account))
        assert e.value.code == 401
    finally:
        asyncio.run_coroutine_threadsafe(emu.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
