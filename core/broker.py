"""The Broker and Feed protocols every adapter implements (paper, OANDA, IB).

A Broker adapter is three parts (NautilusTrader's adapter template): a thin I/O client,
pure parsing functions (vendor payload in, core types out; tested on recorded payloads),
and the adapter joining them. Vendor errors are translated at the adapter boundary only,
into core.errors (TransientError: retry with backoff; OrderRejected: do not retry;
FatalError: stop and alert), with ``raise ... from e``.

Every Broker must provide:
- ``connect()`` / ``close()``: idempotent; ``close`` fails every pending request future.
- ``submit(intent)``: send one order carrying ``intent.client_order_id``; returns an
  OrderReport. The id is deterministic, so resubmitting after an ambiguous outcome must be
  preceded by ``order_status(client_order_id)``; the broker must never hold two orders
  with one client id.
- ``cancel(client_order_id)``.
- ``order_status(client_order_id)`` -> OrderReport | None: the broker's view, by our id.
- ``fills(cursor)`` -> FillBatch: the fills after an opaque cursor (OANDA: a transaction
  id) and the cursor to pass next time. ``fills(None)`` places the cursor at the broker's
  present (no history) and returns no fills. Fills are reported at least once: callers
  deduplicate by ``broker_fill_id``; their order within a batch is not guaranteed.
- ``positions()`` -> list[PositionReport]: the source of truth for what is held.
- ``account()`` -> AccountReport.
- ``open_trades()`` -> list[TradeStop]: every open trade with its protective stop, and
  ``set_stop(trade_id, instrument, units, price, client_id, trail=0.0)``: give one a stop (or
  move its own; ``trail`` > 0: trailing by that distance, where the broker has them, else
  OrderRejected). Reconciliation puts back stops removed or loosened by hand with these.
- ``quotes(instruments)`` -> {instrument: (bid, ask)}: the broker's own current prices, which
  the open-P&L check marks the book at; {} where the broker's figures are not current enough
  to check against (AccountReport.equity_current False).
- ``history_bars(instrument, period_minutes, price, from_ns, to_ns)`` -> BAR_DTYPE: complete
  bars for warming up and ``data fetch``.

Every Feed must provide ``ticks()``: an async iterator of (instrument, TICK_DTYPE batch), and
``status``: one of FeedStatus (connected, stale, disconnected), with a timestamp.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from stairway.core.types import OrderIntent

# The reason an adapter reports for an order the broker cancelled because it would have filled
# beyond its price bound (OANDA's own ORDER_CANCEL reason; IB: an IOC limit left unfilled).
BOUNDS_VIOLATION = "BOUNDS_VIOLATION"


class OrderState(enum.Enum):
    PENDING = "pending"
    FILLED = "filled"
    PARTIALLY_FILLED = "partially_filled"
    CANCELLED = "cancelled"
    REJECTED = "rejected"


@dataclass(frozen=True)
class OrderReport:
    client_order_id: str
    broker_order_id: str
    instrument: str
    units: float  # signed, as requested
    filled_units: float  # signed
    state: OrderState
    reason: str = ""


@dataclass(frozen=True)
class FillReport:
    broker_fill_id: str
    client_order_id: str | None  # None for fills the daemon did not ask for (manual trades)
    instrument: str
    ts_ns: int
    units: float  # signed
    price: float
    commission: float = 0.0
    financing: float = 0.0
    spread_cost: float = 0.0  # half-spread cost the broker reports (already in the price)


@dataclass(frozen=True)
class TradeStop:
    """One open trade at the broker and its protective stop (None: it has none)."""

    trade_id: str
    instrument: str
    units: float  # signed
    price: float  # the trade's entry price
    stop: float | None


@dataclass(frozen=True)
class FinancingReport:
    """Holding costs the broker charged one instrument (OANDA DAILY_FINANCING)."""

    transaction_id: str
    instrument: str
    ts_ns: int
    amount: float  # as the broker books it: < 0 paid, > 0 received


@dataclass(frozen=True)
class FillBatch:
    fills: list[FillReport]
    cursor: str | None
    financing: list[FinancingReport] = field(default_factory=list)


@dataclass(frozen=True)
class PositionReport:
    instrument: str
    units: float  # signed
    avg_price: float


@dataclass(frozen=True)
class AccountReport:
    balance: float
    equity: float
    margin_used: float
    currency: str
    # equity as of now (OANDA's account summary); False where the broker refreshes it on its own
    # schedule (IB's account summary subscription: every 3 minutes), too stale to mark against
    equity_current: bool = True
    # seconds the broker's figures may lag a fill (IB: its 3-minute refresh, with a margin); 0: current.
    # The balance check waits this long after the last fill before it judges (daemon.reconcile_runner)
    refresh_secs: float = 0.0
    # the broker's last transaction id as of these figures (OANDA's lastTransactionID; None where
    # the broker has none): figures past the fills the book has seen are not judged against it
    as_of: str | None = None


class FeedStatus(enum.Enum):
    CONNECTED = "connected"
    STALE = "stale"
    DISCONNECTED = "disconnected"


class Broker(Protocol):
    name: str

    async def connect(self) -> None: ...
    async def close(self) -> None: ...
    async def submit(self, intent: OrderIntent) -> OrderReport: ...
    async def cancel(self, client_order_id: str) -> OrderReport | None: ...
    async def order_status(self, client_order_id: str) -> OrderReport | None: ...
    async def fills(self, cursor: str | None) -> FillBatch: ...
    async def positions(self) -> list[PositionReport]: ...
    async def account(self) -> AccountReport: ...
    async def open_trades(self) -> list[TradeStop]: ...
    async def set_stop(
        self, trade_id: str, instrument: str, units: float, price: float, client_id: str, trail: float = 0.0
    ) -> None: ...
    async def quotes(self, instruments: list[str]) -> dict[str, tuple[float, float]]: ...
    async def history_bars(
        self, instrument: str, period_minutes: int, price: str, from_ns: int, to_ns: int
    ) -> np.ndarray: ...


class Feed(Protocol):
    """A live price feed: batches of one instrument's quotes, tagged with the instrument; its
    connection status, the instruments whose
    prices have gone stale, and whether the last batch was backfilled from candles (the tick
    recorder keeps real quotes only)."""

    last_batch_backfilled: bool
    chunk_end: bool  # the daemon commits after a batch with this set (live feeds: always)

    @property
    def status(self) -> FeedStatus: ...

    def ticks(self) -> AsyncIterator[tuple[str, np.ndarray]]: ...

    def stale_instruments(self, now: float | None = None) -> list[str]: ...
