"""OANDA v20 broker adapter over one aiohttp session (no blocking HTTP on the loop).

Orders are MARKET/FOK with ``clientExtensions.id`` = our deterministic client order id.
An ambiguous outcome (timeout, connection reset, 5xx on the order request) is resolved by
asking for ``orders/@{clientID}`` before anything is resent, so a retry can never open a
second position. 429 is retried after Retry-After (capped); other 5xx with jittered
exponential backoff; rejects raise OrderRejected and are never retried. Vendor errors are
translated here, at the boundary. The token is sent as a header and never logged.
"""

from __future__ import annotations

import asyncio
import random

import aiohttp
import structlog

from core.broker import AccountReport, FillReport, OrderReport, OrderState, PositionReport
from core.errors import BadPayload, FatalError, OrderRejected, TransientError
from core.types import OrderIntent
from daemon.brokers.oanda.parsing import PriceLine, decimal, parse_order_fill, parse_stream_line

log = structlog.get_logger("oanda")
AMBIGUOUS = (asyncio.TimeoutError, aiohttp.ServerDisconnectedError, aiohttp.ClientOSError,
             aiohttp.ClientPayloadError, ConnectionResetError)


class OandaBroker:
    name = "oanda"

    def __init__(self, base_url: str, account: str, token: str, stream_url: str | None = None,
                 timeout_secs: float = 10.0, max_attempts: int = 4, max_retry_after_secs: float = 30.0) -> None:
        self.base = base_url.rstrip("/")
        self.stream_base = (stream_url or base_url).rstrip("/")
        self.account, self._token = account, token
        self.timeout = aiohttp.ClientTimeout(total=timeout_secs)
        self.max_attempts, self.max_retry_after = max_attempts, max_retry_after_secs
        self.session: aiohttp.ClientSession | None = None
        self.last_transaction_id: str | None = None

    def __repr__(self) -> str:  # never show the token
        return f"OandaBroker({self.base!r}, account={self.account!r})"

    async def connect(self) -> None:
        if self.session is None:
            self.session = aiohttp.ClientSession(headers={"Authorization": f"Bearer {self._token}",
                                                          "Accept-Datetime-Format": "RFC3339"}, timeout=self.timeout)

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None

    def _url(self, path: str) -> str:
        return f"{self.base}/v3/accounts/{self.account}{path}"

    async def _request(self, method: str, path: str, *, json=None, params=None, retry_5xx: bool = True):
        """(status, body). 429 is always retried (nothing was done); 5xx only when asked."""
        assert self.session is not None, "connect() first"
        for attempt in range(1, self.max_attempts + 1):
            async with self.session.request(method, self._url(path), json=json, params=params) as resp:
                try:
                    body = await resp.json(content_type=None)
                except ValueError:
                    body = {}
                if resp.status == 401:
                    raise FatalError(f"OANDA {method} {path}: 401 unauthorized (check the token credential)")
                if resp.status == 429 and attempt < self.max_attempts:
                    wait = min(float(resp.headers.get("Retry-After", "1")), self.max_retry_after)
                    log.warning("rate_limited", path=path, retry_after_secs=wait)
                    await asyncio.sleep(wait)
                    continue
                if resp.status >= 500 and retry_5xx and attempt < self.max_attempts:
                    await asyncio.sleep(min(8.0, 0.1 * 2**attempt) * (0.5 + random.random()))
                    continue
                if resp.status >= 500 or resp.status == 429:
                    raise TransientError(f"OANDA {method} {path}: HTTP {resp.status} after {attempt} attempt(s)")
                return resp.status, body
        raise TransientError(f"OANDA {method} {path}: gave up after {self.max_attempts} attempts")

    # -- orders ---------------------------------------------------------------------------
    async def submit(self, intent: OrderIntent) -> OrderReport:
        units = f"{intent.units * int(intent.side):.0f}"
        body = {"order": {"type": "MARKET", "instrument": intent.instrument, "units": units, "timeInForce": "FOK",
                          "positionFill": "DEFAULT", "clientExtensions": {"id": intent.client_order_id}}}
        for _ in range(2):  # the second pass only after the broker said it has no such order
            try:
                status, resp = await self._request("POST", "/orders", json=body, retry_5xx=False)
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
            return OrderReport(intent.client_order_id, (resp.get("orderCreateTransaction") or {}).get("id", ""),
                               intent.instrument, requested, 0.0, OrderState.CANCELLED, cancel.get("reason", ""))
        filled = sum(f.units for f in parse_order_fill(fill))
        state = OrderState.FILLED if abs(filled) >= abs(requested) else OrderState.PARTIALLY_FILLED
        return OrderReport(intent.client_order_id, fill.get("orderID", ""), intent.instrument, requested, filled, state)

    async def cancel(self, client_order_id: str) -> OrderReport | None:
        return await self.order_status(client_order_id)  # FOK market orders never rest

    async def order_status(self, client_order_id: str) -> OrderReport | None:
        status, body = await self._request("GET", f"/orders/@{client_order_id}")
        if status == 404:
            return None
        o = body.get("order")
        if not isinstance(o, dict):
            raise BadPayload(f"orders/@{client_order_id}: no order object in the answer")
        units = decimal(o, "units", f"order {client_order_id}")
        state = {"FILLED": OrderState.FILLED, "CANCELLED": OrderState.CANCELLED}.get(o.get("state"), OrderState.PENDING)
        filled = units if state is OrderState.FILLED else 0.0
        if state is OrderState.FILLED and o.get("fillingTransactionID"):
            fills = [f for f in await self.fills(str(int(o["fillingTransactionID"]) - 1))
                     if f.client_order_id == client_order_id]
            filled = sum(f.units for f in fills) or filled
        return OrderReport(client_order_id, o.get("id", ""), o.get("instrument", ""), units, filled, state)

    # -- reports --------------------------------------------------------------------------
    async def fills(self, since: str | None) -> list[FillReport]:
        status, body = await self._request("GET", "/transactions/sinceid", params={"id": since or "0"})
        self.last_transaction_id = body.get("lastTransactionID", self.last_transaction_id)
        out = []
        for tx in body.get("transactions", []):
            if tx.get("type") == "ORDER_FILL":
                out.extend(parse_order_fill(tx))
        return out

    async def positions(self) -> list[PositionReport]:
        status, body = await self._request("GET", "/openPositions")
        out = []
        for p in body.get("positions", []):
            inst = p.get("instrument", "?")
            long_u = decimal(p.get("long", {}), "units", f"position {inst}.long", 0.0)
            short_u = decimal(p.get("short", {}), "units", f"position {inst}.short", 0.0)
            side = p.get("long") if long_u else p.get("short", {})
            avg = decimal(side or {}, "averagePrice", f"position {inst}", 0.0)
            out.append(PositionReport(inst, long_u + short_u, avg))
        return out

    async def account(self) -> AccountReport:
        status, body = await self._request("GET", "/summary")
        a = body.get("account", {})
        return AccountReport(decimal(a, "balance", "account"), decimal(a, "NAV", "account"),
                             decimal(a, "marginUsed", "account", 0.0), a.get("currency", ""))

    async def stream_prices(self, instruments: list[str]):
        """Async iterator of PriceLine/Heartbeat; a dropped stream raises TransientError."""
        assert self.session is not None, "connect() first"
        url = f"{self.stream_base}/v3/accounts/{self.account}/pricing/stream"
        try:
            async with self.session.get(url, params={"instruments": ",".join(instruments)},
                                        timeout=aiohttp.ClientTimeout(total=None, sock_read=10)) as resp:
                if resp.status == 401:
                    raise FatalError("OANDA pricing stream: 401 unauthorized (check the token credential)")
                async for raw in resp.content:
                    if raw.strip():
                        yield parse_stream_line(raw)
        except AMBIGUOUS as e:
            raise TransientError(f"OANDA pricing stream dropped: {e!r}") from e


__all__ = ["OandaBroker", "PriceLine"]
