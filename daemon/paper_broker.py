"""The paper broker: works orders against live or replayed quotes with core's execution model.

It holds at most one working order per instrument (one decision per bar); the order is
worked by core.execution.work_quotes on each batch of quotes, and its remainder is cancelled
when the slot says the next bar has closed. Positions are kept by the slot from the fills,
exactly as with a real broker's fill reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from stairway.core.errors import OrderRejected
from stairway.core.execution import ExecutionModel, work_quotes
from stairway.core.types import Fill, OrderIntent, Side, stop_order_id

MAX_FILLS_PER_CALL = 256


@dataclass
class WorkingOrder:
    intent: OrderIntent
    remaining: float
    not_before_ns: int
    expires: bool = True  # decision orders expire at the next bar close; flatten/corrective ones do not
    filled: float = 0.0
    fills: int = 0
    bounded: bool = False  # cancelled at a price beyond its bound (intent.price_bound)


def add_working(
    working: dict[str, WorkingOrder], intent: OrderIntent, not_before_ns: int, expires: bool
) -> WorkingOrder:
    """One working order per instrument, positive units: the rule every order path keeps."""
    if intent.instrument in working:
        raise OrderRejected(
            f"{intent.client_order_id}: {intent.instrument} already has a working order "
            f"{working[intent.instrument].intent.client_order_id}"
        )
    if intent.units <= 0:
        raise OrderRejected(f"{intent.client_order_id}: units must be positive, got {intent.units}")
    order = working[intent.instrument] = WorkingOrder(intent, intent.units * int(intent.side), not_before_ns, expires)
    return order


class OrderGateway(Protocol):
    """Where the slot's orders go: the paper broker (fills worked against the quotes) or the
    live router (fills reported by the broker). The slot knows no other broker interface.

        working               the order working per instrument (one at a time)
        submit(intent, ...)   hand over an order, not to fill before ``not_before_ns``
        work(instrument, quotes..., start, stop)
                              fills against quotes[start:stop] (live: none, fills are pushed)
        pending_fills(instrument)
                              fills that arrived between quotes (paper: none)
        finish(instrument)    take the working order off when its outcome is known
        has_work(instrument)  whether ``work`` could return a fill now (else a quote need not
                              be handed to it: the one-quote path skips building its arrays)
        stops, trails         the protective stops it works itself against the quotes, and
                              their trailing distances (paper); stops None: the broker holds
                              them and reports their fills like any other (live)
    """

    working: dict[str, WorkingOrder]
    trails: dict[str, float]

    @property
    def stops(self) -> dict[str, float] | None: ...

    def submit(self, intent: OrderIntent, not_before_ns: int, expires: bool = True) -> None: ...

    def work(self, instrument: str, ts, bid, ask, acc, start: int, stop: int) -> list[Fill]: ...

    def pending_fills(self, instrument: str) -> list[Fill]: ...

    def finish(self, instrument: str) -> WorkingOrder | None: ...

    def has_work(self, instrument: str) -> bool: ...


class PaperBroker:
    name = "paper"

    def __init__(self, ex: ExecutionModel | dict[str, ExecutionModel]) -> None:
        """``ex``: the one instrument's execution model, or each instrument's (a portfolio: an
        order for an instrument without one is refused)."""
        self.ex = ex
        self.working: dict[str, WorkingOrder] = {}
        self._idx = np.empty(MAX_FILLS_PER_CALL, dtype=np.int64)
        self._units = np.empty(MAX_FILLS_PER_CALL)
        self._price = np.empty(MAX_FILLS_PER_CALL)
        self._stop = np.empty(MAX_FILLS_PER_CALL)
        self.units: dict[str, float] = {}  # the position its fills made, per instrument (paper starts flat)
        self.stops: dict[str, float] = {}  # the protective stop's price per instrument (0: none)
        self.stop_ids: dict[str, str] = {}  # the client id its fills carry: the arming order's + "-stop"
        self.trails: dict[str, float] = {}  # a trailing stop's distance per instrument (0: a fixed stop)

    def _model(self, instrument: str) -> ExecutionModel:
        if isinstance(self.ex, ExecutionModel):
            return self.ex
        ex = self.ex.get(instrument)
        if ex is None:
            raise KeyError(f"paper broker: {instrument} is not an instrument of this portfolio ({', '.join(self.ex)})")
        return ex

    def submit(self, intent: OrderIntent, not_before_ns: int, expires: bool = True) -> None:
        self._model(intent.instrument)  # an instrument it has no model for is refused here
        add_working(self.working, intent, not_before_ns, expires)

    def work(
        self,
        instrument: str,
        ts: np.ndarray,
        bid: np.ndarray,
        ask: np.ndarray,
        accepted: np.ndarray,
        start: int,
        stop: int,
    ) -> list[Fill]:
        """Work the instrument's order and its protective stop against quotes [start, stop)
        (core.execution.work_quotes, as the trainer's env does); returns the fills."""
        if start >= stop or not self.has_work(instrument):
            return []
        order = self.working.get(instrument)
        if order is not None and order.remaining == 0.0:
            order = None
        armed = self.stops.get(instrument, 0.0)
        fills: list[Fill] = []
        ex = self._model(instrument)
        units, trail = self.units.get(instrument, 0.0), self.trails.get(instrument, 0.0)
        while start < stop and (order is not None or armed > 0.0):
            # bound the fill buffer: at most MAX_FILLS_PER_CALL quotes per kernel call
            chunk_stop = min(stop, start + MAX_FILLS_PER_CALL)
            intent = order.intent if order is not None else None
            n, units, remaining, armed, bounded, trail = work_quotes(
                units,
                order.remaining if order is not None else 0.0,
                intent.stop_price if intent is not None else 0.0,
                armed,
                ts,
                bid,
                ask,
                accepted,
                start,
                chunk_stop,
                order.not_before_ns if order is not None else 0,
                ex.cap_units,
                ex.slippage,
                np.nan if intent is None or intent.price_bound is None else intent.price_bound,
                self._idx,
                self._units,
                self._price,
                self._stop,
                0,
                intent.stop_trail if intent is not None else 0.0,
                trail,
            )
            for k in range(n):
                u = float(self._units[k])
                if self._stop[k]:  # the protective stop closed the position
                    coid, seq = self.stop_ids.get(instrument, f"stop-{instrument}"), 0
                else:
                    assert order is not None
                    coid, seq = order.intent.client_order_id, order.fills
                    order.filled += abs(u)
                    order.fills += 1
                    self.stop_ids[instrument] = stop_order_id(coid)
                side = Side.BUY if u > 0 else Side.SELL
                at = int(ts[self._idx[k]])
                fills.append(Fill(coid, instrument, at, side, abs(u), float(self._price[k]), ex.commission(u), seq))
            if order is not None:
                order.remaining = remaining
                order.bounded |= bounded
                if remaining == 0.0:
                    order = None
            start = chunk_stop
        self.units[instrument], self.stops[instrument], self.trails[instrument] = units, armed, trail
        return fills

    def has_work(self, instrument: str) -> bool:
        """An order with units left, or an armed protective stop: a quote could fill."""
        order = self.working.get(instrument)
        return (order is not None and order.remaining != 0.0) or self.stops.get(instrument, 0.0) > 0.0

    def pending_fills(self, instrument: str) -> list[Fill]:
        """Paper fills happen only against quotes (work)."""
        return []

    def finish(self, instrument: str) -> WorkingOrder | None:
        """Cancel what is left of the instrument's order and hand back its final state."""
        return self.working.pop(instrument, None)
