"""A fake Interactive Brokers gateway at the ib_async ``IB``-object level.

It exposes the subset of ``ib_async.IB`` the adapter uses (connectAsync, isConnected,
disconnect, placeOrder, cancelOrder, trades, fills, positions, reqMktData,
reqAllOpenOrdersAsync, reqExecutionsAsync, reqPositionsAsync, accountSummaryAsync and the
events errorEvent, disconnectedEvent, pendingTickersEvent) and builds ib_async's own
objects (Trade, Order, OrderStatus, Execution, Fill, CommissionReport, Position, Ticker).

Several contracts can be traded at once (``FakeIB("EURUSD", "GBPUSD", ...)``): each has its
own quotes, ticker and position; a price entry (ts, bid, ask, pair) goes to that pair's
ticker, a plain (ts, bid, ask) to the first.

Like the real client library, the client's view (trades, fills, positions) is cleared on
disconnect and refilled by the req* calls; executions that happen while the client is away
exist only on the "server" until reqExecutions. Order ids continue across reconnects, as
the gateway's nextValidId does.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools

from eventkit import Event
from ib_async import (
    AccountValue,
    BarData,
    CommissionReport,
    Execution,
    Fill,
    Forex,
    OrderStatus,
    Position,
    Ticker,
    Trade,
    TradeLogEntry,
)


def _dt(ts_ns: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts_ns / 1e9, dt.UTC)


def _pair(contract) -> str:
    return contract.symbol + contract.currency


class FakeIB:
    def __init__(self, symbol: str = "EURUSD", *others: str) -> None:
        self.errorEvent, self.disconnectedEvent = Event("errorEvent"), Event("disconnectedEvent")
        self.pendingTickersEvent = Event("pendingTickersEvent")
        self.contracts = {p: Forex(p) for p in (symbol, *others)}
        self.contract = self.contracts[symbol]
        self.quotes: dict[str, tuple[float, float]] = {}
        self.server_positions: dict[str, float] = {}
        self.tickers: dict[str, Ticker] = {}
        self.connected = False
        self.gateway_up = True
        self.client_id_in_use = 0  # the next N connects fail with error 326
        self.hold_fills = False  # orders rest (not filled) until released
        self.reject_next = 0
        self.calls: list[str] = []  # req* and connects, in order
        self.prices: list[tuple[int, float, float]] = []
        self.cursor = 0
        self.lost_on_restart = 0  # quotes skipped by night_restart (an outage's worth of market)
        self.now_ns = 1_506_934_800 * 10**9
        self.bid, self.ask = 1.1733, 1.1734
        self._ids = itertools.count(1)
        self._exec_ids = itertools.count(1)
        self.server_trades: list[Trade] = []
        self.server_fills: list[Fill] = []
        self.orders_placed = 0
        self._trades: list[Trade] = []
        self._fills: list[Fill] = []
        self._positions: list[Position] = []
        self.connects = 0

    @property
    def server_position(self) -> float:
        """The first contract's position at the broker."""
        return self.server_positions.get(_pair(self.contract), 0.0)

    @property
    def ticker(self) -> Ticker | None:
        return self.tickers.get(_pair(self.contract))

    def quote(self, pair: str) -> tuple[float, float]:
        return self.quotes.get(pair, (self.bid, self.ask))

    # -- connection -------------------------------------------------------------------------
    async def connectAsync(self, host="127.0.0.1", port=7497, clientId=1, timeout=4, **_):
        await asyncio.sleep(0)
        self.calls.append("connect")
        if not self.gateway_up:
            raise ConnectionRefusedError(f"connect to {host}:{port} refused")
        if self.client_id_in_use > 0:
            self.client_id_in_use -= 1
            self.errorEvent.emit(-1, 326, f"Unable to connect as the client id {clientId} is already in use.", None)
            raise ConnectionError("API connection failed: client id in use")
        self.connected = True
        self.connects += 1
        return self

    def isConnected(self) -> bool:
        return self.connected

    def disconnect(self) -> None:
        if self.connected:
            self._drop()

    def _drop(self) -> None:
        self.connected = False
        self.tickers = {}
        self._trades, self._fills, self._positions = [], [], []
        self.disconnectedEvent.emit()

    async def reqAllOpenOrdersAsync(self):
        self.calls.append("reqAllOpenOrders")
        self._trades = list(self.server_trades)
        return [t for t in self._trades if not t.isDone()]

    async def reqExecutionsAsync(self, execFilter=None):
        self.calls.append("reqExecutions")
        self._fills = list(self.server_fills)
        return list(self._fills)

    async def reqPositionsAsync(self):
        self.calls.append("reqPositions")
        self._sync_positions()
        return list(self._positions)

    def _sync_positions(self) -> None:
        self._positions = [
            Position("DU123", self.contracts[p], units, self.quote(p)[1])
            for p, units in self.server_positions.items()
            if units
        ]

    async def accountSummaryAsync(self, account: str = ""):
        return [
            AccountValue("DU123", "NetLiquidation", "100000", "USD", ""),
            AccountValue("DU123", "TotalCashValue", "100000", "USD", ""),
        ]

    def trades(self):
        return list(self._trades)

    def fills(self):
        return list(self._fills)

    def positions(self):
        return list(self._positions)

    def reqMktData(self, contract, *args, **kwargs) -> Ticker:
        self.calls.append("reqMktData")
        self.tickers[_pair(contract)] = t = Ticker(contract=contract)
        return t

    # -- orders -----------------------------------------------------------------------------
    def placeOrder(self, contract, order) -> Trade:
        assert self.connected, "placeOrder while disconnected"
        order.orderId = next(self._ids)
        order.permId = 900_000 + order.orderId
        self.orders_placed += 1
        trade = Trade(
            contract,
            order,
            OrderStatus(orderId=order.orderId, status="Submitted", remaining=order.totalQuantity),
            [],
            [TradeLogEntry(_dt(self.now_ns), "Submitted", "")],
        )
        self.server_trades.append(trade)
        self._trades.append(trade)
        if self.reject_next:
            self.reject_next -= 1
            trade.orderStatus.status = "Cancelled"
            trade.log.append(TradeLogEntry(_dt(self.now_ns), "Cancelled", "Order rejected - reason: margin", 201))
            self.errorEvent.emit(order.orderId, 201, "Order rejected - reason: margin", contract)
        elif not self.hold_fills:
            asyncio.get_running_loop().call_soon(self._fill, trade)
        return trade

    def cancelOrder(self, order) -> None:
        for t in self.server_trades:
            if t.order.orderId == order.orderId and not t.isDone():
                t.orderStatus.status = "Cancelled"

    def release_fills(self) -> None:
        """Fill every resting order now (at the broker, whether or not the client listens)."""
        self.hold_fills = False
        for t in self.server_trades:
            if not t.isDone():
                self._fill(t)

    def _fill(self, trade: Trade, order_ref: str | None = None) -> None:
        o = trade.order
        sign = 1.0 if o.action == "BUY" else -1.0
        pair = _pair(trade.contract)
        bid, ask = self.quote(pair)
        price = ask if sign > 0 else bid
        if o.orderType == "LMT" and (price > o.lmtPrice if sign > 0 else price < o.lmtPrice):
            # an IOC limit that is not marketable: cancelled at once, nothing filled (TWS's way)
            trade.orderStatus.status = "Cancelled"
            trade.log.append(TradeLogEntry(_dt(self.now_ns), "Cancelled", ""))
            return
        ex = Execution(
            execId=f"0001f4e8.{next(self._exec_ids):08d}.01.01",
            time=_dt(self.now_ns),
            acctNumber="DU123",
            exchange="IDEALPRO",
            side="BOT" if sign > 0 else "SLD",
            shares=o.totalQuantity,
            price=price,
            permId=o.permId,
            clientId=17,
            orderId=o.orderId,
            cumQty=o.totalQuantity,
            avgPrice=price,
            orderRef=o.orderRef if order_ref is None else order_ref,
        )
        fill = Fill(trade.contract, ex, CommissionReport(ex.execId, 2.0, "USD"), ex.time)
        self.server_fills.append(fill)
        self.server_positions[pair] = self.server_positions.get(pair, 0.0) + sign * o.totalQuantity
        trade.fills.append(fill)
        trade.orderStatus.status, trade.orderStatus.filled, trade.orderStatus.remaining = "Filled", o.totalQuantity, 0
        if self.connected:  # the client hears of it only while connected
            self._fills.append(fill)
            self._sync_positions()

    def manual_trade(self, units: float, pair: str | None = None) -> None:
        """An order placed by hand in TWS: no orderRef."""
        from ib_async import MarketOrder

        order = MarketOrder("BUY" if units > 0 else "SELL", abs(units))
        order.orderId, order.permId = next(self._ids), 800_000 + next(self._ids)
        contract = self.contracts[pair] if pair else self.contract
        trade = Trade(contract, order, OrderStatus(status="Submitted"), [], [])
        self.server_trades.append(trade)
        self._fill(trade, order_ref="")

    # -- history ------------------------------------------------------------------------------
    BAR_SECS = {"1 min": 60, "5 mins": 300, "15 mins": 900, "30 mins": 1800, "1 hour": 3600, "1 day": 86400}

    async def reqHistoricalDataAsync(
        self, contract, endDateTime, durationStr, barSizeSetting, whatToShow, useRTH, formatDate=1, **_
    ):
        """Bars built from the price list up to the fake's clock, as ib_async's BarData (date a
        UTC datetime with formatDate=2), for [end - duration, end); the bar still open is
        included, as the gateway does."""
        await asyncio.sleep(0)
        self.calls.append("reqHistoricalData")
        if not self.connected:
            raise ConnectionError("Not connected")
        n, unit = durationStr.split()
        step = self.BAR_SECS[barSizeSetting] * 10**9
        end = self.now_ns if endDateTime in ("", None) else int(endDateTime.timestamp()) * 10**9
        lo = end - int(n) * {"D": 86400, "W": 7 * 86400, "S": 1}[unit] * 10**9
        want = _pair(contract)
        buckets: dict[int, list[float]] = {}
        for ts, bid, ask, *named in self.prices:
            if lo <= ts < end and ts <= self.now_ns and (named[0] if named else _pair(self.contract)) == want:
                p = {"MIDPOINT": (bid + ask) / 2, "BID": bid, "ASK": ask}[whatToShow]
                buckets.setdefault(ts - ts % step, []).append(p)
        return [
            BarData(date=_dt(t0), open=v[0], high=max(v), low=min(v), close=v[-1], volume=-1, average=-1, barCount=-1)
            for t0, v in sorted(buckets.items())
        ]

    # -- quotes and the night --------------------------------------------------------------
    async def stream(self, interval: float = 0.003, stop: asyncio.Event | None = None) -> None:
        while self.cursor < len(self.prices) and not (stop and stop.is_set()):
            ts, bid, ask, *named = self.prices[self.cursor]
            pair = named[0] if named else _pair(self.contract)
            t = self.tickers.get(pair)
            if self.connected and t is not None:
                self.bid, self.ask = bid, ask
                self.quotes[pair] = (bid, ask)
                self.now_ns = ts
                self.cursor += 1
                t.time, t.bid, t.ask = _dt(ts), bid, ask
                self.pendingTickersEvent.emit({t})
            await asyncio.sleep(interval)

    async def night_restart(self, down_secs: float = 0.3, client_id_in_use: int = 1) -> None:
        """What a gateway restart looks like to the API client: 1100, the socket closes, the
        gateway is away, the old session holds the client id for a while (326), then the
        farm notices (2104/2106/2158 OK, 2103 broken then 2104 OK again)."""
        self.errorEvent.emit(-1, 1100, "Connectivity between IB and Trader Workstation has been lost.", None)
        self.gateway_up = False
        self._drop()
        if self.lost_on_restart:  # the market moved on while the gateway was away: those quotes never arrive
            self.cursor = min(len(self.prices), self.cursor + self.lost_on_restart)
            self.now_ns = self.prices[self.cursor - 1][0]
        await asyncio.sleep(down_secs)
        self.client_id_in_use = client_id_in_use
        self.gateway_up = True
        while not self.connected:
            await asyncio.sleep(0.01)
        for code, msg in (
            (1102, "Connectivity between IB and Trader Workstation has been restored - data maintained."),
            (2104, "Market data farm connection is OK:usfarm"),
            (2106, "HMDS data farm connection is OK"),
            (2158, "Sec-def data farm connection is OK"),
            (2103, "Market data farm connection is broken"),
            (2105, "HMDS data farm connection is broken"),
            (2104, "Market data farm connection is OK"),
        ):
            self.errorEvent.emit(-1, code, msg, None)
            await asyncio.sleep(0.01)
