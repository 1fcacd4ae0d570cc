"""Interactive Brokers adapter over ib_async's IB object (ib_insync when only it exists).

- Orders: MarketOrder with ``orderRef`` = our client order id. Before placing, the
  session's trades and executions are searched by orderRef, so a resubmission after a
  reconnect returns the first order instead of placing a second. Order ids are assigned
  by ib_async from the gateway's nextValidId on every connection: never reused.
- ``submit`` waits (bounded) for the market order to finish; past the bound its outcome is
  unknown (TransientError) and reconciliation asks again by orderRef.
- Connection: ``disconnectedEvent`` (the API socket is gone, e.g. the gateway's nightly
  restart) starts a reconnect loop with capped, jittered backoff; after every connect the
  adapter requests all open orders, executions and positions, then resubscribes quotes.
  Error codes are classified (daemon.brokers.ib.errors): 1100 marks the link down without
  touching the socket, 1101/1102 resync, 2103-2108/2157/2158 are notices only, 326 (client
  id in use) is retried with backoff.
"""

from __future__ import annotations

import asyncio
import calendar
import dataclasses
import datetime as dt
import math
import time
from collections import deque
from collections.abc import Callable

import numpy as np
import structlog

from stairway.core.broker import (
    BOUNDS_VIOLATION,
    AccountReport,
    FillBatch,
    FillReport,
    OrderReport,
    OrderState,
    PositionReport,
    TradeStop,
)
from stairway.core.errors import BadPayload, FatalError, OrderRejected, TransientError
from stairway.core.types import BAR_DTYPE, NS_PER_DAY, OrderIntent, is_stop_id, stop_order_id
from stairway.daemon.aio import backoff_delay, spawn
from stairway.daemon.brokers.ib.errors import IBErrorClass, classify
from stairway.daemon.config import IBConfig

log = structlog.get_logger("ib")

try:  # the maintained fork first
    import ib_async as ibapi
except ImportError:  # pragma: no cover - only when ib_insync alone is installed
    import ib_insync as ibapi  # type: ignore[no-redef]

DONE = {"Filled", "Cancelled", "ApiCancelled", "Inactive"}


def bound_tick(price: float, instrument: str, buy: bool) -> float:
    """A limit price on IDEALPRO's grid (half a pip: 0.00005 for EUR.USD, 0.005 for USD.JPY),
    rounded inward (a buy down, a sell up) so the rounding never loosens the bound."""
    from stairway.core.config import fx_pip_size

    tick = (fx_pip_size(instrument) if "_" in instrument else 0.01) / 2
    k = math.floor(price / tick + 1e-9) if buy else math.ceil(price / tick - 1e-9)
    return round(k * tick, 10)


CONNECT_ERRORS = (ConnectionError, OSError, TimeoutError, asyncio.TimeoutError)


def make_contract(cfg: IBConfig):
    if cfg.sec_type == "CASH":
        return ibapi.Forex(cfg.symbol + cfg.currency, exchange=cfg.exchange)
    return ibapi.Stock(cfg.symbol, cfg.exchange, cfg.currency)


class IBBroker:
    name = "ib"
    HISTORY_PAGE_GAP_SECS = 2.0
    HISTORY_MAX_PAGE_DAYS = 365

    def __init__(
        self,
        cfg: IBConfig,
        instruments: str | dict[str, IBConfig],
        ib=None,
        max_connect_attempts: int = 0,
    ) -> None:
        """``instruments``: every instrument traded and its contract's settings (a portfolio),
        or one instrument's name, traded with ``cfg``'s contract. ``cfg``: the connection."""
        self.cfg = cfg
        self.ib = ib if ib is not None else ibapi.IB()
        by_name = {instruments: cfg} if isinstance(instruments, str) else instruments
        self.contracts = {k: make_contract(c) for k, c in by_name.items()}
        self.link_up = False  # API socket connected and gateway <-> IB servers connected
        self.errors: deque[tuple[int, str]] = deque(maxlen=256)
        self.reconnects = 0
        self.max_connect_attempts = max_connect_attempts  # 0: keep trying
        self.on_connected: list[Callable[[], None]] = []  # the feed resubscribes here
        self._closing = False
        self._reconnect_task: asyncio.Task | None = None
        self._wired = False
        self._sync_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"IBBroker({self.cfg.host}:{self.cfg.port}, client_id={self.cfg.client_id})"

    # -- connection -------------------------------------------------------------------------
    def instrument_of(self, contract) -> str | None:
        """Our name for one of our contracts; None for any other."""
        key = (contract.symbol, contract.currency, contract.secType)
        for name, c in self.contracts.items():
            if key == (c.symbol, c.currency, c.secType):
                return name
        return None

    def _mine(self, contract) -> bool:
        return self.instrument_of(contract) is not None

    async def connect(self) -> None:
        if not self._wired:
            self.ib.errorEvent += self._on_error
            self.ib.disconnectedEvent += self._on_disconnected
            self._wired = True
        await self._connect_with_retry()

    async def _connect_with_retry(self) -> None:
        attempt = 0
        while not self._closing:
            try:
                async with self._sync_lock:  # no 1101/1102 resync until this one is done
                    await self._connect_once()
                    await self._qualify()
                    await self._resync()
                self.link_up = True
                log.info("ib_connected", reconnects=self.reconnects)
                for cb in self.on_connected:
                    cb()
                return
            except CONNECT_ERRORS as e:
                attempt += 1
                if self.max_connect_attempts and attempt >= self.max_connect_attempts:
                    raise TransientError(
                        f"IB {self.cfg.host}:{self.cfg.port}: not reachable after {attempt} attempts: {e!r}"
                    ) from e
                delay = backoff_delay(attempt, self.cfg.backoff_base_secs, self.cfg.backoff_cap_secs)
                log.warning("ib_connect_failed", attempt=attempt, error=repr(e), delay_secs=round(delay, 3))
                await asyncio.sleep(delay)

    async def _connect_once(self) -> None:
        """connectAsync, ended early by the client's ``apiError``: a gateway that refuses the
        session (326, client id in use) sends the error and closes the socket, and ib_async
        would wait for the API to start until its timeout (found against the TWS wire emulator)."""
        loop = asyncio.get_running_loop()
        failed: asyncio.Future[str] = loop.create_future()

        def on_api_error(msg: str) -> None:
            if not failed.done():
                failed.set_result(str(msg))

        self.ib.client.apiError += on_api_error
        connect = asyncio.ensure_future(
            self.ib.connectAsync(self.cfg.host, self.cfg.port, clientId=self.cfg.client_id, timeout=10)
        )
        try:
            await asyncio.wait({connect, failed}, return_when=asyncio.FIRST_COMPLETED)
            if connect.done():
                connect.result()
                return
            connect.cancel()
            await asyncio.gather(connect, return_exceptions=True)
            raise ConnectionError(f"IB API connection failed: {failed.result()}")
        finally:
            self.ib.client.apiError -= on_api_error

    async def _qualify(self) -> None:
        """Our contracts' conIds from the gateway's contract details: ib_async keys market data
        by conId and refuses an unqualified contract (found against the TWS wire emulator: the
        IB-object stand-in took any contract). Once; a contract IB does not know is fatal."""
        todo = [c for c in self.contracts.values() if not c.conId]
        if not todo:
            return
        got = await self.ib.qualifyContractsAsync(*todo)
        unknown = [f"{c.symbol}{c.currency}" for c, q in zip(todo, got) if q is None]
        if unknown:
            raise FatalError(f"IB does not know the contract(s) {unknown} (broker.ib symbol/currency/exchange)")

    async def _resync(self) -> None:
        """After any (re)connect or 1101/1102: the broker's open orders, executions and
        positions, each bounded by the connect timeout. Callers hold ``_sync_lock``: ib_async
        keys a pending open-orders request by name, and a second one while the first is out
        (its own start-up fetch included) leaves the first unanswered for good (found on the
        wire, when 1102 came during a reconnect)."""
        for req in (self.ib.reqAllOpenOrdersAsync, self.ib.reqExecutionsAsync, self.ib.reqPositionsAsync):
            await asyncio.wait_for(req(), 10)

    def _on_disconnected(self) -> None:
        self.link_up = False
        if self._closing or (self._reconnect_task is not None and not self._reconnect_task.done()):
            return
        self.reconnects += 1
        log.error("ib_disconnected", reconnects=self.reconnects)
        self._reconnect_task = spawn(self._connect_with_retry(), "ib-reconnect")

    def _on_error(self, req_id: int, code: int, message: str, contract=None) -> None:
        cls = classify(code)
        self.errors.append((int(code), cls.value))
        if cls is IBErrorClass.FARM_NOTICE:
            log.info("ib_notice", code=code, message=message)
        elif cls is IBErrorClass.CONNECTIVITY_LOST:
            self.link_up = False  # the gateway reconnects to IB by itself; the socket stays up
            log.error("ib_connectivity_lost", code=code, message=message)
        elif cls in (IBErrorClass.RESTORED, IBErrorClass.RESTORED_DATA_LOST):
            log.warning("ib_connectivity_restored", code=code, data_lost=cls is IBErrorClass.RESTORED_DATA_LOST)
            spawn(self._after_restore(cls), "ib-resync")
        elif cls is IBErrorClass.CLIENT_ID_IN_USE:
            log.error("ib_client_id_in_use", client_id=self.cfg.client_id, message=message)
        else:
            log.warning("ib_error", req_id=req_id, code=code, message=message)

    async def _after_restore(self, cls: IBErrorClass) -> None:
        try:
            async with self._sync_lock:
                await self._resync()
        except CONNECT_ERRORS as e:
            log.error("ib_resync_failed", error=repr(e))
            return
        self.link_up = self.ib.isConnected()
        if cls is IBErrorClass.RESTORED_DATA_LOST:
            for cb in self.on_connected:
                cb()

    async def close(self) -> None:
        self._closing = True
        if self._reconnect_task is not None:
            self._reconnect_task.cancel()
        if self.ib.isConnected():
            self.ib.disconnect()

    # -- orders -----------------------------------------------------------------------------
    def _trade_by_ref(self, coid: str):
        return next((t for t in self.ib.trades() if t.order.orderRef == coid), None)

    def _report(self, coid: str, units: float, trade=None, instrument: str | None = None) -> OrderReport | None:
        fills = [f for f in self.ib.fills() if f.execution.orderRef == coid]
        filled = sum(_signed(f) for f in fills)
        if trade is None and not fills:
            return None
        status = trade.orderStatus.status if trade is not None else "Filled"
        o = trade.order if trade is not None else None
        broker_id = str(o.permId or o.orderId) if o is not None else str(fills[0].execution.permId)
        if status == "Filled" or (fills and status not in DONE and abs(filled) >= abs(units) - 1e-9):
            state = OrderState.FILLED if abs(filled) >= abs(units) - 1e-9 else OrderState.PARTIALLY_FILLED
        elif status in DONE:
            rejected = trade is not None and any(e.errorCode in (201, 203) for e in trade.log if e.errorCode)
            state = OrderState.PARTIALLY_FILLED if filled else OrderState.REJECTED if rejected else OrderState.CANCELLED
        else:
            state = OrderState.PENDING
        reason = trade.log[-1].message if trade is not None and trade.log else ""
        contract = trade.contract if trade is not None else fills[0].contract
        name = instrument or self.instrument_of(contract) or _foreign_name(contract)
        return OrderReport(coid, broker_id, name, units, filled, state, reason)

    async def submit(self, intent: OrderIntent) -> OrderReport:
        coid, units = intent.client_order_id, intent.units * int(intent.side)
        contract = self.contracts.get(intent.instrument)
        if contract is None:
            raise OrderRejected(f"{coid}: {intent.instrument} is not an instrument of this IB connection")
        known = self._report(coid, units, self._trade_by_ref(coid), intent.instrument)
        if known is not None:  # placed before (a retry or a reconnect): never a second order
            return known
        if not self.ib.isConnected():
            raise TransientError(f"{coid}: IB not connected; nothing was sent")
        # an IB stop is an order of its own, not tied to a trade: it goes before anything else is
        # sent for the instrument (a reversal would otherwise leave it to fire on the new side)
        before = self._held(contract)
        if await self._cancel_stops(contract, coid):
            raise OrderRejected(f"{coid}: the protective stop filled first; nothing sent, the next decision decides")
        action = "BUY" if units > 0 else "SELL"
        order: ibapi.Order
        if intent.price_bound is None:
            order = ibapi.MarketOrder(action, abs(units), orderRef=coid, tif="IOC")
        else:  # a marketable limit: fills up to the bound, the rest cancelled (IOC)
            limit = bound_tick(intent.price_bound, intent.instrument, units > 0)
            order = ibapi.LimitOrder(action, abs(units), limit, orderRef=coid, tif="IOC")
        trade = self.ib.placeOrder(contract, order)
        await self._wait([trade], trade.isDone)
        rep = self._report(coid, units, trade, intent.instrument)
        if rep is not None and intent.price_bound is not None and rep.state is OrderState.CANCELLED:
            rep = dataclasses.replace(rep, reason=BOUNDS_VIOLATION)  # an IOC limit the market had left
        if rep is None or rep.state is OrderState.PENDING:
            raise TransientError(f"{coid}: IB order {order.orderId} not done after {self.cfg.fill_timeout_secs:g} s")
        if rep.state is OrderState.REJECTED:
            raise OrderRejected(f"{coid}: IB rejected the order: {rep.reason}")
        after = before + rep.filled_units
        if intent.stop_price > 0.0 and after:  # the new position's stop, at the intent's price
            try:
                await self._place_stop(contract, intent.instrument, after, intent.stop_price, stop_order_id(coid))
            except (OrderRejected, TransientError) as e:  # reconciliation places it again (stop_replaced)
                log.error("stop_refused", instrument=intent.instrument, order=coid, reason=str(e)[:300])
        return rep

    async def _wait(self, trades: list, done: Callable[[], bool]) -> None:
        """Until ``done()``, at most ``fill_timeout_secs``: woken by the trades' statusEvent
        (ib_async emits it at every orderStatus and error that changes one), never polled."""
        deadline = time.monotonic() + self.cfg.fill_timeout_secs
        while not done() and (left := deadline - time.monotonic()) > 0:
            waits = [asyncio.ensure_future(_next(t.statusEvent)) for t in trades]
            try:
                await asyncio.wait(waits, timeout=left, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()

    # -- protective stops (issue 21 §1): one GTC stop order per position ------------------------
    def _held(self, contract) -> float:
        key = (contract.symbol, contract.currency, contract.secType)
        return sum(
            float(p.position)
            for p in self.ib.positions()
            if (p.contract.symbol, p.contract.currency, p.contract.secType) == key
        )

    def _stops_of(self, contract) -> list:
        """Our working stop orders on ``contract`` (any client's orderRef of ours: listed by
        reqOpenOrders at every connect)."""
        key = (contract.symbol, contract.currency, contract.secType)
        return [
            t
            for t in self.ib.openTrades()
            if t.order.orderType == "STP"
            and is_stop_id(t.order.orderRef or "")
            and (t.contract.symbol, t.contract.currency, t.contract.secType) == key
        ]

    async def _cancel_stops(self, contract, why: str) -> bool:
        """Cancel our working stops on ``contract`` and wait until each is done (bounded);
        True when one of them filled instead."""
        stops = self._stops_of(contract)
        for t in stops:
            self.ib.cancelOrder(t.order)
        await self._wait(stops, lambda: all(t.isDone() for t in stops))
        if any(not t.isDone() for t in stops):
            raise TransientError(
                f"{why}: IB did not confirm the stop's cancellation in {self.cfg.fill_timeout_secs:g} s"
            )
        return any(t.orderStatus.status == "Filled" or t.orderStatus.filled for t in stops)

    async def _place_stop(self, contract, instrument: str, units: float, price: float, ref: str) -> None:
        """A GTC stop closing ``units`` at ``price`` (on the tick grid, rounded away from the
        market: a sell stop down, a buy stop up); waits until IB acknowledges it."""
        sell = units > 0
        order = ibapi.StopOrder("SELL" if sell else "BUY", abs(units), bound_tick(price, instrument, sell),
                                orderRef=ref, tif="GTC")  # fmt: skip
        trade = self.ib.placeOrder(contract, order)
        await self._wait([trade], lambda: trade.orderStatus.status in ("Submitted", "PreSubmitted", *DONE))
        if trade.orderStatus.status in ("Cancelled", "ApiCancelled", "Inactive"):
            reason = trade.log[-1].message if trade.log else trade.orderStatus.status
            raise OrderRejected(f"{ref}: IB refused the stop at {order.auxPrice}: {reason}")
        if trade.orderStatus.status not in ("Submitted", "PreSubmitted", "Filled"):
            raise TransientError(f"{ref}: IB did not acknowledge the stop in {self.cfg.fill_timeout_secs:g} s")

    async def open_trades(self) -> list[TradeStop]:
        """Each of our instruments' position with its working stop (None: none for exactly
        the position): what reconciliation checks and re-places (daemon.reconcile_runner)."""
        if not self.ib.isConnected():
            raise TransientError("IB not connected: positions and stops unknown")
        out = []
        for name, contract in self.contracts.items():
            units = self._held(contract)
            if not units:
                continue
            ours = [
                t.order.auxPrice
                for t in self._stops_of(contract)
                if t.order.action == ("SELL" if units > 0 else "BUY") and abs(t.order.totalQuantity - abs(units)) < 1e-9
            ]
            avg = next((float(p.avgCost) for p in self.ib.positions() if self.instrument_of(p.contract) == name), 0.0)
            out.append(TradeStop(name, name, units, avg, min(ours) if units > 0 and ours else max(ours, default=None)))
        return out

    async def set_stop(
        self, trade_id: str, instrument: str, units: float, price: float, client_id: str, trail: float = 0.0
    ) -> None:
        """The instrument's position gets one stop at ``price``: any other of ours cancelled first.
        Trailing stops are not placed at IB (execution.stop_trailing is refused for it at start-up)."""
        if trail > 0.0:
            raise OrderRejected(f"{client_id}: a trailing stop at IB: not supported (execution.stop_trailing)")
        contract = self.contracts[instrument]
        if await self._cancel_stops(contract, client_id):
            raise TransientError(f"{client_id}: the old stop filled while being replaced; the next pass sees the book")
        await self._place_stop(contract, instrument, units, price, client_id)

    async def cancel(self, client_order_id: str) -> OrderReport | None:
        trade = self._trade_by_ref(client_order_id)
        if trade is not None and not trade.isDone():
            self.ib.cancelOrder(trade.order)
        return await self.order_status(client_order_id)

    async def order_status(self, client_order_id: str) -> OrderReport | None:
        if not self.ib.isConnected():
            raise TransientError(f"{client_order_id}: IB not connected")
        trade = self._trade_by_ref(client_order_id)
        units = trade.order.totalQuantity * (1 if trade.order.action == "BUY" else -1) if trade is not None else 0.0
        return self._report(client_order_id, units, trade)

    # -- reports ----------------------------------------------------------------------------
    async def fills(self, cursor: str | None) -> FillBatch:
        if not self.ib.isConnected():
            raise TransientError("IB not connected: executions unknown")
        fills = [f for f in self.ib.fills() if self._mine(f.contract)]
        newest = max((_ts_ns(f.execution.time) for f in fills), default=0)
        if cursor is None:
            return FillBatch([], str(newest))
        since = int(cursor)
        out = [
            FillReport(
                f.execution.execId,
                f.execution.orderRef or None,
                self.instrument_of(f.contract) or _foreign_name(f.contract),
                _ts_ns(f.execution.time),
                _signed(f),
                float(f.execution.price),
                _commission(f),
            )
            for f in fills
            if _ts_ns(f.execution.time) >= since
        ]  # ties: deduplicated by execId upstream
        return FillBatch(out, str(max(newest, since)))

    async def positions(self) -> list[PositionReport]:
        if not self.ib.isConnected():
            raise TransientError("IB not connected: positions unknown")
        out = []
        for p in self.ib.positions():
            name = self.instrument_of(p.contract) or _foreign_name(p.contract)
            out.append(PositionReport(name, float(p.position), float(p.avgCost)))
        return out

    async def account(self) -> AccountReport:
        values = {v.tag: v for v in await self.ib.accountSummaryAsync(self.cfg.account)}
        try:
            return AccountReport(
                float(values["TotalCashValue"].value),
                float(values["NetLiquidation"].value),
                float(values.get("InitMarginReq", values["NetLiquidation"]).value),
                values["NetLiquidation"].currency,
                equity_current=False,  # TWS refreshes a summary subscription every 3 minutes
                refresh_secs=200.0,
            )
        except (KeyError, ValueError) as e:
            raise FatalError(f"IB account summary: missing or bad {e}") from e

    async def quotes(self, instruments: list[str]) -> dict[str, tuple[float, float]]:
        """None fetched: IB's account figures refresh every 3 minutes (``equity_current`` False),
        so the open-P&L check that marks at the broker's prices does not run against them."""
        return {}

    async def history_bars(
        self, instrument: str, period_minutes: int, price: str, from_ns: int, to_ns: int
    ) -> np.ndarray:
        """Historical bars of the bar period in [from, to) as BAR_DTYPE (daemon.warm_start):
        reqHistoricalData (MIDPOINT, BID or ASK; all hours; UTC times), paged backwards from
        ``to`` in spans IB serves at that bar size, with a pause between pages (IB's pacing:
        no six requests for one contract within two seconds). The bar still open is left out."""
        size = IB_BAR_SIZE.get(period_minutes)
        if size is None:
            raise BadPayload(f"IB has no historical bar size for {period_minutes}-minute bars")
        contract = self.contracts.get(instrument)
        if contract is None:
            raise BadPayload(f"{instrument}: not one of this adapter's contracts {sorted(self.contracts)}")
        period_ns = period_minutes * 60 * 10**9
        chunk_days = min(7 if period_minutes < 5 else 30 if period_minutes < 60 else 365, self.HISTORY_MAX_PAGE_DAYS)
        pages: list[np.ndarray] = []
        end = to_ns
        while end > from_ns:
            days = min(chunk_days, -(-(end - from_ns) // NS_PER_DAY))
            if pages:
                await asyncio.sleep(self.HISTORY_PAGE_GAP_SECS)
            got = await self.ib.reqHistoricalDataAsync(
                contract,
                endDateTime=dt.datetime.fromtimestamp(end / 1e9, dt.UTC),
                durationStr=f"{days} D",
                barSizeSetting=size,
                whatToShow=IB_WHAT[price],
                useRTH=False,
                formatDate=2,
            )
            rows = [(_bar_ts_ns(b.date), b.open, b.high, b.low, b.close, float(max(b.volume, 0))) for b in got or []]
            page = np.array(rows, dtype=BAR_DTYPE) if rows else np.empty(0, dtype=BAR_DTYPE)
            pages.append(page)
            if not len(page) or int(page["ts_ns"].min()) >= end:
                break
            end = min(end - days * NS_PER_DAY, int(page["ts_ns"].min()))
        out = np.concatenate(pages) if pages else np.empty(0, dtype=BAR_DTYPE)
        out = out[(out["ts_ns"] >= from_ns) & (out["ts_ns"] + period_ns <= to_ns)]
        out = out[np.argsort(out["ts_ns"], kind="stable")]
        if len(out) > 1:  # pages overlap at their edges: one bar per time
            out = out[np.append(out["ts_ns"][1:] != out["ts_ns"][:-1], True)]
        return out


IB_BAR_SIZE = {
    1: "1 min", 2: "2 mins", 3: "3 mins", 5: "5 mins", 10: "10 mins", 15: "15 mins", 20: "20 mins",
    30: "30 mins", 60: "1 hour", 120: "2 hours", 180: "3 hours", 240: "4 hours", 480: "8 hours", 1440: "1 day",
}  # fmt: skip
IB_WHAT = {"mid": "MIDPOINT", "bid": "BID", "ask": "ASK"}


def _bar_ts_ns(d) -> int:
    """A BarData date (formatDate=2): a UTC datetime for intraday bars, a date for daily ones."""
    if isinstance(d, dt.datetime):
        return _ts_ns(d if d.tzinfo else d.replace(tzinfo=dt.UTC))
    if isinstance(d, dt.date):
        return calendar.timegm(d.timetuple()) * 10**9
    raise BadPayload(f"IB historical bar date {d!r}: not a datetime or date")


def _signed(f) -> float:
    return float(f.execution.shares) * (1.0 if f.execution.side == "BOT" else -1.0)


def _commission(f) -> float:
    c = f.commissionReport.commission if f.commissionReport is not None else 0.0
    return 0.0 if c is None or math.isnan(c) or c > 1e300 else float(c)  # IB sends 1.79e308 for "unset"


def _ts_ns(t: dt.datetime) -> int:
    return int(t.timestamp()) * 10**9 + t.microsecond * 1000


async def _next(event):
    """The next emit of an eventkit Event (ib_async's)."""
    return await event


def _foreign_name(contract) -> str:
    """The name of a contract that is not one of this connection's instruments (never booked
    on one of ours): SYMBOL_CURRENCY, as the reconciler reports it."""
    return f"{contract.symbol}_{contract.currency}"
