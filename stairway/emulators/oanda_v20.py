"""A local OANDA v20 emulator: an aiohttp server on 127.0.0.1 speaking the v20 wire format
(decimal strings, RFC 3339 nanosecond times, chunked JSON-line streams) for the endpoints
the adapter uses, with fault knobs. Field shapes follow OANDA's published v20 definitions.

Endpoints: GET .../pricing/stream, GET .../transactions/stream, POST .../orders, GET .../orders/@{clientID},
GET .../transactions/sinceid, GET .../openPositions, GET .../summary and
GET /v3/instruments/{instrument}/candles (S5 bid/ask candles built from the price list).

The price list is streamed in order; the emulator's clock (``now_ns``) is the time of the
last price sent, and fills happen at the last bid/ask sent.
"""

from __future__ import annotations

import asyncio
import copy
import json
from dataclasses import dataclass, field

from aiohttp import web

from stairway.emulators.oanda_account import OandaAccount, rfc3339


def price_line(inst: str, ts: int, bid: float, ask: float, tradeable: bool = True) -> dict:
    """One v20 pricing-stream PRICE message (ClientPrice), prices as 5-decimal strings."""
    return {
        "type": "PRICE",
        "time": rfc3339(ts),
        "bids": [{"price": f"{bid:.5f}", "liquidity": 10000000}],
        "asks": [{"price": f"{ask:.5f}", "liquidity": 10000000}],
        "closeoutBid": f"{bid:.5f}",
        "closeoutAsk": f"{ask:.5f}",
        "status": "tradeable" if tradeable else "non-tradeable",
        "tradeable": tradeable,
        "instrument": inst,
    }


@dataclass
class Knobs:
    drop_stream_after_lines: int | None = None  # close the (next) stream after N lines, once
    lost_on_drop: int = 0  # prices published while the client is away: never streamed
    silent_after_lines: int | None = None  # then send nothing at all, not even heartbeats, once
    stop_heartbeats: bool = False
    reject_reason: str | None = None  # e.g. INSUFFICIENT_MARGIN, MARKET_HALTED
    drop_order_response: int = 0  # accept (and fill) the next N orders, then cut the connection
    http_status: list[int] = field(default_factory=list)  # next responses' status (5xx, 429)
    retry_after_secs: float = 0.2
    fill_ratio: float = 1.0  # < 1 partial fill, > 1 over-fill
    slow_secs: float = 0.0
    mute_instrument: str | None = None  # no PRICE for it; heartbeats continue
    pricing_body: dict | None = None  # GET .../pricing answers this instead (bad payload cases)
    non_tradeable: bool = False  # prices flagged non-tradeable (weekend, halt)
    duplicate_transactions: bool = False  # sinceid answers every transaction twice
    reverse_transactions: bool = False  # sinceid answers newest first
    hold_order_response: asyncio.Event | None = None  # accept + fill, answer only once set
    end_when_exhausted: bool = True  # False: like the real stream, heartbeats forever
    heartbeat_secs: float = 0.2
    price_interval_secs: float = 0.0
    refuse_streams: bool = False  # the pricing stream answers 503 (streaming servers down)
    per_trade_price: bool = True  # False: trade parts carry no price (as in OANDA's documented examples)
    legacy_price_status: bool = False  # PRICE lines carry only the deprecated ``status`` field
    margin_rate: float = 0.0  # > 0: the summary's marginUsed is |units| x mid x this, summed (USD-quoted pairs)
    close_before_summary: bool = False  # once: every position closed by hand just before a summary is answered


class OandaEmulator(OandaAccount):
    def __init__(self, account: str = "101-004-1234567-001", token: str = "test-token") -> None:
        self.account, self.token = account, token
        self.knobs = Knobs()
        self.bid, self.ask, self.now_ns = 1.17330, 1.17342, 1_506_934_800 * 10**9
        self.last_id = 6400
        self.transactions: list[dict] = []
        self.orders: dict[str, dict] = {}  # by client order id
        self.positions: dict[str, float] = {}
        self.trades: dict[str, list[dict]] = {}  # open trades per instrument, oldest first (FIFO closing)
        self.balance = 100_000.0
        self.candle_requests = 0
        self.order_requests = 0  # every POST that reached the order book (duplicates visible here)
        self.stop_orders_created = self.stops_filled = 0  # stopLossOnFill orders and their fills
        self.stop_requests = 0  # TradeCRCDO stop-loss requests
        # (ts, bid, ask) for the first instrument the stream is asked for, or (ts, bid, ask,
        # instrument) for several (a portfolio): the stream sends each line to its instrument
        self.prices: list[tuple] = []
        self.quotes: dict[str, tuple[float, float]] = {}  # last (bid, ask) per instrument sent
        self.cursor = 0  # the stream resumes where the last connection stopped
        self.connections = 0
        self.order_posts = 0
        self.first_non_tradeable_ts: int | None = None
        self.armed: dict[int, dict] = {}
        self._tx_subscribers: list[asyncio.Queue] = []
        self.tx_stream_connections = 0  # order POST number -> knobs set when it arrives
        self.runner: web.AppRunner | None = None
        self._closing = asyncio.Event()
        self.port = 0

    # -- server ---------------------------------------------------------------------------
    async def start(self, port: int = 0) -> str:
        app = web.Application(middlewares=[self._json_errors, self._auth, self._faults])
        base = f"/v3/accounts/{self.account}"
        app.router.add_get(f"{base}/pricing/stream", self._stream)
        app.router.add_get(f"{base}/pricing", self._pricing)
        app.router.add_post(f"{base}/orders", self._post_order)
        app.router.add_get(base + "/orders/@{client_id}", self._get_order)
        app.router.add_get(f"{base}/transactions/sinceid", self._since)
        app.router.add_get(f"{base}/transactions/stream", self._tx_stream)
        app.router.add_get(f"{base}/openPositions", self._positions)
        app.router.add_get(f"{base}/openTrades", self._open_trades)
        app.router.add_put(base + "/trades/{trade_id}/orders", self._trade_orders)
        app.router.add_get(f"{base}/summary", self._summary)
        app.router.add_get("/v3/instruments/{instrument}/candles", self._candles)
        self.runner = web.AppRunner(app, shutdown_timeout=1.0)  # open streams are cut at stop
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", port)
        await site.start()
        self.port = self.runner.addresses[0][1]
        return f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        self._closing.set()
        if self.runner is not None:
            await self.runner.cleanup()

    @web.middleware
    async def _json_errors(self, request, handler):
        """Unsupported paths and methods answer like v20 does: a JSON body with errorMessage."""
        try:
            return await handler(request)
        except web.HTTPException as e:
            if e.status < 400:
                raise
            return web.json_response(
                {"errorMessage": f"emulator: {e.reason} ({request.method} {request.path})"}, status=e.status
            )

    @web.middleware
    async def _auth(self, request, handler):
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.json_response({"errorMessage": "Insufficient authorization to perform request."}, status=401)
        return await handler(request)

    def arm_on_order(self, n: int, **knobs) -> None:
        """Set ``knobs`` when the n-th order POST arrives (before it is handled): faults
        aimed at one order in the middle of a run."""
        self.armed[n] = knobs

    @web.middleware
    async def _faults(self, request, handler):
        if request.method == "POST" and request.path.endswith("/orders"):
            self.order_posts += 1
            for k, v in self.armed.pop(self.order_posts, {}).items():
                setattr(self.knobs, k, copy.deepcopy(v))
        if self.knobs.slow_secs:
            await asyncio.sleep(self.knobs.slow_secs)
        if self.knobs.http_status:
            status = self.knobs.http_status.pop(0)
            headers = {"Retry-After": f"{self.knobs.retry_after_secs:g}"} if status == 429 else {}
            return web.json_response({"errorMessage": f"emulated {status}"}, status=status, headers=headers)
        return await handler(request)

    async def _heartbeat(self, resp, ts: int) -> None:
        if not self.knobs.stop_heartbeats:
            await resp.write((json.dumps({"type": "HEARTBEAT", "time": rfc3339(ts)}) + "\n").encode())

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        if self.knobs.refuse_streams:
            return web.json_response({"errorMessage": "emulated: service unavailable"}, status=503)
        try:
            return await self._stream_lines(request)
        except ConnectionError:  # the client went away (reconnect, shutdown)
            return web.Response(status=499)

    async def _stream_lines(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        await resp.prepare(request)
        asked = request.query.get("instruments", "EUR_USD").split(",")
        self.connections += 1
        sent = 0
        prices = self.prices or [(self.now_ns, self.bid, self.ask)]
        while self.cursor < len(prices):
            ts, bid, ask, *named = prices[self.cursor]
            inst = named[0] if named else asked[0]
            self.cursor += 1
            self.now_ns, self.bid, self.ask = ts, bid, ask
            self.quotes[inst] = (bid, ask)
            self.check_stops(inst)
            if self.knobs.mute_instrument != inst and inst in asked:
                k = self.knobs
                line = price_line(inst, ts, bid, ask, not k.non_tradeable)
                if k.legacy_price_status:
                    del line["tradeable"]
                await resp.write((json.dumps(line) + "\n").encode())
                if k.non_tradeable and self.first_non_tradeable_ts is None:
                    self.first_non_tradeable_ts = ts
            sent += 1
            if self.knobs.drop_stream_after_lines is not None and sent >= self.knobs.drop_stream_after_lines:
                self.knobs.drop_stream_after_lines = None
                self.cursor += self.knobs.lost_on_drop
                request.transport.close()
                return resp
            if self.knobs.silent_after_lines is not None and sent >= self.knobs.silent_after_lines:
                self.knobs.silent_after_lines = None
                await self._closing.wait()  # silent until the emulator stops (the client gives up first)
                return resp
            if sent % 5 == 0:
                await self._heartbeat(resp, ts)
            await asyncio.sleep(self.knobs.price_interval_secs)
        while not self.knobs.end_when_exhausted and not self._closing.is_set():
            await self._heartbeat(resp, self.now_ns)
            await asyncio.sleep(self.knobs.heartbeat_secs)
        return resp

    async def _tx_stream(self, request: web.Request) -> web.StreamResponse:
        """Transactions as they happen, one JSON line each, and a HEARTBEAT (with the last
        transaction id) every heartbeat_secs."""
        resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        await resp.prepare(request)
        q: asyncio.Queue = asyncio.Queue()
        self._tx_subscribers.append(q)
        self.tx_stream_connections += 1
        try:
            while not self._closing.is_set():
                try:
                    tx = await asyncio.wait_for(q.get(), self.knobs.heartbeat_secs)
                except TimeoutError:
                    tx = None
                if tx is not None:
                    await resp.write((json.dumps(tx) + "\n").encode())
                elif not self.knobs.stop_heartbeats:
                    hb = {"type": "HEARTBEAT", "lastTransactionID": str(self.last_id), "time": rfc3339(self.now_ns)}
                    await resp.write((json.dumps(hb) + "\n").encode())
        except ConnectionError:
            pass
        finally:
            self._tx_subscribers.remove(q)
        return resp

    GRANULARITY_SECS = {
        "S5": 5, "M1": 60, "M2": 120, "M4": 240, "M5": 300, "M10": 600, "M15": 900, "M30": 1800,
        "H1": 3600, "H2": 7200, "H3": 10800, "H4": 14400, "H6": 21600, "H8": 28800, "H12": 43200, "D": 86400,
    }  # fmt: skip

    async def _candles(self, request: web.Request) -> web.Response:
        """Candles built from the price list (what the stream sends), as v20 answers them:
        price BA (bid and ask), M, B or A; a range by from+to or from+count (count at most
        5000; from, to and count together are refused, as v20 does); the candle still open
        at the emulator's clock has complete=false. Prices are written with repr(), so a
        candle's numbers are exactly those of the quotes (v20 rounds to the instrument's
        precision: the same numbers for quotes that have it)."""
        from stairway.daemon.brokers.oanda.parsing import parse_time_ns

        q = request.query
        gran, price = q.get("granularity", "S5"), q.get("price", "M")
        if gran not in self.GRANULARITY_SECS or price not in ("BA", "M", "B", "A"):
            return web.json_response(
                {"errorMessage": "Invalid value specified for 'granularity' or 'price'"}, status=400
            )
        if "to" in q and "count" in q and "from" in q:
            return web.json_response({"errorMessage": "Cannot specify from, to and count together"}, status=400)
        lo = parse_time_ns(q["from"])
        hi = parse_time_ns(q["to"]) if "to" in q else None
        step = self.GRANULARITY_SECS[gran] * 10**9
        # from+to: the count is the span's candles, and v20 refuses more than 5000 of them
        count = -(-(hi - lo) // step) if hi is not None else int(q.get("count", 500))
        if count > 5000 or count < 1:
            return web.json_response({"errorMessage": "Maximum value for 'count' exceeded"}, status=400)
        buckets: dict[int, list] = {}
        want = request.match_info["instrument"]
        for ts, bid, ask, *named in self.prices:
            t0 = ts - ts % step
            if t0 >= lo and (hi is None or t0 < hi) and ts <= self.now_ns and (not named or named[0] == want):
                buckets.setdefault(t0, []).append((bid, ask))
        self.candle_requests += 1
        out = []
        for t0 in sorted(buckets)[:count]:
            qs = buckets[t0]
            sides = {"bid": [b for b, _ in qs], "ask": [a for _, a in qs], "mid": [(b + a) / 2 for b, a in qs]}
            keys = {"BA": ("bid", "ask"), "M": ("mid",), "B": ("bid",), "A": ("ask",)}[price]
            candle = {"complete": t0 + step <= self.now_ns, "volume": len(qs), "time": rfc3339(t0)}
            for k in keys:
                v = sides[k]
                candle[k] = {"o": repr(v[0]), "h": repr(max(v)), "l": repr(min(v)), "c": repr(v[-1])}
            out.append(candle)
        return web.json_response({"instrument": want, "granularity": gran, "candles": out})

    async def _post_order(self, request: web.Request) -> web.Response:
        body = await request.json()
        order = body.get("order", {})
        inst, coid = order.get("instrument"), (order.get("clientExtensions") or {}).get("id")
        try:
            units = float(order["units"])
        except (KeyError, TypeError, ValueError):
            return web.json_response(
                {"errorCode": "INVALID_UNITS", "errorMessage": "Order units specified are invalid"}, status=400
            )
        if coid in self.orders:
            return web.json_response(
                {
                    "errorCode": "CLIENT_ORDER_ID_ALREADY_EXISTS",
                    "errorMessage": "The client Order ID specified is already assigned",
                },
                status=400,
            )
        bound = order.get("priceBound")
        if bound is not None:  # a PriceValue string with at most the instrument's display precision
            digits = 3 if str(inst).endswith("_JPY") else 5
            whole, _, frac = str(bound).partition(".")
            if not whole.isdigit() or not (frac.isdigit() or frac == "") or len(frac) > digits:
                return web.json_response(
                    {"errorCode": "PRICE_BOUND_PRECISION_EXCEEDED", "errorMessage": f"priceBound {bound!r}"}, status=400
                )
        self.order_requests += 1
        ext = {"clientExtensions": {"id": coid}} if coid is not None else {}
        create = self._tx(
            "MARKET_ORDER",
            instrument=inst,
            units=order["units"],
            timeInForce="FOK",
            positionFill="DEFAULT",
            reason="CLIENT_ORDER",
            **({"priceBound": bound} if bound is not None else {}),
            **({"stopLossOnFill": order["stopLossOnFill"]} if order.get("stopLossOnFill") else {}),
            **(
                {"trailingStopLossOnFill": order["trailingStopLossOnFill"]}
                if order.get("trailingStopLossOnFill")
                else {}
            ),
            **ext,
        )
        if self.knobs.reject_reason:
            reject = self._tx(
                "MARKET_ORDER_REJECT",
                instrument=inst,
                units=order["units"],
                rejectReason=self.knobs.reject_reason,
                **ext,
            )
            return web.json_response(
                {
                    "orderRejectTransaction": reject,
                    "errorCode": self.knobs.reject_reason,
                    "errorMessage": "Order rejected",
                    "lastTransactionID": reject["id"],
                },
                status=400,
            )
        filled = round(units * self.knobs.fill_ratio)
        bid, ask = self.quote(inst)
        price = ask if units > 0 else bid
        if bound is not None and (price > float(bound) if units > 0 else price < float(bound)):
            cancel = self._tx("ORDER_CANCEL", orderID=create["id"], reason="BOUNDS_VIOLATION", **ext)
            record = self._order_record(create, order, ext, state="CANCELLED", priceBound=bound)
            record |= {"cancellingTransactionID": cancel["id"], "cancelledTime": cancel["time"]}
            self.orders[coid if coid is not None else create["id"]] = record
            return self._created(create, "orderCancelTransaction", cancel)
        fill = self._fill(inst, filled, price, create["id"], coid)
        if order.get("stopLossOnFill") and "tradeOpened" in fill:
            self._stop_loss(inst, fill["tradeOpened"]["tradeID"], order["stopLossOnFill"])
        if order.get("trailingStopLossOnFill") and "tradeOpened" in fill:
            self._stop_loss(inst, fill["tradeOpened"]["tradeID"], order["trailingStopLossOnFill"], trailing=True)
        record = self._order_record(create, order, ext, state="FILLED", positionFill="DEFAULT")
        record |= {"fillingTransactionID": fill["id"], "filledTime": fill["time"]}
        if "tradeOpened" in fill:
            record["tradeOpenedID"] = fill["tradeOpened"]["tradeID"]
        self.orders[coid if coid is not None else create["id"]] = record
        if self.knobs.hold_order_response is not None:  # accepted and filled; the answer waits
            await self.knobs.hold_order_response.wait()
        if self.knobs.drop_order_response > 0:  # accepted and filled, but the answer never arrives
            self.knobs.drop_order_response -= 1
            request.transport.close()
            raise ConnectionResetError("emulated: connection dropped after the order was accepted")
        return self._created(create, "orderFillTransaction", fill)

    @staticmethod
    def _order_record(create: dict, order: dict, ext: dict, **fields) -> dict:
        """The order as GET .../orders/@{clientID} shows it."""
        head = {"id": create["id"], "createTime": create["time"], "type": "MARKET", "instrument": order["instrument"]}
        return head | {"units": order["units"], "timeInForce": "FOK", **fields, **ext}

    @staticmethod
    def _created(create: dict, key: str, tx: dict) -> web.Response:
        """201: the order created and what became of it (filled, or cancelled)."""
        body = {"orderCreateTransaction": create, key: tx, "relatedTransactionIDs": [create["id"], tx["id"]]}
        return web.json_response(body | {"lastTransactionID": tx["id"]}, status=201)

    async def _get_order(self, request: web.Request) -> web.Response:
        coid = request.match_info["client_id"]
        if coid not in self.orders:
            return web.json_response({"errorMessage": "The order ClientID specified does not exist"}, status=404)
        return web.json_response({"order": self.orders[coid], "lastTransactionID": str(self.last_id)})

    async def _since(self, request: web.Request) -> web.Response:
        since = int(request.query["id"])
        txs = [t for t in self.transactions if int(t["id"]) > since]
        if self.knobs.duplicate_transactions:
            txs = [t for t in txs for _ in range(2)]
        if self.knobs.reverse_transactions:
            txs = txs[::-1]
        return web.json_response({"transactions": txs, "lastTransactionID": str(self.last_id)})

    async def _positions(self, request: web.Request) -> web.Response:
        out = []
        for inst, u in self.positions.items():
            if u:
                ids = [t["id"] for t in self.trades.get(inst, [])]
                side = {
                    "units": f"{u:.0f}",
                    "averagePrice": f"{self.average_price(inst):.5f}",
                    "tradeIDs": ids,
                    "pl": "0.0000",
                    "resettablePL": "0.0000",
                    "unrealizedPL": "0.0000",
                }
                flat = {"units": "0", "pl": "0.0000", "resettablePL": "0.0000", "unrealizedPL": "0.0000"}
                out.append(
                    {
                        "instrument": inst,
                        "long": side if u > 0 else flat,
                        "short": side if u < 0 else flat,
                        "pl": "0.0000",
                        "resettablePL": "0.0000",
                        "unrealizedPL": "0.0000",
                    }
                )
        return web.json_response({"positions": out, "lastTransactionID": str(self.last_id)})

    async def _open_trades(self, request: web.Request) -> web.Response:
        out = []
        for inst, trades in self.trades.items():
            for t in trades:
                trade = {
                    "id": t["id"],
                    "instrument": inst,
                    "price": f"{t['price']:.5f}",
                    "openTime": rfc3339(self.now_ns),
                    "initialUnits": f"{t['units']:.0f}",
                    "currentUnits": f"{t['units']:.0f}",
                    "state": "OPEN",
                    "realizedPL": "0.0000",
                    "unrealizedPL": "0.0000",
                }
                sl = t.get("sl")
                ext = {"clientExtensions": {"id": sl["coid"]}} if sl is not None and sl["coid"] else {}
                if sl is not None and sl.get("trail"):
                    trade["trailingStopLossOrder"] = {
                        "id": sl["id"], "type": "TRAILING_STOP_LOSS", "tradeID": t["id"],
                        "distance": f"{sl['trail']:.5f}", "trailingStopValue": f"{sl['price']:.5f}",
                        "timeInForce": "GTC", "state": "PENDING", **ext,
                    }  # fmt: skip
                elif sl is not None:
                    trade["stopLossOrder"] = {
                        "id": sl["id"], "type": "STOP_LOSS", "tradeID": t["id"], "price": f"{sl['price']:.5f}",
                        "timeInForce": "GTC", "state": "PENDING", **ext,
                    }  # fmt: skip
                out.append(trade)
        return web.json_response({"trades": out, "lastTransactionID": str(self.last_id)})

    async def _trade_orders(self, request: web.Request) -> web.Response:
        """TradeCRCDO: create or replace the trade's stop-loss (the only dependent order used)."""
        body = await request.json()
        trade_id = request.match_info["trade_id"]
        for inst, trades in self.trades.items():
            for t in trades:
                if t["id"] == trade_id and ("stopLoss" in body or "trailingStopLoss" in body):
                    self.stop_requests += 1
                    trailing = "trailingStopLoss" in body
                    self._stop_loss(inst, trade_id, body["trailingStopLoss" if trailing else "stopLoss"], trailing)
                    tx = self.transactions[-1]
                    return web.json_response(
                        {
                            ("trailingStopLossOrderTransaction" if trailing else "stopLossOrderTransaction"): tx,
                            "relatedTransactionIDs": [tx["id"]],
                            "lastTransactionID": tx["id"],
                        }
                    )
        return web.json_response(
            {"errorCode": "NO_SUCH_TRADE", "errorMessage": "The Trade specified does not exist"}, status=404
        )

    async def _pricing(self, request: web.Request) -> web.Response:
        """GET .../pricing?instruments=A,B: the last price streamed of each (as OANDA's own
        example: ClientPrice objects without ``type``); one never priced is left out."""
        if self.knobs.pricing_body is not None:
            return web.json_response(self.knobs.pricing_body)
        asked = request.query.get("instruments", "").split(",")
        out = []
        for inst in asked:
            if inst in self.quotes:
                line = price_line(inst, self.now_ns, *self.quotes[inst])
                del line["type"]
                out.append(line)
        return web.json_response({"prices": out, "time": rfc3339(self.now_ns)})

    async def _summary(self, request: web.Request) -> web.Response:
        if self.knobs.close_before_summary:  # a fill the client has not fetched when it reads the figures
            self.knobs.close_before_summary = False
            for inst, units in list(self.positions.items()):
                if units:
                    self.manual_trade(inst, -units)
        return web.json_response(
            {
                "account": {
                    "id": self.account,
                    "currency": "USD",
                    "balance": f"{self.balance:.4f}",
                    "NAV": f"{self.balance + self.unrealized():.4f}",
                    "unrealizedPL": f"{self.unrealized():.4f}",
                    "marginUsed": f"{self.margin_used():.4f}",
                    "openPositionCount": sum(1 for u in self.positions.values() if u),
                    "lastTransactionID": str(self.last_id),
                },
                "lastTransactionID": str(self.last_id),
            }
        )
