"""A slot's quotes between two bar closes, handled as if they came one at a time (as a live
feed hands them over): each accepted quote works the order and the protective stop, becomes
the last quote, and marks and tiers an open position. So a replay's decisions, orders, fills
and risk events do not depend on its batch size.

Quote by quote in Python only where something can happen at any quote: an order working, a
flatten pending, a live broker's fills. Otherwise the quotes are skipped in one kernel call:
flat, only the last quote matters; holding, ``core.execution.quiet_until`` finds the first
quote where the stop triggers or the drawdown tier moves, and the marks before it change
nothing but the equity figures the last of them leaves."""

from __future__ import annotations

import numpy as np

from stairway.core.execution import quiet_until
from stairway.core.position import PS_UNITS
from stairway.core.risk_rules import FLATTEN


def step(slot, ts: np.ndarray, bid: np.ndarray, ask: np.ndarray, acc: np.ndarray, i: int) -> None:
    """Quote ``i`` (a daemon.slot.Slot's, not closing a bar) as the one-quote path takes it."""
    if not acc[i]:
        return
    slot.work(ts, bid, ask, acc, i, i + 1)
    at_quote(slot, ts, bid, ask, i)


def at_quote(slot, ts: np.ndarray, bid: np.ndarray, ask: np.ndarray, i: int) -> None:
    """Quote ``i`` is the last one: the account's marks, and an open position protected."""
    m = slot.marks
    m.last_quote = (float(bid[i]), float(ask[i]))
    m.last_quote_ts = int(ts[i])
    slot.account.on_quote(slot.instrument, *m.last_quote)
    if slot.orders.position[PS_UNITS] != 0.0:
        slot.protect_at_quote()


def walk(slot, ts: np.ndarray, bid: np.ndarray, ask: np.ndarray, acc: np.ndarray, start: int, end: int) -> None:
    """Quotes [start, end), none of them closing a bar."""
    orders, inst = slot.orders, slot.instrument
    broker = orders.broker
    stops = broker.stops  # the paper broker's; a live broker holds its stops and its fills come any time
    i = start
    while i < end:
        order = broker.working.get(inst)
        if stops is None or orders.flatten_reason is not None or (order is not None and order.remaining != 0.0):
            step(slot, ts, bid, ask, acc, i)
            i += 1
            continue
        k, last, stops[inst] = _quiet(slot, stops.get(inst, 0.0), bid, ask, acc, i, end)
        if last >= 0:
            at_quote(slot, ts, bid, ask, last)
        if k >= end:
            return
        step(slot, ts, bid, ask, acc, k)
        i = k + 1


def _quiet(slot, stop: float, bid, ask, acc, start: int, end: int) -> tuple[int, int, float]:
    """(first quote where something happens, last accepted quote before it, the stop then):
    see the module."""
    if slot.orders.position[PS_UNITS] == 0.0:
        ok = np.flatnonzero(acc[start:end])
        return end, (start + int(ok[-1]) if len(ok) else -1), stop
    acct, risk = slot.account, slot.risk
    session = slot.watch.sessions.current
    equity_open = session.equity_open if session is not None else slot.marks.quote_equity_open
    if equity_open is None or (risk.state.tier >= FLATTEN and not risk.state.halted):
        return start, -1, stop  # the first mark sets the session's base, or halts: quote by quote
    others = sum(e - acct.initial for k, e in acct._eq.items() if k != slot.instrument)
    opened = (
        acct.initial
        + (equity_open - acct.initial)
        + sum(o - acct.initial for k, o in acct._open.items() if k != slot.instrument)
    )
    r = risk.cfg
    return quiet_until(
        slot.orders.position, stop, bid, ask, acc, start, end, acct.initial, others,
        opened, risk.state.tier, np.asarray(r.drawdown_tiers_pct, dtype=np.float64), r.tier_exit_fraction,
        slot.orders.broker.trails.get(slot.instrument, 0.0),
    )  # fmt: skip
