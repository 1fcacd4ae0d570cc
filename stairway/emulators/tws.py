"""A local Interactive Brokers gateway that speaks the TWS API socket protocol, for the real
``ib_async.IB`` client (issue 21 §4): the adapter connects to 127.0.0.1 as it would to IB
Gateway, and every message it exchanges is framed, encoded and decoded by ib_async itself.

The protocol (server version 176, within ib_async's 157..178): the client opens with
``API\\0`` and a length-prefixed version range; the server answers with its version and
connection time; every message after that is a 4-byte big-endian length and NUL-terminated
fields, the message id first. Field layouts are ib_async's (client.py encodes the requests,
decoder.py decodes what is sent here); each is noted at its encoder below.

Emulated (requests -> replies):
  startApi 71           -> nextValidId 9, managedAccounts 15 (or error 326: client id in use)
  reqContractDetails 9  -> contractDetails 10, contractDetailsEnd 52 (the pairs served; others:
                           error 200 "No security definition")
  reqPositions 61       -> position 61 ..., positionEnd 62; a position 61 after every fill
  reqOpenOrders 5, reqAllOpenOrders 16 -> openOrder 5 per working order (this client's; all
                           clients' for 16), openOrderEnd 53 (tws_orders.open_order_fields)
  reqCompletedOrders 99 -> completedOrdersEnd 102
  reqAccountUpdates 6   -> updateAccountValue 6 ..., accountDownloadEnd 54
  reqAccountUpdatesMulti 76 -> accountUpdateMultiEnd 74
  reqExecutions 7       -> execDetails 11 + commissionReport 59 per execution, execDetailsEnd 55
  reqAccountSummary 62  -> accountSummary 63 ..., accountSummaryEnd 64
  reqMktData 1          -> tickPrice 1 (bid 1, ask 2; one write per quote), cancelMktData 2
  reqHistoricalData 20  -> historicalData 17 (formatDate 2: epoch seconds)
  placeOrder 3          -> orderStatus 3 (Submitted), execDetails 11, orderStatus 3 (Filled),
                           commissionReport 59, position 61; a non-marketable IOC limit: Cancelled;
                           a rejection: error 201; held orders rest until ``release_fills``;
                           ``partial_fills``: an IOC order fills that share of its quantity in
                           one execution, the rest cancelled (orderStatus Cancelled, filled > 0);
                           a stop (STP): openOrder 5 and orderStatus 3 (Submitted), resting (GTC)
                           until a quote reaches it (``move_market``: a sell stop at the bid or
                           below, a buy stop at the ask or above), then filled at that quote
  cancelOrder 4         -> orderStatus 3 (Cancelled)
  connectivity          -> error 1100 and the socket closed (a gateway restart), the port
                           refusing connections while down, then 1102 and farm notices 2104..2158
Not emulated: completedOrder 101 (the adapter finds its orders by orderRef in executions),
market depth, tick-by-tick, option computations, news, scanners, PnL, FA, bracket children
(parentId/OCA are read and listed but not linked: the adapter places its stop after the
entry's fill, not as a child), stop-limit and trailing orders, partial fills of resting
(non-IOC) orders.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import struct
from collections import Counter
from dataclasses import dataclass, field

from stairway.emulators.tws_orders import open_order_fields, triggered

SERVER_VERSION = 176
ACCOUNT = "DU123"
CON_IDS = {"EURUSD": 12087792, "GBPUSD": 12087797, "USDJPY": 15016059, "AUDUSD": 14433401}
BAR_SECS = {"1 min": 60, "5 mins": 300, "15 mins": 900, "30 mins": 1800, "1 hour": 3600, "1 day": 86400}


def _frame(*fields) -> bytes:
    body = "".join(f"{f}\0" for f in fields).encode()
    return struct.pack(">I", len(body)) + body


def _ib_time(ts_ns: int) -> str:
    return dt.datetime.fromtimestamp(ts_ns / 1e9, dt.UTC).strftime("%Y%m%d %H:%M:%S UTC")


@dataclass
class ServerOrder:
    order_id: int
    perm_id: int
    client_id: int
    pair: str
    action: str
    quantity: float
    order_type: str
    limit: float | None
    tif: str
    order_ref: str
    status: str = "Submitted"
    filled: float = 0.0
    aux: float | None = None  # a stop order's trigger price (auxPrice)
    parent_id: int = 0

    @property
    def done(self) -> bool:
        return self.status in ("Filled", "Cancelled", "Inactive")


@dataclass
class ServerExecution:
    exec_id: str
    ts_ns: int
    order: ServerOrder
    side: str
    shares: float
    price: float
    commission: float = 2.0


@dataclass
class Session:
    writer: asyncio.StreamWriter
    client_id: int = -1
    market_data: dict[int, str] = field(default_factory=dict)  # reqId -> pair
    gone: asyncio.Event = field(default_factory=asyncio.Event)  # its socket is closed at both ends


class TwsEmulator:
    """The gateway: quotes from ``prices`` ((ts_ns, bid, ask[, pair]) in time order), orders
    filled at the quote, positions, executions and commissions kept server side."""

    def __init__(self, symbol: str = "EURUSD", *others: str) -> None:
        self.pairs = (symbol, *others)
        self.pair = symbol
        self.prices: list[tuple] = []
        self.cursor = 0
        self.now_ns = 1_506_934_800 * 10**9
        self.quotes: dict[str, tuple[float, float]] = {}
        self.server_positions: dict[str, float] = {}
        self.avg_price: dict[str, float] = {}  # the positions' average cost
        self.cash = 100_000.0  # the account's cash: realised P&L and commissions
        self.orders: list[ServerOrder] = []
        self.executions: list[ServerExecution] = []
        self.hold_fills = False
        self.reject_next = 0
        self.reject_stops = 0  # the next N stop orders are rejected (error 201)
        # the next market/limit orders fill only these shares of what they ask (IOC: the rest is
        # cancelled, as IB reports it: Cancelled with filled > 0), one fraction per order
        self.partial_fills: list[float] = []
        self.client_id_in_use = 0  # the next N startApi calls are refused with error 326
        self.lost_on_restart = 0
        self.calls: list[str] = []  # request names, in order
        self.received: list[list[str]] = []  # every request's fields, as decoded
        self.sent: Counter[int] = Counter()  # messages sent, by message id
        self.connects = 0
        self.port = 0
        self.sessions: list[Session] = []
        self._server: asyncio.base_events.Server | None = None
        self._ids = itertools.count(1)
        self._exec_ids = itertools.count(1)
        self._next_valid = 1
        self._client_in = asyncio.Event()  # an API session started (night_restart waits on it)

    # -- the server ---------------------------------------------------------------------------
    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop_listening(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def close(self) -> None:
        for s in list(self.sessions):
            s.writer.close()
        await self.stop_listening()

    @property
    def connected(self) -> bool:
        return any(s.client_id >= 0 for s in self.sessions)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = Session(writer)
        try:
            if await reader.readexactly(4) != b"API\0":
                return
            (n,) = struct.unpack(">I", await reader.readexactly(4))
            versions = (await reader.readexactly(n)).decode()
            lo, hi = (int(v) for v in versions.split()[0].lstrip("v").split(".."))
            if not lo <= SERVER_VERSION <= hi:
                return
            writer.write(_frame(SERVER_VERSION, _ib_time(self.now_ns)))
            self.sessions.append(session)
            while True:
                (n,) = struct.unpack(">I", await reader.readexactly(4))
                fields = (await reader.readexactly(n)).decode().split("\0")[:-1]
                self.received.append(fields)
                self._handle(session, fields)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # the client went, or the emulator is closing
        finally:
            if session in self.sessions:
                self.sessions.remove(session)
            writer.close()
            session.gone.set()

    def _send(self, session: Session, *fields) -> None:
        if not session.writer.is_closing():
            session.writer.write(_frame(*fields))
            self.sent[int(fields[0])] += 1

    def _broadcast(self, *fields) -> None:
        for s in self.sessions:
            if s.client_id >= 0:
                self._send(s, *fields)

    # -- requests -------------------------------------------------------------------------------
    def _handle(self, s: Session, f: list[str]) -> None:
        msg = int(f[0])
        handler = {
            71: self._start_api,
            61: self._req_positions,
            5: self._req_open_orders,
            16: self._req_open_orders,
            99: self._req_completed,
            6: self._req_account_updates,
            76: self._req_account_multi,
            7: self._req_executions,
            62: self._req_account_summary,
            1: self._req_mkt_data,
            2: self._cancel_mkt_data,
            20: self._req_historical,
            9: self._req_contract_details,
            3: self._place_order,
            4: self._cancel_order,
        }.get(msg)
        self.calls.append(str(msg) if handler is None else handler.__name__.lstrip("_"))
        if handler is not None:
            handler(s, f)

    def _start_api(self, s: Session, f: list[str]) -> None:
        # client.startApi: [71, 2, clientId, optionalCapabilities]
        if self.client_id_in_use > 0:
            self.client_id_in_use -= 1
            self._send(s, 4, 2, -1, 326, f"Unable to connect as the client id {f[2]} is already in use.", "")
            s.writer.close()
            return
        s.client_id = int(f[2])
        self.connects += 1
        self._client_in.set()
        self._send(s, 9, 1, self._next_valid)
        self._send(s, 15, 1, ACCOUNT)

    def _contract_fields(self, pair: str) -> tuple:
        # conId, symbol, secType, lastTradeDate, strike, right, multiplier, exchange, currency, localSymbol, tradingClass
        return (
            CON_IDS.get(pair, 1),
            pair[:3],
            "CASH",
            "",
            0.0,
            "",
            "",
            "IDEALPRO",
            pair[3:],
            f"{pair[:3]}.{pair[3:]}",
            f"{pair[:3]}.{pair[3:]}",
        )

    def _position_msg(self, pair: str) -> tuple:
        # decoder.position: [61, 3, account, conId, symbol, secType, lastTradeDate, strike, right,
        # multiplier, exchange, currency, localSymbol, tradingClass, position, avgCost]
        return (
            61, 3, ACCOUNT, *self._contract_fields(pair), self.server_positions.get(pair, 0.0), self.avg_price.get(pair, 0.0)
        )  # fmt: skip

    def _req_positions(self, s: Session, f: list[str]) -> None:
        for pair in self.server_positions:
            self._send(s, *self._position_msg(pair))
        self._send(s, 62, 1)

    def _req_open_orders(self, s: Session, f: list[str]) -> None:
        # reqOpenOrders 5: this client's working orders; reqAllOpenOrders 16: every client's
        for o in self.orders:
            if not o.done and (int(f[0]) == 16 or o.client_id == s.client_id):
                self._send(s, *open_order_fields(o, self._contract_fields(o.pair), ACCOUNT))
        self._send(s, 53, 1)

    def _req_completed(self, s: Session, f: list[str]) -> None:
        self._send(s, 102)

    def _req_account_updates(self, s: Session, f: list[str]) -> None:
        # client.reqAccountUpdates: [6, 2, subscribe, acctCode]; updateAccountValue [6, 2, key, val, currency, account]
        if f[2] == "1":
            for key, value in self._account_values():
                self._send(s, 6, 2, key, value, "USD", ACCOUNT)
            self._send(s, 54, 1, ACCOUNT)

    def _req_contract_details(self, s: Session, f: list[str]) -> None:
        # client.reqContractDetails: [9, 8, reqId, contract (12), includeExpired, secIdType, secId, ...];
        # decoder.contractDetails (server version >= 164): [10, reqId, symbol, secType, lastTimes, strike,
        # right, exchange, currency, localSymbol, marketName, tradingClass, conId, minTick, multiplier,
        # orderTypes, validExchanges, priceMagnifier, underConId, longName, primaryExchange, contractMonth,
        # industry, category, subcategory, timeZoneId, tradingHours, liquidHours, evRule, evMultiplier,
        # numSecIds, aggGroup, underSymbol, underSecType, marketRuleIds, realExpirationDate, stockType,
        # minSize, sizeIncrement, suggestedSizeIncrement]
        req_id, pair = int(f[2]), self._pair_of(f, 3)
        if pair not in self.pairs or f[5] not in ("CASH", ""):
            self._send(s, 4, 2, req_id, 200, "No security definition has been found for the request", "")
            return
        local = f"{pair[:3]}.{pair[3:]}"
        tick = 0.005 if pair.endswith("JPY") else 0.00005
        self._send(s, 10, req_id, pair[:3], "CASH", "", 0.0, "", "IDEALPRO", pair[3:], local, local, local,
                   CON_IDS.get(pair, 1), tick, "", "LMT,MKT,STP", "IDEALPRO", 1, 0, f"{pair[:3]} {pair[3:]}", "",
                   "", "", "", "", "US/Eastern", "", "", "", "", 0, "", "", "", "239", "", "", 1, 1, 1)  # fmt: skip
        self._send(s, 52, 1, req_id)

    def _req_account_multi(self, s: Session, f: list[str]) -> None:
        self._send(s, 74, 1, int(f[2]))

    def _exec_msgs(self, req_id: int, e: ServerExecution) -> list[tuple]:
        # decoder.execDetails (server version < 178): [11, reqId, orderId, contract (conId .. tradingClass:
        # 11 fields, exchange in place of primaryExchange), execId, time, account, exchange, side, shares,
        # price, permId, clientId, liquidation, cumQty, avgPrice, orderRef, evRule, evMultiplier, modelCode,
        # lastLiquidity]; commissionReport: [59, 1, execId, commission, currency, realizedPNL, yield, date]
        o = e.order
        c = self._contract_fields(o.pair)
        return [
            (11, req_id, o.order_id, *c, e.exec_id, _ib_time(e.ts_ns), ACCOUNT, "IDEALPRO", e.side, e.shares,
             e.price, o.perm_id, o.client_id, 0, e.shares, e.price, o.order_ref, "", "", "", 1),
            (59, 1, e.exec_id, e.commission, "USD", "", "", ""),
        ]  # fmt: skip

    def _req_executions(self, s: Session, f: list[str]) -> None:
        # client.reqExecutions: [7, 3, reqId, clientId, acctCode, time, symbol, secType, exchange, side]
        req_id = int(f[2])
        for e in self.executions:
            for m in self._exec_msgs(req_id, e):
                self._send(s, *m)
        self._send(s, 55, 1, req_id)

    def _req_account_summary(self, s: Session, f: list[str]) -> None:
        # client.reqAccountSummary: [62, 1, reqId, group, tags]; accountSummary [63, 1, reqId, account, tag, value, ccy]
        req_id = int(f[2])
        for tag, value in (*self._account_values(), ("InitMarginReq", "0")):
            self._send(s, 63, 1, req_id, ACCOUNT, tag, value, "USD")
        self._send(s, 64, 1, req_id)

    @staticmethod
    def _pair_of(f: list[str], at: int) -> str:
        """The pair of a contract encoded from field ``at`` (conId, symbol, secType, .., currency at +9)."""
        return f[at + 1] + f[at + 9]

    def _req_mkt_data(self, s: Session, f: list[str]) -> None:
        # client.reqMktData: [1, 11, reqId, contract (12 fields), deltaNeutral, genericTicks, snapshot, ...]
        s.market_data[int(f[2])] = self._pair_of(f, 3)

    def _cancel_mkt_data(self, s: Session, f: list[str]) -> None:
        s.market_data.pop(int(f[2]), None)

    def _req_historical(self, s: Session, f: list[str]) -> None:
        # client.reqHistoricalData: [20, reqId, contract (12), includeExpired, endDateTime, barSize,
        # duration, useRTH, whatToShow, formatDate, keepUpToDate, chartOptions]
        req_id, pair = int(f[1]), self._pair_of(f, 2)
        end_s, size, duration, what = f[15], f[16], f[17], f[19]
        end = (
            self.now_ns
            if not end_s
            else int(dt.datetime.strptime(end_s, "%Y%m%d %H:%M:%S UTC").replace(tzinfo=dt.UTC).timestamp()) * 10**9
        )
        n, unit = duration.split()
        lo = end - int(n) * {"D": 86400, "W": 7 * 86400, "S": 1}[unit] * 10**9
        step = BAR_SECS[size] * 10**9
        buckets: dict[int, list[float]] = {}
        for ts, bid, ask, *named in self.prices:
            if lo <= ts < end and ts <= self.now_ns and (named[0] if named else self.pair) == pair:
                p = {"MIDPOINT": (bid + ask) / 2, "BID": bid, "ASK": ask}[what]
                buckets.setdefault(ts - ts % step, []).append(p)
        bars = [(t0 // 10**9, v[0], max(v), min(v), v[-1], -1, -1, -1) for t0, v in sorted(buckets.items())]
        self._send(s, 17, req_id, _ib_time(lo), _ib_time(end), len(bars), *(x for b in bars for x in b))

    def _place_order(self, s: Session, f: list[str]) -> None:
        # client.placeOrder: [3, orderId, contract (12), secIdType, secId, action, totalQuantity, orderType,
        # lmtPrice, auxPrice, tif, ocaGroup, account, openClose, origin, orderRef, transmit, parentId, ...]
        order_id = int(f[1])
        if any(o.order_id == order_id and o.client_id == s.client_id for o in self.orders):
            self._send(s, 4, 2, order_id, 103, "Duplicate order id", "")
            return
        self._next_valid = max(self._next_valid, order_id + 1)
        o = ServerOrder(
            order_id, 900_000 + next(self._ids), s.client_id, self._pair_of(f, 2), f[16], float(f[17]), f[18],
            float(f[19]) if f[19] else None, f[21], f[26], aux=float(f[20]) if f[20] else None,
            parent_id=int(f[28] or 0),
        )  # fmt: skip
        self.orders.append(o)
        if self.reject_next:
            self.reject_next -= 1
            o.status = "Cancelled"
            self._send(s, 4, 2, order_id, 201, "Order rejected - reason: margin", "")
            return
        if o.order_type == "STP":  # rests until a quote triggers it (tws_orders.triggered), listed as open
            if self.reject_stops:
                self.reject_stops -= 1
                o.status = "Cancelled"
                self._send(s, 4, 2, order_id, 201, "Order rejected - reason: stop price too close", "")
                return
            self._send(s, *open_order_fields(o, self._contract_fields(o.pair), ACCOUNT))
            self._status(o)
            return
        self._status(o)
        if not self.hold_fills:
            self._fill(o)

    def _cancel_order(self, s: Session, f: list[str]) -> None:
        # client.cancelOrder: [4, 1, orderId, manualCancelOrderTime]
        for o in self.orders:
            if o.order_id == int(f[2]) and o.client_id == s.client_id and not o.done:
                o.status = "Cancelled"
                self._status(o)

    def _status(self, o: ServerOrder, last: float = 0.0) -> None:
        # orderStatus: [3, orderId, status, filled, remaining, avgFillPrice, permId, parentId, lastFillPrice,
        # clientId, whyHeld, mktCapPrice]
        for s in self.sessions:
            if s.client_id == o.client_id:
                self._send(s, 3, o.order_id, o.status, o.filled, o.quantity - o.filled, last, o.perm_id, 0, last,
                           o.client_id, "", 0.0)  # fmt: skip

    # -- the market -------------------------------------------------------------------------------
    def quote(self, pair: str) -> tuple[float, float]:
        return self.quotes.get(pair, (1.1733, 1.1734))

    @property
    def orders_placed(self) -> int:
        """placeOrder requests received (manual orders in TWS not counted)."""
        return sum(1 for o in self.orders if o.order_ref or o.client_id > 0)

    @property
    def server_position(self) -> float:
        return self.server_positions.get(self.pair, 0.0)

    def _fill(self, o: ServerOrder, manual: bool = False) -> None:
        buy = o.action == "BUY"
        bid, ask = self.quote(o.pair)
        price = ask if buy else bid
        if o.order_type == "LMT" and o.limit is not None and (price > o.limit if buy else price < o.limit):
            o.status = "Cancelled"  # an IOC limit the market has left: nothing filled
            self._status(o)
            return
        shares = o.quantity - o.filled
        if self.partial_fills and o.order_type != "STP" and not manual:
            shares = float(round(shares * self.partial_fills.pop(0)))
        e = ServerExecution(f"0001f4e8.{next(self._exec_ids):08d}.01.01", self.now_ns, o, "BOT" if buy else "SLD",
                            shares, price)  # fmt: skip
        self.executions.append(e)
        self._book(o.pair, e.shares if buy else -e.shares, price, e.commission)
        o.filled += shares
        o.status = "Filled" if o.filled >= o.quantity else "Cancelled"  # IOC: the unfilled rest cancelled
        exec_msg, commission = self._exec_msgs(-1, e)
        for s in self.sessions:
            if s.client_id == o.client_id or manual:
                self._send(s, *exec_msg)
        self._status(o, price)
        for s in self.sessions:
            if s.client_id == o.client_id or manual:
                self._send(s, *commission)
        self._broadcast(*self._position_msg(o.pair))

    def _book(self, pair: str, units: float, price: float, commission: float) -> None:
        """The account's side of a fill: the position at its average cost, realised P&L and the
        commission in cash (quote currency taken for the account's, as the book does)."""
        pos, avg = self.server_positions.get(pair, 0.0), self.avg_price.get(pair, 0.0)
        self.cash -= commission
        if pos and (pos > 0) != (units > 0):  # reducing (and perhaps reversing)
            closed = min(abs(units), abs(pos)) * (1 if pos > 0 else -1)
            self.cash += closed * (price - avg)
        new = pos + units
        if not new:
            self.avg_price.pop(pair, None)
        elif not pos or (pos > 0) != (new > 0):
            self.avg_price[pair] = price  # opened, or reversed: the rest at this price
        elif (pos > 0) == (units > 0):
            self.avg_price[pair] = (pos * avg + units * price) / new
        self.server_positions[pair] = new

    def net_liquidation(self) -> float:
        """Cash plus the open positions marked where they would close (a long at the bid)."""
        out = self.cash
        for pair, units in self.server_positions.items():
            if units:
                bid, ask = self.quote(pair)
                out += units * ((bid if units > 0 else ask) - self.avg_price.get(pair, 0.0))
        return out

    def _account_values(self) -> tuple[tuple[str, str], ...]:
        return (("NetLiquidation", f"{self.net_liquidation():.2f}"), ("TotalCashValue", f"{self.cash:.2f}"))

    def release_fills(self) -> None:
        self.hold_fills = False
        for o in self.orders:
            if not o.done and o.order_type != "STP":
                self._fill(o)

    def move_market(self, pair: str, bid: float, ask: float, ts_ns: int | None = None) -> None:
        """The market's quote now (subscribed or not: a client that is down still has its stops
        worked); a resting stop it reaches fills at it."""
        self.now_ns, self.quotes[pair] = ts_ns if ts_ns is not None else self.now_ns, (bid, ask)
        for o in [o for o in self.orders if o.pair == pair and triggered(o, bid, ask)]:
            self._fill(o)

    def manual_trade(self, units: float, pair: str | None = None) -> None:
        """An order placed by hand in TWS (client 0, no orderRef)."""
        o = ServerOrder(0, 800_000 + next(self._ids), 0, pair or self.pair, "BUY" if units > 0 else "SELL",
                        abs(units), "MKT", None, "DAY", "")  # fmt: skip
        self.orders.append(o)
        self._fill(o, manual=True)

    async def stream(self, interval: float = 0.003, stop: asyncio.Event | None = None) -> None:
        """Hand out the prices, one quote every ``interval`` seconds, to the subscribed clients
        (the clock stands still while nobody is subscribed)."""
        while self.cursor < len(self.prices) and not (stop and stop.is_set()):
            ts, bid, ask, *named = self.prices[self.cursor]
            pair = named[0] if named else self.pair
            subs = [(s, r) for s in self.sessions for r, p in s.market_data.items() if p == pair]
            if subs:
                self.cursor += 1
                self.move_market(pair, bid, ask, ts)
                for s, req_id in subs:  # bid and ask in one write: one update of the ticker
                    if not s.writer.is_closing():
                        s.writer.write(
                            _frame(1, 6, req_id, 1, bid, 1_000_000, 0) + _frame(1, 6, req_id, 2, ask, 1_000_000, 0)
                        )
                        self.sent[1] += 2
            await asyncio.sleep(interval)

    async def night_restart(self, down_secs: float = 0.3, client_id_in_use: int = 1, notices: bool = True) -> None:
        """A gateway restart as the API client sees it: 1100, the socket closed, the port refusing
        connections, the old session holding the client id for a while (326), then 1102 and the
        farm notices once a client is back (``notices``: wait for one)."""
        self._broadcast(4, 2, -1, 1100, "Connectivity between IB and Trader Workstation has been lost.", "")
        old, self.sessions = list(self.sessions), []  # nothing more is written to them
        for s in old:  # half-closed: the client reads what was sent (its quotes' clock), then closes its end
            await s.writer.drain()
            s.writer.write_eof()
        await self.stop_listening()
        if old:
            try:
                await asyncio.wait_for(asyncio.gather(*(s.gone.wait() for s in old)), 5)
            finally:
                for s in old:
                    s.writer.close()
        if self.lost_on_restart:
            self.cursor = min(len(self.prices), self.cursor + self.lost_on_restart)
            self.now_ns = self.prices[self.cursor - 1][0]
        await asyncio.sleep(down_secs)
        self.client_id_in_use = client_id_in_use
        self._client_in.clear()
        await self.start()
        if not notices:  # (a client that does not reconnect by itself)
            return
        await self._client_in.wait()
        for code, msg in (
            (1102, "Connectivity between IB and Trader Workstation has been restored - data maintained."),
            (2104, "Market data farm connection is OK:usfarm"),
            (2106, "HMDS data farm connection is OK"),
            (2158, "Sec-def data farm connection is OK"),
            (2103, "Market data farm connection is broken:usfarm"),
            (2105, "HMDS data farm connection is broken:ushmds"),
            (2104, "Market data farm connection is OK:usfarm"),
        ):
            self._broadcast(4, 2, -1, code, msg, "")
