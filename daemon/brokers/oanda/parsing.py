"""Pure OANDA v20 parsing: wire JSON in, core types out. No I/O.

Shapes follow OANDA's v20 definitions: numbers are decimal strings, times are RFC 3339
with up to nine fractional digits ("2017-10-02T09:00:00.123456789Z"). The pricing stream
sends one JSON object per line, ``PRICE`` or ``HEARTBEAT``. An ``ORDER_FILL`` transaction
reports what was filled through ``tradeOpened``, ``tradesClosed`` and ``tradeReduced``;
each becomes one FillReport (our ``clientOrderID`` kept on all of them), and the fill's
commission, financing and half-spread cost are attached to the first one. A part without
its own ``price`` takes the fill's ``fullVWAP`` (or its deprecated ``price``).
"""

from __future__ import annotations

import calendar
import json
import math
import re
import time
from dataclasses import dataclass

import numpy as np

from stairway.core.bar_ticks import TICKS_PER_BAR, bar_paths
from stairway.core.broker import FillReport, FinancingReport
from stairway.core.errors import BadPayload
from stairway.core.types import BAR_DTYPE, TICK_DTYPE

_RFC3339 = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?Z$")


def parse_time_ns(text: object, field: str = "time") -> int:
    if not isinstance(text, str) or not (m := _RFC3339.match(text)):
        raise BadPayload(f"{field} = {text!r}: not an RFC 3339 UTC time")
    y, mo, d, hh, mm, ss, frac = m.groups()
    secs = calendar.timegm((int(y), int(mo), int(d), int(hh), int(mm), int(ss), 0, 0, 0))
    return secs * 1_000_000_000 + int((frac or "0").ljust(9, "0"))


def decimal(obj: dict, key: str, where: str, default: float | None = None) -> float:
    if key not in obj:
        if default is not None:
            return default
        raise BadPayload(f"{where}.{key}: missing")
    v = obj[key]
    try:
        x = float(v) if isinstance(v, str) else float("nan")
    except ValueError:
        x = float("nan")
    if not math.isfinite(x):
        raise BadPayload(f"{where}.{key} = {v!r}: not a decimal string")
    return x


@dataclass(frozen=True)
class PriceLine:
    instrument: str
    ts_ns: int
    bid: float
    ask: float
    tradeable: bool


@dataclass(frozen=True)
class Heartbeat:
    ts_ns: int


def parse_stream_line(line: bytes | str) -> PriceLine | Heartbeat:
    try:
        obj = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BadPayload(f"stream line {line[:80]!r}: not JSON ({e})") from None
    if not isinstance(obj, dict):
        raise BadPayload(f"stream line {line[:80]!r}: not a JSON object")
    kind = obj.get("type")
    if kind == "HEARTBEAT":
        return Heartbeat(parse_time_ns(obj.get("time"), "HEARTBEAT.time"))
    if kind != "PRICE":
        raise BadPayload(f"stream line type = {kind!r}: expected PRICE or HEARTBEAT")
    return parse_price(obj)


def parse_price(obj: dict) -> PriceLine:
    """One ClientPrice: a stream's PRICE line, or an element of GET .../pricing's ``prices``
    (which OANDA's own example gives without ``type``)."""
    inst = obj.get("instrument")
    if not isinstance(inst, str) or not inst:
        raise BadPayload(f"PRICE.instrument = {inst!r}: missing")
    bids, asks = obj.get("bids"), obj.get("asks")
    if not isinstance(bids, list) or not isinstance(asks, list):
        raise BadPayload(f"PRICE {inst}: bids/asks must be lists")
    # Empty books happen (no liquidity): fall back to the closeout prices, which OANDA
    # documents are never used to open positions; such a quote is marked non-tradeable.
    # ``tradeable`` is the current field; older streams (and OANDA's own examples) carry only
    # the deprecated ``status`` ("tradeable" / "non-tradeable" / "invalid")
    flag = obj.get("tradeable") if "tradeable" in obj else obj.get("status") == "tradeable"
    tradeable = flag is True and bool(bids) and bool(asks)
    bid = decimal(bids[0], "price", f"PRICE {inst}.bids[0]") if bids else decimal(obj, "closeoutBid", f"PRICE {inst}")
    ask = decimal(asks[0], "price", f"PRICE {inst}.asks[0]") if asks else decimal(obj, "closeoutAsk", f"PRICE {inst}")
    return PriceLine(inst, parse_time_ns(obj.get("time"), f"PRICE {inst}.time"), bid, ask, tradeable)


def parse_transaction_line(line: bytes | str) -> dict:
    """One transaction-stream line: a transaction or a HEARTBEAT, as a dict with a type."""
    try:
        obj = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BadPayload(f"transaction line {line[:80]!r}: not JSON ({e})") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        raise BadPayload(f"transaction line {line[:80]!r}: not an object with a type")
    return obj


def parse_order_fill(tx: dict) -> list[FillReport]:
    """FillReports for one ORDER_FILL transaction (trade opened / closed / reduced)."""
    if tx.get("type") != "ORDER_FILL":
        raise BadPayload(f"transaction {tx.get('id')!r} type = {tx.get('type')!r}: expected ORDER_FILL")
    where = f"ORDER_FILL {tx.get('id')}"
    tx_id, inst = tx.get("id"), tx.get("instrument")
    if not isinstance(tx_id, str) or not isinstance(inst, str):
        raise BadPayload(f"{where}: id and instrument are required strings")
    ts = parse_time_ns(tx.get("time"), f"{where}.time")
    coid = tx.get("clientOrderID")
    parts: list[tuple[str, dict]] = [(f"tradesClosed[{k}]", t) for k, t in enumerate(tx.get("tradesClosed") or [])]
    if tx.get("tradeReduced"):
        parts.append(("tradeReduced", tx["tradeReduced"]))
    if tx.get("tradeOpened"):
        parts.append(("tradeOpened", tx["tradeOpened"]))
    if not parts:
        raise BadPayload(f"{where}: no tradeOpened, tradesClosed or tradeReduced")
    total = decimal(tx, "units", where)
    units = [decimal(p, "units", f"{where}.{name}") for name, p in parts]
    if abs(sum(units) - total) > 1e-6:
        raise BadPayload(f"{where}: trade units {units} do not add up to units {total:g}")
    costs = {k: decimal(tx, k, where, 0.0) for k in ("commission", "financing", "halfSpreadCost")}
    # A part's own price is optional (absent from every example in OANDA's documentation):
    # the fill's volume-weighted price, else its (deprecated) price, stands in for it
    fill_price = None
    fills = []
    for k, ((name, p), u) in enumerate(zip(parts, units)):
        if "price" in p:
            price = decimal(p, "price", f"{where}.{name}")
        else:
            if fill_price is None:
                key = "fullVWAP" if "fullVWAP" in tx else "price"
                if key not in tx:
                    raise BadPayload(f"{where}: no price on {name} and neither fullVWAP nor price on the fill")
                fill_price = decimal(tx, key, where)
            price = fill_price
        if not price > 0:
            raise BadPayload(f"{where}.{name}: price {price!r} is not positive")
        fills.append(
            FillReport(
                broker_fill_id=f"{tx_id}:{k}",
                client_order_id=coid if isinstance(coid, str) else None,
                instrument=inst,
                ts_ns=ts,
                units=u,
                price=price,
                commission=costs["commission"] if k == 0 else 0.0,
                financing=costs["financing"] if k == 0 else 0.0,
                spread_cost=costs["halfSpreadCost"] if k == 0 else 0.0,
            )
        )
    return fills


def parse_daily_financing(tx: dict) -> list[FinancingReport]:
    """One FinancingReport per position of a DAILY_FINANCING transaction."""
    where = f"DAILY_FINANCING {tx.get('id')}"
    tx_id = tx.get("id")
    if not isinstance(tx_id, str):
        raise BadPayload(f"{where}: id is a required string")
    ts = parse_time_ns(tx.get("time"), f"{where}.time")
    parts = tx.get("positionFinancings")
    if not isinstance(parts, list):
        raise BadPayload(f"{where}.positionFinancings: missing or not a list")
    out = []
    for k, p in enumerate(parts):
        inst = p.get("instrument") if isinstance(p, dict) else None
        if not isinstance(inst, str):
            raise BadPayload(f"{where}.positionFinancings[{k}].instrument: missing")
        out.append(FinancingReport(tx_id, inst, ts, decimal(p, "financing", f"{where}.positionFinancings[{k}]")))
    return out


def rfc3339(ts_ns: int) -> str:
    secs, ns = divmod(ts_ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{ns:09d}Z"


_GRANULARITY_SECS = {"S5": 5, "S10": 10, "S15": 15, "S30": 30, "M1": 60}

# bar periods (minutes) OANDA has a candle granularity for, and the candle side per bar price
BAR_GRANULARITY = {
    1: "M1", 2: "M2", 4: "M4", 5: "M5", 10: "M10", 15: "M15", 30: "M30", 60: "H1", 120: "H2",
    180: "H3", 240: "H4", 360: "H6", 480: "H8", 720: "H12", 1440: "D",
}  # fmt: skip
CANDLE_PRICE = {"mid": ("M", "mid"), "bid": ("B", "bid"), "ask": ("A", "ask")}


def parse_bar_candles(body: dict, instrument: str, granularity: str, side: str) -> tuple[np.ndarray, int | None]:
    """InstrumentsCandles (one side: mid, bid or ask) -> (complete candles as BAR_DTYPE, the
    time of the last candle in the page, complete or not: where the next page starts)."""
    where = f"candles {instrument}"
    if body.get("granularity") != granularity:
        raise BadPayload(f"{where}.granularity = {body.get('granularity')!r}: asked for {granularity!r}")
    candles = body.get("candles")
    if not isinstance(candles, list):
        raise BadPayload(f"{where}.candles: missing or not a list")
    rows, last = [], None
    for k, c in enumerate(candles):
        if not isinstance(c, dict):
            raise BadPayload(f"{where}[{k}]: not an object")
        ts = parse_time_ns(c.get("time"), f"{where}[{k}].time")
        last = ts
        if c.get("complete") is not True:
            continue  # the candle in progress is never a bar
        ohlc = c.get(side)
        if not isinstance(ohlc, dict):
            raise BadPayload(f"{where}[{k}].{side}: missing")
        o, h, lo, cl = (decimal(ohlc, f, f"{where}[{k}].{side}") for f in "ohlc")
        vol = c.get("volume", 0)
        rows.append((ts, o, h, lo, cl, float(vol) if isinstance(vol, int | float) else 0.0))
    out = np.array(rows, dtype=BAR_DTYPE) if rows else np.empty(0, dtype=BAR_DTYPE)
    return out, last


def parse_candles(body: dict, instrument: str, from_ns: int, to_ns: int) -> np.ndarray:
    """InstrumentsCandles (price=BA) -> bar-derived quotes, TICKS_PER_BAR per complete candle
    (core.bar_ticks' layout), kept inside [from, to)."""
    where = f"candles {instrument}"
    gran = body.get("granularity")
    if gran not in _GRANULARITY_SECS:
        raise BadPayload(f"{where}.granularity = {gran!r}: expected one of {sorted(_GRANULARITY_SECS)}")
    candles = body.get("candles")
    if not isinstance(candles, list):
        raise BadPayload(f"{where}.candles: missing or not a list")
    step = _GRANULARITY_SECS[gran] * 1_000_000_000 // TICKS_PER_BAR
    rows = []
    for k, c in enumerate(candles):
        if not isinstance(c, dict) or not c.get("complete", False):
            continue
        ts = parse_time_ns(c.get("time"), f"{where}[{k}].time")
        sides = []
        for side in ("bid", "ask"):
            ohlc = c.get(side)
            if not isinstance(ohlc, dict):
                raise BadPayload(f"{where}[{k}].{side}: missing (ask for price=BA)")
            o, h, lo, cl = (decimal(ohlc, f, f"{where}[{k}].{side}") for f in "ohlc")
            sides.append(bar_paths(np.array([o]), np.array([h]), np.array([lo]), np.array([cl]))[0].tolist())
        for j in range(TICKS_PER_BAR):
            t = ts + j * step
            if from_ns <= t < to_ns:
                rows.append((t, sides[0][j], sides[1][j]))
    out = np.array(rows, dtype=TICK_DTYPE) if rows else np.empty(0, dtype=TICK_DTYPE)
    return out[np.argsort(out["ts_ns"], kind="stable")]
