import json

import pytest

from core.errors import BadPayload
from daemon.brokers.oanda.parsing import Heartbeat, PriceLine, parse_order_fill, parse_stream_line, parse_time_ns
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


@pytest.mark.parametrize("line, fragment", [
    (b"{not json", "not JSON"),
    (b'{"type":"CANDLE"}', "type = 'CANDLE': expected PRICE or HEARTBEAT"),
    (b'{"type":"HEARTBEAT","time":"yesterday"}', "HEARTBEAT.time = 'yesterday'"),
    (b'{"type":"PRICE","instrument":"EUR_USD","time":"2017-10-02T09:00:00Z","bids":[{"price":1.1}],"asks":[]}',
     "PRICE EUR_USD.bids[0].price = 1.1: not a decimal string"),
    (b'{"type":"PRICE","instrument":"EUR_USD","time":"2017-10-02T09:00:00Z","bids":[],"asks":[]}',
     "PRICE EUR_USD.closeoutBid: missing"),
])
def test_bad_stream_lines_named(line, fragment):
    with pytest.raises(BadPayload, match=fragment.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(").replace(")", r"\)")):
        parse_stream_line(line)


def test_order_fill_whose_parts_do_not_add_up_is_refused():
    tx = json.loads((OANDA / "order_fill_reverse.json").read_text())
    tx["units"] = "-150000"
    with pytest.raises(BadPayload, match="do not add up to units -150000"):
        parse_order_fill(tx)
    tx["type"] = "ORDER_CANCEL"
    with pytest.raises(BadPayload, match="expected ORDER_FILL"):
        parse_order_fill(tx)
