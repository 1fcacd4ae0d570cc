import json

import pytest

from stairway.core.errors import BadPayload
from stairway.daemon.brokers.oanda.parsing import (
    Heartbeat,
    PriceLine,
    parse_order_fill,
    parse_stream_line,
    parse_time_ns,
)
from tests.helpers import RESOURCES

OANDA = RESOURCES / "oanda"


def test_stream_lines_price_heartbeat_and_weekend_closeout():
    lines = (OANDA / "price_stream.jsonl").read_bytes().splitlines()
    p, hb, weekend = (parse_stream_line(x) for x in lines)
    assert p == PriceLine("EUR_USD", parse_time_ns("2017-10-02T09:00:00.201836422Z"), 1.1733, 1.17342, True)
    assert p.ts_ns % 10**9 == 201_836_422  # nanoseconds kept
    assert hb == Heartbeat(1506934805 * 10**9)
    assert not weekend.tradeable and (weekend.bid, weekend.ask) == (1.1721, 1.1729)


def test_order_fill_reversal_splits_into_close_and_open():
    fills = parse_order_fill(json.loads((OANDA / "order_fill_reverse.json").read_text()))
    assert [f.units for f in fills] == [-100000.0, -100000.0]
    assert all(f.client_order_id == "sw-EUR_USD-1506934800000000000-0" for f in fills)
    assert [f.broker_fill_id for f in fills] == ["6413:0", "6413:1"]
    assert fills[0].financing == -0.12 and fills[1].financing == 0.0
    assert fills[0].price == 1.17345


@pytest.mark.parametrize(
    "line, fragment",
    [
        (b"{not json", "not JSON"),
        (b'{"type":"CANDLE"}', "type = 'CANDLE': expected PRICE or HEARTBEAT"),
        (b'{"type":"HEARTBEAT","time":"yesterday"}', "HEARTBEAT.time = 'yesterday'"),
        (
            b'{"type":"PRICE","instrument":"EUR_USD","time":"2017-10-02T09:00:00Z","bids":[{"price":1.1}],"asks":[]}',
            "PRICE EUR_USD.bids[0].price = 1.1: not a decimal string",
        ),
        (
            b'{"type":"PRICE","instrument":"EUR_USD","time":"2017-10-02T09:00:00Z","bids":[],"asks":[]}',
            "PRICE EUR_USD.closeoutBid: missing",
        ),
    ],
)
def test_bad_stream_lines_named(line, fragment):
    with pytest.raises(
        BadPayload, match=fragment.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(").replace(")", r"\)")
    ):
        parse_stream_line(line)


def test_order_fill_whose_parts_do_not_add_up_is_refused():
    tx = json.loads((OANDA / "order_fill_reverse.json").read_text())
    tx["units"] = "-150000"
    with pytest.raises(BadPayload, match="do not add up to units -150000"):
        parse_order_fill(tx)
    tx["type"] = "ORDER_CANCEL"
    with pytest.raises(BadPayload, match="expected ORDER_FILL"):
        parse_order_fill(tx)


# -- issue 9.3: OANDA's own documented payloads ------------------------------------------


def test_every_documented_order_fill_parses_with_the_fills_own_price():
    from tests.oanda_examples import order_fill_examples

    examples = order_fill_examples()
    assert len(examples) == 4, list(examples)  # all four shipped with oandapyV20
    for where, tx in examples.items():
        parts = (tx.get("tradesClosed") or []) + [tx[k] for k in ("tradeReduced", "tradeOpened") if k in tx]
        assert all("price" not in p for p in parts), where  # the case the parser used to refuse
        fills = parse_order_fill(tx)
        assert len(fills) == len(parts), where
        assert all(f.price == float(tx["price"]) for f in fills), where
        assert abs(sum(f.units for f in fills) - float(tx["units"])) < 1e-9, where
        assert [f.broker_fill_id for f in fills] == [f"{tx['id']}:{k}" for k in range(len(parts))]


def test_part_price_wins_then_full_vwap_then_price():
    from tests.oanda_examples import order_fill_examples

    tx = dict(next(iter(order_fill_examples().values())))
    tx["fullVWAP"] = "1.50000"
    assert {f.price for f in parse_order_fill(tx)} == {1.5}
    tx["tradesClosed"] = [dict(p, price="1.25000") for p in tx["tradesClosed"]]
    assert {f.price for f in parse_order_fill(tx)} == {1.25}
    bare = {k: v for k, v in tx.items() if k not in ("price", "fullVWAP")}
    bare["tradesClosed"] = [{k: v for k, v in p.items() if k != "price"} for p in tx["tradesClosed"]]
    with pytest.raises(BadPayload, match="neither fullVWAP nor price"):
        parse_order_fill(bare)


def test_documented_price_stream_lines_with_only_legacy_status_are_tradeable():
    import json

    from tests.oanda_examples import response

    lines = [x for x in response("pricing", "_v3_accounts_accountID_pricing_stream") if x.get("type") != "HEARTBEAT"]
    assert lines and all("tradeable" not in x and x["status"] == "tradeable" for x in lines)
    for x in lines:
        p = parse_stream_line(json.dumps(x))
        assert p.tradeable and p.bid == float(x["bids"][0]["price"]) and p.ask == float(x["asks"][0]["price"])
    halted = dict(lines[0], status="non-tradeable")
    assert not parse_stream_line(json.dumps(halted)).tradeable
    # the current field wins when both are present
    assert not parse_stream_line(json.dumps(dict(lines[0], tradeable=False))).tradeable


def test_documented_pricing_answer_parses_without_a_type():
    """GET .../pricing answers ClientPrice objects without ``type`` (OANDA's own example):
    each parses to its best bid and ask; a stream line still needs PRICE or HEARTBEAT."""
    from stairway.daemon.brokers.oanda.parsing import parse_price
    from tests.oanda_examples import response

    prices = response("pricing", "_v3_accounts_accountID_pricing")["prices"]
    assert len(prices) == 2 and all("type" not in p for p in prices)
    got = {q.instrument: (q.bid, q.ask) for q in map(parse_price, prices)}
    assert got == {"EUR_USD": (1.12157, 1.12170), "EUR_JPY": (115.329, 115.346)}
    with pytest.raises(BadPayload, match="expected PRICE or HEARTBEAT"):
        parse_stream_line(json.dumps(prices[0]))
