"""Domain types. Hot-path data (ticks, bars) are structured numpy arrays, not objects."""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

#: One quote. ``ts_ns`` is UTC nanoseconds since the epoch.
TICK_DTYPE = np.dtype([("ts_ns", "<i8"), ("bid", "<f8"), ("ask", "<f8")])

#: One bar. ``ts_ns`` is the bar's open time (UTC ns); ``volume`` is whatever the source
#: gives (real volume in history, tick count in bars built from quotes). Volume is never a
#: feature, because the two meanings differ.
BAR_DTYPE = np.dtype(
    [
        ("ts_ns", "<i8"),
        ("open", "<f8"),
        ("high", "<f8"),
        ("low", "<f8"),
        ("close", "<f8"),
        ("volume", "<f8"),
    ]
)

NS_PER_MINUTE = 60_000_000_000
NS_PER_DAY = 1440 * NS_PER_MINUTE


class Action(enum.IntEnum):
    """The policy's action space. Values are the network's output indices."""

    HOLD = 0
    BUY = 1
    SELL = 2
    CLOSE = 3


ACTION_NAMES: tuple[str, ...] = tuple(a.name for a in Action)


class Side(enum.IntEnum):
    SELL = -1
    BUY = 1


@dataclass(frozen=True, slots=True)
class OrderIntent:
    """What the slot asks the broker to do after the risk check."""

    client_order_id: str
    instrument: str
    side: Side
    units: float
    bar_ts_ns: int
    decided_after_tick_ts_ns: int
    price_bound: float | None = None  # the worst fill price accepted (core.execution.price_bound); None: any
    stop_price: float = 0.0  # the protective stop its fills arm (core.execution.stop_price); 0: none
    stop_trail: float = 0.0  # that stop trails the price by this distance (execution.stop_trailing); 0: fixed


@dataclass(frozen=True, slots=True)
class Fill:
    client_order_id: str
    instrument: str
    ts_ns: int
    side: Side
    units: float
    price: float
    commission: float
    seq: int = 0  # the fill's number within its order (0, 1, ...)


def client_order_id(instrument: str, bar_ts_ns: int, seq: int) -> str:
    """Deterministic id: the same decision always maps to the same id, so a retry after a
    timeout or a restart can be recognised by the broker instead of opening twice."""
    return f"{CLIENT_ID_PREFIX}{instrument}-{bar_ts_ns}-{seq}"


CLIENT_ID_PREFIX = "sw-"
STOP_SUFFIX = "-stop"  # the protective stop an order arms carries the order's id and this


def stop_order_id(coid: str) -> str:
    """The client id of the protective stop that order ``coid``'s fills arm."""
    return coid + STOP_SUFFIX


def is_stop_id(coid: str) -> bool:
    return coid.endswith(STOP_SUFFIX)


def parse_client_order_id(coid: str) -> tuple[str, int, int] | None:
    """(instrument, bar_ts_ns, seq) of one of our ids (a protective stop's: its order's);
    None for anyone else's."""
    if not coid.startswith(CLIENT_ID_PREFIX):
        return None
    coid = coid.removesuffix(STOP_SUFFIX)
    try:
        inst, bar_ts, seq = coid[len(CLIENT_ID_PREFIX) :].rsplit("-", 2)
        return inst, int(bar_ts), int(seq)
    except ValueError:
        return None
