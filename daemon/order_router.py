"""Orders to a real broker behind the slot's synchronous order interface.

The slot calls ``submit``/``work``/``finish`` exactly as it does with the PaperBroker:
- ``submit`` journals the intent (state ``new``) and queues it; nothing is sent yet.
- The sender task commits the store first (write-ahead: the intent is on disk before the
  broker hears of it), then sends. An ambiguous outcome is resolved by the adapter through
  the broker's view of our client id; if even that fails the order is journaled
  ``unknown``, keeps blocking new decisions, and reconciliation resolves it later through
  ``order_status``. Nothing is ever resent: not on a retry, not after a restart.
- Fills come from the broker's transaction history after a cursor, are deduplicated by
  the broker's fill id and applied in id order; each is recorded once in broker_fills and
  committed together with the book and the new cursor. Fills of our own orders (our
  client-id prefix, any run) move the book; anyone else's (manual trades) are recorded and
  left to reconciliation, for which the broker's positions are the truth.
- ``finish`` keeps an order whose outcome is not known yet.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog

from stairway.core.broker import BOUNDS_VIOLATION, Broker, FillReport, OrderReport, OrderState
from stairway.core.errors import TRANSIENT, OrderRejected
from stairway.core.types import Fill, OrderIntent, Side, parse_client_order_id
from stairway.daemon.aio import get_within
from stairway.daemon.paper_broker import WorkingOrder, add_working
from stairway.daemon.rows import BrokerFillRow, CursorRow, JournalRow
from stairway.daemon.store import Store

if TYPE_CHECKING:
    from stairway.daemon.orders import OrderManager

log = structlog.get_logger("orders")


def _fill_key(f: FillReport) -> tuple:
    head, _, part = f.broker_fill_id.partition(":")
    return (int(head), int(part or 0)) if head.isdigit() and (part or "0").isdigit() else (f.ts_ns, 0)


class LiveRouter:
    def __init__(
        self,
        broker: Broker,
        store: Store,
        run_id: str,
        clock_ns: Callable[[], int] = time.time_ns,
        seen_capacity: int = 100_000,
    ) -> None:
        self.broker, self.store, self.run_id, self.clock_ns = broker, store, run_id, clock_ns
        self.working: dict[str, WorkingOrder] = {}
        self.stops: dict[str, float] | None = None  # the broker holds the stops (daemon.paper_broker.OrderGateway)
        self.trails: dict[str, float] = {}
        self.in_flight: dict[str, OrderIntent] = {}  # sent or queued, outcome not yet settled
        self.unresolved: dict[str, OrderIntent] = {}  # the broker could not tell us the outcome
        self.queue: asyncio.Queue[OrderIntent] = asyncio.Queue()
        self.io_lock = asyncio.Lock()  # one conversation with the broker at a time
        self.cursor: str | None = None
        self.seen: OrderedDict[str, None] = OrderedDict()
        self.seen_capacity = seen_capacity
        self.inbox: list[Fill] = []
        # each instrument's order manager (daemon.orders), which books its fills from the inbox
        # (``deliver``); none: the inbox is left to whoever drains it (daemon.direct_flatten)
        self.books: dict[str, OrderManager] = {}
        self.on_settled: Callable[[], None] | None = None  # reconciliation after a fill
        self.sent = self.rejected = self.foreign_fills = self.duplicate_fills = 0
        self.financing = 0.0  # the broker's financing booked since start (< 0 paid), from its transactions
        self._fill_seq = 0
        self.last_fill_mono = -math.inf  # time.monotonic() of the last fill booked

    async def restore(self, instrument: str) -> None:
        """Load the cursor, recent fill ids and orders whose outcome was never learned."""
        self.cursor = await self.store.cursor(self.broker.name)
        for fid in reversed(await self.store.recent_fill_ids(self.seen_capacity)):
            self._remember(fid)
        for coid, bar_ts, units, state in await self.store.open_orders(instrument):
            side = Side.BUY if units > 0 else Side.SELL
            self.unresolved[coid] = OrderIntent(coid, instrument, side, abs(units), int(bar_ts), 0)
            log.warning("order_outcome_unknown_at_start", client_order_id=coid, journal_state=state)

    # -- the slot's order interface ---------------------------------------------------------
    def submit(self, intent: OrderIntent, not_before_ns: int, expires: bool = True) -> None:
        add_working(self.working, intent, not_before_ns, expires)
        self.in_flight[intent.client_order_id] = intent
        self._journal(intent, "new")
        self.queue.put_nowait(intent)

    def work(self, instrument: str, ts, bid, ask, acc, start: int, stop: int) -> list[Fill]:
        """Fills received for the instrument since the last call (the quotes are not used: the
        broker fills live orders)."""
        return self.pending_fills(instrument)

    def deliver(self, now_ns: int) -> None:
        """The fills in the inbox to their instruments' order managers: the one way live fills
        reach a book. Called where fills arrive (an order settled, a fill sync) and by the
        reconciler before it compares, synchronously: the book moves before anything else runs."""
        for book in self.books.values():
            book.apply_pending_fills(now_ns)

    def has_work(self, instrument: str) -> bool:
        """Fills the broker reported wait to be taken (live orders fill at the broker)."""
        return bool(self.inbox)

    def pending_fills(self, instrument: str) -> list[Fill]:
        """Fills the broker reported for the instrument that the slot has not taken yet."""
        if not self.inbox:
            return []
        mine = [f for f in self.inbox if f.instrument == instrument]
        self.inbox = [f for f in self.inbox if f.instrument != instrument]
        return mine

    def finish(self, instrument: str) -> WorkingOrder | None:
        order = self.working.get(instrument)
        if order is None or order.intent.client_order_id in self.in_flight:
            return None  # outcome not known: it keeps blocking decisions
        return self.working.pop(instrument)

    def busy(self) -> bool:
        return bool(self.in_flight or self.unresolved)

    # -- sending ----------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """The sender task: write-ahead commit, then one order at a time."""
        while not stop.is_set():
            intent = await get_within(self.queue, 0.25)
            if intent is None:
                continue
            await self.store.flush()  # the intent is on disk before the broker hears of it
            async with self.io_lock:
                await self._send(intent)

    async def _send(self, intent: OrderIntent) -> None:
        coid = intent.client_order_id
        try:
            rep = await self.broker.submit(intent)
            self.sent += 1
        except OrderRejected as e:
            self.rejected += 1
            rep = OrderReport(
                coid, "", intent.instrument, intent.units * int(intent.side), 0.0, OrderState.REJECTED, str(e)
            )
        except TRANSIENT as e:
            self._unknown(intent, f"{type(e).__name__}: {e}")
            return
        await self._settle(intent, rep)

    async def _settle(self, intent: OrderIntent, rep: OrderReport, state: str | None = None) -> None:
        """Record the outcome once the fills it reports have arrived (else: unknown, later)."""
        if rep.filled_units:
            try:
                await self.sync_fills(apply=False)
            except TRANSIENT as e:
                self._unknown(intent, f"fills not fetched: {e}")
                return
        coid = intent.client_order_id
        self.in_flight.pop(coid, None)
        self.unresolved.pop(coid, None)
        order = self.working.get(intent.instrument)
        if order is not None and order.intent.client_order_id == coid:
            order.remaining = 0.0  # FOK/market: done; the slot finishes it on its next call
            order.bounded = rep.reason == BOUNDS_VIOLATION  # cancelled rather than filled beyond its bound
        self._journal(intent, state or rep.state.value, rep.broker_order_id, rep.filled_units, rep.reason)
        if self.inbox:
            self.deliver(self.clock_ns())  # after settling: the book sees a finished order with all its fills
        log.info(
            "order_settled",
            client_order_id=coid,
            state=state or rep.state.value,
            filled=rep.filled_units,
            reason=rep.reason,
        )
        await self.store.flush()
        if self.on_settled is not None and rep.filled_units:
            self.on_settled()

    def _unknown(self, intent: OrderIntent, why: str) -> None:
        self.unresolved[intent.client_order_id] = intent
        self._journal(intent, "unknown", reason=why)
        log.error("order_outcome_unknown", client_order_id=intent.client_order_id, reason=why)

    async def resolve_unknown(self) -> int:
        """Ask the broker about every order whose outcome we do not know (hold io_lock).
        One it never received is journaled ``not_sent`` and is not resent: its decision is stale."""
        done = 0
        for coid, intent in list(self.unresolved.items()):
            rep = await self.broker.order_status(coid)
            if rep is None:
                rep = OrderReport(
                    coid,
                    "",
                    intent.instrument,
                    intent.units * int(intent.side),
                    0.0,
                    OrderState.CANCELLED,
                    "the broker has no order with this client id",
                )
                await self._settle(intent, rep, "not_sent")
            elif rep.state is OrderState.PENDING:
                continue  # still working at the broker: ask again later
            else:
                await self._settle(intent, rep)
            done += coid not in self.unresolved
        return done

    def abandon_queued(self) -> int:
        """At shutdown: intents journaled but never handed to the broker are ``not_sent``."""
        n = 0
        while not self.queue.empty():
            intent = self.queue.get_nowait()
            self.in_flight.pop(intent.client_order_id, None)
            self._journal(intent, "not_sent", reason="daemon stopped before sending")
            n += 1
        return n

    # -- fills ------------------------------------------------------------------------------
    async def sync_fills(self, apply: bool = True) -> int:
        """Fetch fills after the cursor, apply ours, record all; returns how many were new.
        ``apply=False``: leave them in the inbox (the caller settles their order first)."""
        batch = await self.broker.fills(self.cursor)
        fresh = 0
        for r in sorted(batch.fills, key=_fill_key):
            if r.broker_fill_id in self.seen:
                self.duplicate_fills += 1
                continue
            self._remember(r.broker_fill_id)
            fresh += 1
            ours = r.client_order_id is not None and parse_client_order_id(r.client_order_id) is not None
            self.store.add(
                BrokerFillRow(
                    r.broker_fill_id,
                    self.run_id,
                    r.client_order_id,
                    r.instrument,
                    r.ts_ns,
                    r.units,
                    r.price,
                    r.commission,
                    r.financing,
                    r.spread_cost,
                    int(ours),
                ),
            )
            if not ours or r.client_order_id is None:
                self.foreign_fills += 1
                log.warning("foreign_fill", broker_fill_id=r.broker_fill_id, instrument=r.instrument, units=r.units)
                continue
            self.inbox.append(
                Fill(
                    r.client_order_id,
                    r.instrument,
                    r.ts_ns,
                    Side.BUY if r.units > 0 else Side.SELL,
                    abs(r.units),
                    r.price,
                    r.commission,
                    self._fill_seq,
                )
            )
            self._fill_seq += 1
            order = self.working.get(r.instrument)
            if order is not None and order.intent.client_order_id == r.client_order_id:
                order.filled += abs(r.units)
                order.fills += 1
        for f in batch.financing:  # the broker's holding costs, kept beside its fills (units 0)
            key = f"{f.transaction_id}:financing:{f.instrument}"
            if key in self.seen:
                continue
            self._remember(key)
            self.financing += f.amount
            self.store.add(
                BrokerFillRow(key, self.run_id, None, f.instrument, f.ts_ns, 0.0, 0.0, 0.0, f.amount, 0.0, 0)
            )
        if batch.cursor is not None and batch.cursor != self.cursor:
            self.cursor = batch.cursor
            self.store.add(CursorRow(self.broker.name, batch.cursor, time.time_ns()))
        if apply and self.inbox:
            self.deliver(self.clock_ns())  # synchronous: the book moves before anything else can run
        return fresh

    def _remember(self, fill_id: str) -> None:
        self.last_fill_mono = time.monotonic()  # (the balance check waits out a broker's refresh after it)
        self.seen[fill_id] = None
        if len(self.seen) > self.seen_capacity:
            self.seen.popitem(last=False)

    def _journal(
        self, intent: OrderIntent, state: str, broker_order_id: str = "", filled: float = 0.0, reason: str = ""
    ) -> None:
        parsed = parse_client_order_id(intent.client_order_id)
        seq = parsed[2] if parsed else 0
        now = self.clock_ns()
        self.store.add(
            JournalRow(
                intent.client_order_id,
                self.run_id,
                intent.instrument,
                intent.bar_ts_ns,
                seq,
                intent.units * int(intent.side),
                state,
                broker_order_id,
                filled,
                reason,
                now,
                now,
                intent.stop_price,
            ),
        )
