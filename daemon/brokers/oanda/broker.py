"""OANDA v20 broker adapter over one aiohttp session (no blocking HTTP on the loop).

Requests are built with oandapyV20's endpoint request classes (path, query parameters and
body exactly as that library defines them) and executed here with aiohttp; oandapyV20's
own blocking ``API.request`` is never used. Rate limits: at most 100 requests/s and 2 new
stream connections/s (token buckets).

Orders are MARKET/FOK with ``clientExtensions.id`` = our deterministic client order id.
An ambiguous outcome (timeout, connection reset, 5xx on the order request) is resolved by
asking for ``orders/@{clientID}`` before anything is resent, so a retry can never open a
second position. 429 is retried after Retry-After (capped); other 5xx with jittered
exponential backoff; rejects raise OrderRejected and are never retried. Vendor errors are
translated here, at the boundary. The token is sent as a header and never logged.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import numpy as np
import structlog
from oandapyV20.endpoints import accounts, instruments, orders, positions, pricing, trades, transactions
from oandapyV20.endpoints.apirequest import APIRequest

from stairway.core.broker import AccountReport, FillBatch, OrderReport, OrderState, PositionReport, TradeStop
from stairway.core.errors import BadPayload, FatalError, OrderRejected, TransientError
from stairway.core.redaction import register_secret
from stairway.core.types import BAR_DTYPE, TICK_DTYPE, OrderIntent, Side, stop_order_id
from stairway.daemon.aio import backoff_delay
from stairway.daemon.brokers.oanda.parsing import (
    PriceLine,
    decimal,
    parse_candles,
    parse_daily_financing,
    parse_order_fill,
    parse_price,
    parse_stream_line,
    parse_transaction_line,
)
from stairway.daemon.brokers.rate_limit import RateLimiter

log = structlog.get_logger("oanda")
AMBIGUOUS = (
    asyncio.TimeoutError,
    aiohttp.ServerDisconnectedError,
    aiohttp.ClientOSError,
    aiohttp.ClientPayloadError,
    ConnectionResetError,
)


class LimitedConnector(aiohttp.TCPConnector):
    """Every new TCP connection (REST or stream) waits on the 2-per-second bucket."""

    def __init__(self, limiter: RateLimiter, **kwargs) -> None:
        super().__init__(**kwargs)
        self.limiter = limiter
        self.opened = 0

    async def _create_connection(self, req, traces, timeout):
        await self.limiter.acquire()
        self.opened += 1
        return await super()._create_connection(req, traces, timeout)


def _transaction_id(body: dict, where: str, key: str = "lastTransactionID") -> str:
    v = body.get(key)
    if not isinstance(v, str) or not v.isdigit():
        raise BadPayload(f"{where}.{key} = {v!r}: not a transaction id")
    return v


def price_text(price: float, instrument: str, buy: bool) -> str:
    """A price as OANDA takes it: the instrument's precision (a tenth of its pip: 5 decimals
    for EUR_USD, 3 for USD_JPY), rounded inward (a buy's bound down, a sell's up) so the
    rounding never loosens a bound."""
    import math
    from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

    from stairway.core.config import fx_pip_size

    pip = fx_pip_size(instrument) if "_" in instrument else 0.01
    grid = Decimal(1).scaleb(-(round(-math.log10(pip)) + 1))
    return str(Decimal(repr(price)).quantize(grid, rounding=ROUND_FLOOR if buy else ROUND_CEILING))


def distance_text(distance: float, instrument: str) -> str:
    """A trailing stop's distance as OANDA takes it: the price precision, rounded down (the
    stop trails no looser than asked)."""
    return price_text(distance, instrument, True)


class OandaBroker:
    name = "oanda"
    CANDLES_PAGE = 5000  # OANDA's largest count per candles request
    CANDLES_MAX_PAGES = 40  # 200,000 bars: 60 days of 1-minute bars fit four times over

    def __init__(
        self,
        base_url: str,
        account: str,
        token: str,
        stream_url: str | None = None,
        timeout_secs: float = 10.0,
        max_attempts: int = 4,
        max_retry_after_secs: float = 30.0,
    ) -> None:
        self.base = base_url.rstrip("/")
        self.stream_base = (stream_url or base_url).rstrip("/")
        self.account_id, self._token = account, token
        register_secret(account)
        register_secret(token)
        self.timeout = aiohttp.ClientTimeout(total=timeout_secs)
        self.max_attempts, self.max_retry_after = max_attempts, max_retry_after_secs
        self.session: aiohttp.ClientSession | None = None
        self.last_transaction_id: str | None = None
        self.requests = RateLimiter(100.0)
        self.connections = RateLimiter(2.0, burst=1)
        self.request_count = 0
        self.bad_lines = 0
        self.bad_financing = 0  # DAILY_FINANCING transactions skipped as malformed

    def __repr__(self) -> str:  # never show the token or the account id
        return f"OandaBroker({self.base!r}, account=***)"

    def _shown(self, path: str) -> str:
        """A request path fit for messages: the account id masked."""
        return path.replace(self.account_id, "***")

    async def connect(self) -> None:
        if self.session is None:
            # a small pool: REST reuses kept-alive connections instead of opening new ones
            self.session = aiohttp.ClientSession(
                headers={"Authorization": f"Bearer {self._token}", "Accept-Datetime-Format": "RFC3339"},
                timeout=self.timeout,
                connector=LimitedConnector(self.connections, limit=4),
            )

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None

    async def _request(self, r: APIRequest, *, retry_5xx: bool = True):
        """(status, body) of one oandapyV20 request. 429 is always retried (nothing was
        done); 5xx only when asked."""
        assert self.session is not None, "connect() first"
        method, path = r.method, str(r)
        url = f"{self.base}/{path}"
        path = self._shown(path)  # from here on only for messages
        body = r.data if method in ("POST", "PUT", "PATCH") else None
        for attempt in range(1, self.max_attempts + 1):
            await self.requests.acquire()
            self.request_count += 1
            async with self.session.request(method, url, json=body, params=getattr(r, "params", None)) as resp:
                try:
                    answer = await resp.json(content_type=None)
                except ValueError:
                    answer = {}
                if not isinstance(answer, dict):
                    raise BadPayload(f"OANDA {method} {path}: HTTP {resp.status} body is not a JSON object")
                if resp.status == 401:
                    raise FatalError(f"OANDA {method} {path}: 401 unauthorized (check the token credential)")
                if resp.status == 429 and attempt < self.max_attempts:
                    wait = min(float(resp.headers.get("Retry-After", "1")), self.max_retry_after)
                    log.warning("rate_limited", path=path, retry_after_secs=wait)
                    await asyncio.sleep(wait)
                    continue
                if resp.status >= 500 and retry_5xx and attempt < self.max_attempts:
                    await asyncio.sleep(backoff_delay(attempt, 0.2, 8.0))
                    continue
                if resp.status >= 500 or resp.status == 429:
                    raise TransientError(f"OANDA {method} {path}: HTTP {resp.status} after {attempt} attempt(s)")
                return resp.status, answer
        raise TransientError(f"OANDA {method} {path}: gave up after {self.max_attempts} attempts")

    # -- orders ---------------------------------------------------------------------------
    async def submit(self, intent: OrderIntent) -> OrderReport:
        units = f"{intent.units * int(intent.side):.0f}"
        body = {
            "order": {
                "type": "MARKET",
                "instrument": intent.instrument,
                "units": units,
                "timeInForce": "FOK",
                "positionFill": "DEFAULT",
                "clientExtensions": {"id": intent.client_order_id},
            }
        }
        if intent.price_bound is not None:  # cancelled (BOUNDS_VIOLATION) rather than filled beyond it
            body["order"]["priceBound"] = price_text(intent.price_bound, intent.instrument, intent.side is Side.BUY)
        stop_ext = {"timeInForce": "GTC", "clientExtensions": {"id": stop_order_id(intent.client_order_id)}}
        if intent.stop_price > 0.0 and intent.stop_trail > 0.0:  # trailing: OANDA keeps it at the distance
            body["order"]["trailingStopLossOnFill"] = {"distance": distance_text(intent.stop_trail, intent.instrument),
                                                       **stop_ext}  # fmt: skip
        elif intent.stop_price > 0.0:  # the protective stop, at OANDA with the trade it opens, our id on it
            body["order"]["stopLossOnFill"] = {
                "price": price_text(intent.stop_price, intent.instrument, intent.side is Side.SELL),
                **stop_ext,
            }
        for _ in range(2):  # the second pass only after the broker said it has no such order
            try:
                status, resp = await self._request(orders.OrderCreate(self.account_id, data=body), retry_5xx=False)
            except (TransientError, *AMBIGUOUS) as e:
                log.warning("order_outcome_unknown", client_order_id=intent.client_order_id, error=repr(e))
                known = await self.order_status(intent.client_order_id)
                if known is not None:
                    return known
                continue
            if status == 201:
                return self._report_from_fill(intent, resp)
            if resp.get("errorCode") == "CLIENT_ORDER_ID_ALREADY_EXISTS":
                known = await self.order_status(intent.client_order_id)
                if known is not None:
                    return known
            reason = (resp.get("orderRejectTransaction") or {}).get("rejectReason") or resp.get("errorCode") or status
            raise OrderRejected(f"{intent.client_order_id}: OANDA rejected the order: {reason}")
        raise TransientError(f"{intent.client_order_id}: order outcome unknown after a retry; reconcile")

    def _report_from_fill(self, intent: OrderIntent, resp: dict) -> OrderReport:
        fill = resp.get("orderFillTransaction")
        self.last_transaction_id = resp.get("lastTransactionID", self.last_transaction_id)
        requested = intent.units * int(intent.side)
        if not fill:
            cancel = resp.get("orderCancelTransaction") or {}
            return OrderReport(
                intent.client_order_id,
                (resp.get("orderCreateTransaction") or {}).get("id", ""),
                intent.instrument,
                requested,
                0.0,
                OrderState.CANCELLED,
                cancel.get("reason", ""),
            )
        filled = sum(f.units for f in parse_order_fill(fill))
        state = OrderState.FILLED if abs(filled) >= abs(requested) else OrderState.PARTIALLY_FILLED
        return OrderReport(intent.client_order_id, fill.get("orderID", ""), intent.instrument, requested, filled, state)

    async def cancel(self, client_order_id: str) -> OrderReport | None:
        return await self.order_status(client_order_id)  # FOK market orders never rest

    async def order_status(self, client_order_id: str) -> OrderReport | None:
        status, body = await self._request(orders.OrderDetails(self.account_id, orderID=f"@{client_order_id}"))
        if status == 404:
            return None
        o = body.get("order")
        if not isinstance(o, dict):
            raise BadPayload(f"orders/@{client_order_id}: no order object in the answer")
        units = decimal(o, "units", f"order {client_order_id}")
        states = {"FILLED": OrderState.FILLED, "CANCELLED": OrderState.CANCELLED}
        state = states.get(str(o.get("state")), OrderState.PENDING)
        filled = units if state is OrderState.FILLED else 0.0
        if state is OrderState.FILLED and o.get("fillingTransactionID"):
            batch = await self.fills(str(int(o["fillingTransactionID"]) - 1))
            fills = [f for f in batch.fills if f.client_order_id == client_order_id]
            filled = sum(f.units for f in fills) or filled
        return OrderReport(client_order_id, o.get("id", ""), o.get("instrument", ""), units, filled, state)

    # -- reports --------------------------------------------------------------------------
    async def fills(self, cursor: str | None) -> FillBatch:
        if cursor is None:  # start from the present: history is the positions' business
            status, body = await self._request(accounts.AccountSummary(self.account_id))
            return FillBatch([], _transaction_id(body, "summary"))
        status, body = await self._request(transactions.TransactionsSinceID(self.account_id, params={"id": cursor}))
        txs = body.get("transactions")
        if status != 200 or not isinstance(txs, list):
            raise BadPayload(f"transactions/sinceid?id={cursor}: HTTP {status}, no transactions list")
        out, financing = [], []
        for tx in txs:
            if not isinstance(tx, dict):
                raise BadPayload(f"transactions/sinceid?id={cursor}: transaction {tx!r} is not an object")
            if tx.get("type") == "ORDER_FILL":
                out.extend(parse_order_fill(tx))
            elif tx.get("type") == "DAILY_FINANCING":  # information: a bad one is skipped, never blocks fills
                try:
                    financing.extend(parse_daily_financing(tx))
                except BadPayload as e:
                    self.bad_financing += 1
                    log.warning("financing_transaction_skipped", error=str(e))
        # the cursor moves to the newest id seen: a late or repeated transaction never moves it back
        newest = max([int(_transaction_id(t, "transaction", "id")) for t in txs] + [int(cursor)])
        last = _transaction_id(body, "transactions/sinceid")
        self.last_transaction_id = last
        return FillBatch(out, str(max(newest, int(last))), financing)

    async def positions(self) -> list[PositionReport]:
        status, body = await self._request(positions.OpenPositions(self.account_id))
        out = []
        for p in body.get("positions", []):
            inst = p.get("instrument", "?")
            long_u = decimal(p.get("long", {}), "units", f"position {inst}.long", 0.0)
            short_u = decimal(p.get("short", {}), "units", f"position {inst}.short", 0.0)
            side = p.get("long") if long_u else p.get("short", {})
            avg = decimal(side or {}, "averagePrice", f"position {inst}", 0.0)
            out.append(PositionReport(inst, long_u + short_u, avg))
        return out

    async def open_trades(self) -> list[TradeStop]:
        """Every open trade with its stop-loss (None: it has none), oldest first."""
        status, body = await self._request(trades.OpenTrades(self.account_id))
        out = []
        for t in body.get("trades", []):
            where = f"trade {t.get('id')!r}"
            if not isinstance(t.get("id"), str) or not isinstance(t.get("instrument"), str):
                raise BadPayload(f"openTrades: {where}: id and instrument are required strings")
            sl, tsl = t.get("stopLossOrder"), t.get("trailingStopLossOrder")
            stop = decimal(sl, "price", f"{where}.stopLossOrder") if isinstance(sl, dict) else None
            if stop is None and isinstance(tsl, dict):  # a trailing stop: where it stands now
                stop = decimal(tsl, "trailingStopValue", f"{where}.trailingStopLossOrder")
            units = decimal(t, "currentUnits", where)
            out.append(TradeStop(t["id"], t["instrument"], units, decimal(t, "price", where), stop))
        return out

    async def set_stop(
        self, trade_id: str, instrument: str, units: float, price: float, client_id: str, trail: float = 0.0
    ) -> None:
        """Give an open trade a stop-loss at ``price`` (or move its own there): TradeCRCDO;
        ``trail`` > 0: a trailing stop that distance behind the price instead."""
        ext = {"timeInForce": "GTC", "clientExtensions": {"id": client_id}}
        if trail > 0.0:
            data = {"trailingStopLoss": {"distance": distance_text(trail, instrument), **ext}}
        else:
            data = {"stopLoss": {"price": price_text(price, instrument, units < 0), **ext}}
        status, body = await self._request(trades.TradeCRCDO(self.account_id, trade_id, data=data), retry_5xx=False)
        if status != 200:
            reason = body.get("errorCode") or body.get("errorMessage") or status
            raise OrderRejected(f"stop-loss for trade {trade_id} ({instrument}) at {price}: OANDA refused: {reason}")

    async def account(self) -> AccountReport:
        status, body = await self._request(accounts.AccountSummary(self.account_id))
        a = body.get("account", {})
        return AccountReport(
            decimal(a, "balance", "account"),
            decimal(a, "NAV", "account"),
            decimal(a, "marginUsed", "account", 0.0),
            a.get("currency", ""),
            as_of=last if isinstance(last := body.get("lastTransactionID"), str) and last.isdigit() else None,
        )

    async def quotes(self, instruments: list[str]) -> dict[str, tuple[float, float]]:
        """The broker's current (bid, ask) of each instrument (GET .../pricing): what it marks
        open trades at now, for reconciliation's open-P&L check."""
        r = pricing.PricingInfo(self.account_id, params={"instruments": ",".join(instruments)})
        status, body = await self._request(r)
        if status != 200:
            raise BadPayload(f"OANDA pricing for {instruments}: HTTP {status}: {body.get('errorMessage', '')}")
        prices = body.get("prices")
        if not isinstance(prices, list) or not all(isinstance(p, dict) for p in prices):
            raise BadPayload(f"pricing: prices = {str(prices)[:80]!r}: expected a list of prices")
        return {q.instrument: (q.bid, q.ask) for q in map(parse_price, prices)}

    def stream_prices(self, instruments: list[str]):
        """Async iterator of PriceLine/Heartbeat; a dropped stream raises TransientError.
        Its connection waits on the 2-per-second bucket like every new connection."""
        r = pricing.PricingStream(self.account_id, params={"instruments": ",".join(instruments)})
        return self._stream(r, "pricing stream", parse_stream_line)

    def stream_transactions(self):
        """Async iterator of transaction dicts, HEARTBEATs included (they prove the stream
        alive); a dropped stream raises TransientError."""
        return self._stream(
            transactions.TransactionsStream(self.account_id), "transaction stream", parse_transaction_line
        )

    async def _stream(self, r: APIRequest, what: str, parse):
        assert self.session is not None, "connect() first"
        try:
            async with self.session.get(
                f"{self.stream_base}/{r}",
                params=getattr(r, "params", None),
                timeout=aiohttp.ClientTimeout(total=None, sock_read=10),
            ) as resp:
                if resp.status == 401:
                    raise FatalError(f"OANDA {what}: 401 unauthorized (check the token credential)")
                if resp.status != 200:
                    raise TransientError(f"OANDA {what}: HTTP {resp.status}")
                async for raw in resp.content:
                    if not raw.strip():
                        continue
                    try:
                        item = parse(raw)
                    except BadPayload as e:  # one bad line is skipped, not a reason to reconnect
                        self.bad_lines += 1
                        log.warning("bad_stream_line", stream=what, error=str(e))
                        continue
                    yield item
        except AMBIGUOUS as e:
            raise TransientError(f"OANDA {what} dropped: {e!r}") from e

    async def _candle_pages(
        self, instrument: str, params: dict[str, str | int], from_ns: int, to_ns: int, step_ns: int
    ) -> AsyncIterator[dict]:
        """InstrumentsCandles bodies from ``from`` on, ``CANDLES_PAGE`` candles each (v20
        refuses counts over 5000), until a page reaches ``to``, comes back empty or does not
        move on; at most ``CANDLES_MAX_PAGES``. Each page goes through the rate limiter and
        retries of every REST call."""
        from stairway.daemon.brokers.oanda.parsing import parse_time_ns, rfc3339

        start = from_ns
        for _ in range(self.CANDLES_MAX_PAGES):
            page = {**params, "from": rfc3339(start), "count": self.CANDLES_PAGE}
            status, body = await self._request(instruments.InstrumentsCandles(instrument, params=page))
            if status != 200:
                raise TransientError(f"OANDA candles {instrument} {params.get('granularity')}: HTTP {status}")
            yield body
            got = body.get("candles") or []
            if not got:
                return
            last = parse_time_ns(got[-1].get("time") if isinstance(got[-1], dict) else None, f"candles {instrument}")
            if last < start or last + step_ns >= to_ns:
                return
            start = last + 1  # 'from' is inclusive: the next page starts after this one's last candle

    async def candles(self, instrument: str, from_ns: int, to_ns: int) -> np.ndarray:
        """Bid/ask candles in [from, to) as bar-derived quotes (gap backfill after a reconnect):
        S5 candles for a gap OANDA serves in one request (at most 5000 candles), else M1 candles
        paged from ``from`` (a long disconnect: every minute of it comes back as a candle)."""
        from stairway.daemon.brokers.oanda.parsing import rfc3339

        if to_ns - from_ns <= self.CANDLES_PAGE * 5 * 10**9:
            one = {"price": "BA", "granularity": "S5", "from": rfc3339(from_ns), "to": rfc3339(to_ns)}
            status, body = await self._request(instruments.InstrumentsCandles(instrument, params=one))
            if status != 200:
                raise TransientError(f"OANDA candles {instrument}: HTTP {status}")
            return parse_candles(body, instrument, from_ns, to_ns)
        params: dict[str, str | int] = {"price": "BA", "granularity": "M1"}
        pages = [
            parse_candles(body, instrument, from_ns, to_ns)
            async for body in self._candle_pages(instrument, params, from_ns, to_ns, 60 * 10**9)
        ]
        return np.concatenate(pages) if pages else np.empty(0, dtype=TICK_DTYPE)

    async def history_bars(
        self, instrument: str, period_minutes: int, price: str, from_ns: int, to_ns: int
    ) -> np.ndarray:
        """Complete candles of the bar period in [from, to) as BAR_DTYPE (daemon.warm_start),
        aligned to UTC (dailyAlignment 0, so H2-D candles fall on the daemon's bar grid), paged."""
        from stairway.daemon.brokers.oanda.parsing import BAR_GRANULARITY, CANDLE_PRICE, parse_bar_candles

        gran = BAR_GRANULARITY.get(period_minutes)
        if gran is None:
            raise BadPayload(f"OANDA has no candle granularity for {period_minutes}-minute bars")
        code, side = CANDLE_PRICE[price]
        params: dict[str, str | int] = {
            "price": code,
            "granularity": gran,
            "dailyAlignment": 0,
            "alignmentTimezone": "UTC",
        }
        pages = [
            parse_bar_candles(body, instrument, gran, side)[0]
            async for body in self._candle_pages(instrument, params, from_ns, to_ns, period_minutes * 60 * 10**9)
        ]
        out = np.concatenate(pages) if pages else np.empty(0, dtype=BAR_DTYPE)
        return out[(out["ts_ns"] >= from_ns) & (out["ts_ns"] < to_ns)]


__all__ = ["OandaBroker", "PriceLine"]
