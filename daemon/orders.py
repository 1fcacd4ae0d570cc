"""One instrument's order manager: its book (core.position's state), the order working at
its gateway, client ids, and how fills reach the book.

Fills arrive as values on one path: the paper broker's ``work`` returns them for the quotes
it is handed; a live router (daemon.order_router) holds the fills its broker reported in its
inbox and hands them over with ``LiveRouter.deliver`` (-> ``apply_pending_fills``), on the
event loop, where they arrive and before each reconciliation pass. Either way ``take_fills``
books them, journals them (a fill row each; the book row where it is persisted), settles the
working order (an overfill's excess is flattened at once, a filled order stops blocking
decisions) and tells the risk engine the position and what is still working.

The daemon's slot (daemon.slot) and the trainer's shadow gate (through the same slot) use
this one manager; the reconciler adopts the broker's view and sends corrections through it.
"""

from __future__ import annotations

import math
import time

import numpy as np

from stairway.core.execution import ExecutionModel, price_bound, stop_price
from stairway.core.position import PS_AVG, PS_REALIZED, PS_UNITS, apply_fill, new_state
from stairway.core.types import Fill, OrderIntent, Side, client_order_id, is_stop_id
from stairway.daemon.paper_broker import OrderGateway
from stairway.daemon.risk import RiskEngine
from stairway.daemon.rows import BookRow, FillRow, OrderRow
from stairway.daemon.slot_journal import SlotJournal

_ONE = np.ones(1, dtype=np.bool_)  # a one-quote batch that the bar builder accepted


class OrderManager:
    def __init__(self, journal: SlotJournal, broker: OrderGateway, risk: RiskEngine, ex: ExecutionModel) -> None:
        self.journal, self.broker, self.risk, self.ex = journal, broker, risk, ex
        self.instrument = journal.instrument
        self.position = new_state()
        self.bar_quote = (math.nan, math.nan)  # the last marked bar's last quote: a decision's reference
        self.stop_note = ""  # why the position last ended at its stop: on the next decision's row
        self.stop_distance = ex.stop_distance  # the last decision's (core.protection); a missing stop goes back there
        self.flatten_reason: str | None = None  # a flatten asked for, done at the next quote
        self.new_fills: list[Fill] = []  # booked since the daemon last took them (its fill notices)
        # live brokers: the book is persisted with every fill (committed together with the
        # broker's fill ids); whether orders may go out is the risk engine's Permission
        self.persist_book = False
        self._seq: dict[int, int] = {}

    @property
    def units(self) -> float:
        return float(self.position[PS_UNITS])

    @property
    def working(self) -> bool:
        """An order of this instrument is working (decisions wait for it)."""
        return self.instrument in self.broker.working

    # -- the book -------------------------------------------------------------------------
    def set_position(self, units: float, avg_price: float, realized: float | None = None) -> None:
        """Adopt the broker's view (reconciliation, restart); realised PnL is kept."""
        st = self.position
        st[PS_UNITS] = units
        st[PS_AVG] = avg_price if units else 0.0
        if realized is not None:
            st[PS_REALIZED] = realized
        self.risk.on_position(self.instrument, units)
        self._persist_book()

    def seed_order_seq(self, bar_ts: int, seq: int) -> None:
        """Continue client ids after the newest journaled one, so none is ever reused."""
        self._seq = {bar_ts: seq}

    def _persist_book(self) -> None:
        if self.persist_book:
            units, avg, realized = (float(self.position[k]) for k in (PS_UNITS, PS_AVG, PS_REALIZED))
            self.journal.add(BookRow(self.instrument, units, avg, realized, time.time_ns(), self.journal.run_id))

    # -- orders ---------------------------------------------------------------------------
    def _next_id(self, bar_ts: int) -> str:
        seq = self._seq.get(bar_ts, -1) + 1
        self._seq = {bar_ts: seq}  # bounded: only the current bar's counter is kept
        return client_order_id(self.instrument, bar_ts, seq)

    def submit(self, units: float, bar_ts: int, after_ts: int, expires: bool = True) -> None:
        """A decision's order (``expires``) is bounded by its quote (core.execution.price_bound);
        a flatten or correction is not: it must close whatever the price."""
        bound = price_bound(units, *self.bar_quote, self.ex.bound_tolerance) if expires else math.nan
        target = self.units + units
        stop = stop_price(target, *self.bar_quote, self.stop_distance) if expires else 0.0  # its fills arm it
        trail = self.stop_distance if stop and self.ex.stop_trailing else 0.0
        head = (self._next_id(bar_ts), self.instrument, Side.BUY if units > 0 else Side.SELL, abs(units), bar_ts)
        intent = OrderIntent(*head, after_ts, None if bound != bound else bound, stop, trail)
        self.broker.submit(intent, after_ts + self.ex.latency_ns, expires)
        self.risk.on_working(self.instrument, units)
        self.journal.counters.orders += 1
        self.risk.on_order(self.instrument)
        session = self.journal.watch.sessions.current
        if session is not None:
            session.orders += 1

    def submit_correction(self, units: float, now_ns: int, reason: str, kind: str) -> bool:
        """A corrective order from reconciliation; False while another order is working."""
        if self.working:
            return False
        self.journal.risk_event(now_ns, kind, reason, units, units)
        self.submit(units, self.journal.counters.last_bar_ts or now_ns, now_ns, expires=False)
        return True

    def flatten_now(self, after_ts: int) -> None:
        """The flatten asked for: the working order ends, then the position is closed by an
        order worked until filled (a live order's outcome not known yet: at a later quote)."""
        self.finish_order()
        if self.working:
            return
        reason, self.flatten_reason = self.flatten_reason, None
        units = self.units
        self.journal.risk_event(after_ts, "flatten", reason or "flatten requested", -units, -units)
        if units != 0.0:  # worked until filled, not cancelled at the next bar close
            self.submit(-units, self.journal.counters.last_bar_ts or after_ts, after_ts, expires=False)

    def finish_order(self) -> None:
        """The working order ends here (filled, expired, cancelled): its row."""
        order = self.broker.finish(self.instrument)
        self.risk.on_working(self.instrument, 0.0)
        if order is None:
            return
        total, i = order.intent.units, order.intent
        status = "filled" if order.filled >= total - 1e-9 else ("partial" if order.filled > 0 else "cancelled")
        if order.bounded:  # the market moved past the decision's bound: counted, alerted, decided afresh
            status += " (price bound)"
            self.journal.counters.bound_cancels += 1
            what = (
                f"order {i.client_order_id} cancelled after {order.filled:g} of {total:g}: price beyond {i.price_bound}"
            )
            self.journal.risk_event(order.not_before_ns, "price_bound", what)
        sign = int(i.side)
        self.journal.add(OrderRow(self.journal.run_id, i.client_order_id, i.instrument, i.bar_ts_ns, total * sign,
                                  order.filled * sign, status, order.not_before_ns))  # fmt: skip

    def finish_expiring(self) -> None:
        """A bar closed: a decision's order that is still working is cancelled (its remainder)."""
        order = self.broker.working.get(self.instrument)
        if order is not None and order.expires:
            self.finish_order()

    # -- fills ----------------------------------------------------------------------------
    def work_one(self, ticks: np.ndarray, ts: int) -> None:
        """One accepted quote (a batch of one, at ``ts``) worked: handed to the gateway only
        when something could fill at it (its arrays are built only then), then settled."""
        b = self.broker
        fills = (
            b.work(self.instrument, ticks["ts_ns"], ticks["bid"], ticks["ask"], _ONE, 0, 1)
            if b.has_work(self.instrument)
            else []
        )
        self.take_fills(fills, ts)

    def apply_pending_fills(self, now_ns: int) -> None:
        """Book the fills a live broker reported between quotes (the daemon drains them on the
        event loop, at once): the one way live fills reach the book."""
        self.take_fills(self.broker.pending_fills(self.instrument), now_ns)

    def take_fills(self, fills: list, at_ns: int) -> None:
        """Book the fills, then settle the working order: an overfill is flattened at once (from
        ``at_ns``), a filled order stops blocking decisions."""
        if not fills:  # most quotes: nothing booked, the risk engine's figures stand
            order = self.broker.working.get(self.instrument)
            if order is not None and order.remaining == 0.0:
                self.finish_order()  # a live order the broker ended unfilled (daemon.order_router)
            return
        j = self.journal
        session = j.watch.sessions.current
        for f in fills:
            signed = f.units * int(f.side)
            apply_fill(self.position, signed, f.price, f.commission)
            if is_stop_id(f.client_order_id):  # the protective stop (paper: core.execution.work_quotes)
                j.risk_event(f.ts_ns, "stop_filled", f"protective stop: {signed:+g} at {f.price}")
                self.stop_note = f"the position ended at its protective stop ({signed:+g} at {f.price})"
            j.add(FillRow(j.run_id, f.client_order_id, f.seq, f.instrument, f.ts_ns, signed, f.price, f.commission))
            j.counters.fills += 1
            self.new_fills.append(f)
            if session is not None:
                session.fills += 1
        self._persist_book()
        order = self.broker.working.get(self.instrument)
        if order is not None and order.filled > 0:
            requested = order.intent.units * int(order.intent.side)
            excess = self.risk.check_fill(requested, order.filled * int(order.intent.side))
            if excess:
                self.finish_order()
                j.risk_event(
                    at_ns,
                    "overfill",
                    f"filled {order.filled:g} for {order.intent.units:g} requested; flattening the excess",
                    requested,
                    -excess,
                )
                self.submit(-excess, order.intent.bar_ts_ns, at_ns, expires=False)
                order = None
        if order is not None and order.remaining == 0.0:
            self.finish_order()  # done: a flatten/corrective order stops blocking decisions
        self.risk.on_position(self.instrument, self.units)
        order = self.broker.working.get(self.instrument)
        self.risk.on_working(self.instrument, order.remaining if order is not None else 0.0)
