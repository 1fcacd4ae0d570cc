"""The thin runner around daemon.reconciliation's pure functions.

When: at start-up (orders stay blocked until the first pass succeeds), after every order
that filled, every ``reconcile_secs`` (5 minutes), and an emergency size check every
``emergency_secs`` (30 s). Each pass, holding the router's broker lock so no order is in
the air: fetch new fills, resolve orders whose outcome is unknown, then compare the book
with the broker's open positions (the truth) and apply the corrections. Every
discrepancy and every action is a row in reconciliation_events; a pass that finds nothing
writes no row, except the start-up pass, which always records its outcome.

Per instrument: every instrument the daemon trades is compared with the broker's position in
it (a manual trade on any of them is found); a position in an instrument it does not trade
is recorded once and left alone. For the account: the broker's margin used, as a % of its
equity, goes to the account (daemon.account), whose margin limit then counts it; a figure
above the limit is recorded as an ``account_margin`` row.

The broker's figures checked (issue 21 §5): whenever the book and the broker are both flat
everywhere, the broker's cash balance must have moved since the first flat check by what the
book realised from fills (at the broker's prices, with its commissions), within
``guards.balance_tolerance``; more is an ``account_pnl_mismatch`` row and an alert (once, until
it agrees again): a fill, fee or charge the book does not know. Financing is taken out of both
sides (the broker's as its transactions book it, the book's as modelled): the drift report
compares those two, and a model that is a little off must not add up to an alarm over weeks. Compared flat only: with a
position open, the broker's FIFO trades and the book's average cost realise different parts
of the same PnL, and an unrealised figure depends on whose quote marks it. Instruments quoted
in another currency than the account's make the check unavailable (logged once).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable

import structlog

from stairway.core.broker import Broker, TradeStop
from stairway.core.errors import TRANSIENT, FatalError, OrderRejected
from stairway.core.position import PS_REALIZED, PS_UNITS, unrealized
from stairway.core.types import client_order_id, stop_order_id
from stairway.daemon.account import Account
from stairway.daemon.aio import backoff_delay, first_of, sleep_or_stop
from stairway.daemon.order_router import LiveRouter
from stairway.daemon.reconciliation import Correction, UnknownPositionPolicy, excess_over_limit, reconcile
from stairway.daemon.rows import ReconciliationRow
from stairway.daemon.slot import Slot
from stairway.daemon.store import Store

log = structlog.get_logger("reconcile")


def loosest_stop(slot: Slot, t: TradeStop) -> float:
    """The furthest from the trade's entry a stop of ours can be: the maximum loss's distance
    for its size (or the fixed stop_pips), plus what lies between a decision's quote and the
    fill (the price bound, or 10 pips without one) and 2 pips of spread. NaN (no limit known:
    an ATR stop without a cap) leaves any stop alone."""
    ex = slot.ex
    if ex.stop_max_loss > 0.0 and t.units:
        d = ex.stop_max_loss / abs(t.units)
    elif ex.stop_distance > 0.0:
        d = ex.stop_distance
    else:
        return math.nan
    d += (ex.bound_tolerance or 10 * ex.pip) + 2 * ex.pip
    return t.price - d if t.units > 0 else t.price + d


def replacement_distance(slot: Slot, units: float) -> float:
    """Where a missing stop goes back (price units from the trade's entry): the slot's last
    decision's distance, else (no decision since the start) the range's one now; capped by
    ``stop_max_loss`` for the trade's size, or that cap alone when neither is known. 0: none."""
    ex = slot.ex
    d = slot.orders.stop_distance
    if d <= 0.0 and ex.stop_atr_multiple > 0.0:
        a = slot.features.atr(ex.stop_atr_bars)
        d = ex.stop_atr_multiple * a if a == a else 0.0
    if ex.stop_max_loss > 0.0 and units != 0.0:
        cap = ex.stop_max_loss / abs(units)
        d = min(d, cap) if d > 0.0 else cap
    return d


class Reconciler:
    def __init__(
        self,
        broker: Broker,
        router: LiveRouter,
        slots: dict[str, Slot],
        store: Store,
        run_id: str,
        policy: UnknownPositionPolicy,
        max_units: Callable[[str], float],
        reconcile_secs: float,
        emergency_secs: float,
        clock_ns: Callable[[], int] = time.time_ns,
        backoff_cap_secs: float = 30.0,
        account: Account | None = None,
        alert: Callable[..., bool] | None = None,
        balance_tolerance: float = 50.0,
    ) -> None:
        if router.books.keys() != slots.keys() or any(router.books[k] is not s.orders for k, s in slots.items()):
            # each pass books the router's fills (router.deliver) before comparing: a book it cannot
            # reach would read as a discrepancy and be "corrected" with a second order
            raise ValueError("the router must book fills into the order managers of the slots it reconciles")
        self.broker, self.router, self.slots, self.store, self.run_id = broker, router, slots, store, run_id
        self.account = account
        self.alert = alert  # daemon.alerts.Alerter.notify
        self.account_checks = 0
        self.account_checks_deferred = 0  # account figures newer than the fills the book had synced
        self.balance_tolerance = balance_tolerance
        self.balance_base: tuple[float, float] | None = None  # (broker balance, book realised) when first flat
        self.balance_gap = 0.0  # the last flat comparison: broker's change minus the book's
        self.balance_checks = 0  # flat comparisons made (after the first, which sets the base)
        self.book_realised_since = 0.0  # what the book realised between the base and the last comparison
        self._balance_off = False
        self.open_pnl_checks = 0  # holding: the broker's open P&L compared with the book's
        self.open_pnl_gap = 0.0
        self.open_pnl_allowed = 0.0  # the last check's tolerance: a spread and the market's move per unit
        self._open_pnl_off = False
        self._open_pnl_strikes = 0
        self.policy, self._max_units = policy, max_units  # read at every check: SIGHUP may lower it
        self.reconcile_secs, self.emergency_secs, self.clock_ns = reconcile_secs, emergency_secs, clock_ns
        self.backoff_cap = backoff_cap_secs
        self.ready = False
        self.passes = 0
        self.discrepancies = 0
        self.last_error = ""
        self.ignored: set[str] = set()
        self._wake = asyncio.Event()
        router.on_settled = self.wake

    def wake(self) -> None:
        """Run a pass soon (a fill was reported: ours or one made at the broker by hand)."""
        self._wake.set()

    # -- one pass ---------------------------------------------------------------------------
    async def run_once(self, trigger: str) -> list[Correction] | None:
        """None when it could not finish (an order still unresolved): try again later."""
        async with self.router.io_lock:
            now = self.clock_ns()
            await self.router.sync_fills()
            await self.router.resolve_unknown()
            self.router.deliver(now)  # settled orders are finished by their order managers
            if self.router.busy():
                log.warning("reconcile_deferred", trigger=trigger, unresolved=list(self.router.unresolved))
                return None
            reports = await self.broker.positions()
            for _ in range(3):  # a fill at the broker between the two reads (a stop) would read as a discrepancy
                if not await self.router.sync_fills():
                    break
                self.router.deliver(now)
                reports = await self.broker.positions()
            for r in reports:
                if r.instrument not in self.slots and r.instrument not in self.ignored:
                    self.ignored.add(r.instrument)
                    self._event(
                        now,
                        trigger,
                        r.instrument,
                        "other_instrument",
                        None,
                        r.units,
                        0.0,
                        f"{r.units:+g} {r.instrument} held at the broker; not traded here: left alone",
                    )
            all_fixes: list[Correction] = []
            for inst, slot in self.slots.items():
                all_fixes += self._instrument(inst, slot, [r for r in reports if r.instrument == inst], now, trigger)
            if trigger in ("startup", "periodic"):
                await self._stops(now, trigger)
            if self.account is not None and trigger in ("startup", "periodic"):
                flat = not any(r.units for r in reports) and not any(s.position[PS_UNITS] for s in self.slots.values())
                settled = not all_fixes and not self.router.busy()  # book == broker, nothing in flight
                await self._account(now, trigger, flat, settled)
            self.passes += 1
            self.discrepancies += len(all_fixes)
            await self.store.flush()
            log.info(
                "reconciled",
                trigger=trigger,
                discrepancies=len(all_fixes),
                position_units={k: float(s.position[PS_UNITS]) for k, s in self.slots.items()},
            )
            return all_fixes

    def _instrument(self, inst: str, slot: Slot, mine: list, now: int, trigger: str) -> list[Correction]:
        book = {inst: float(slot.position[PS_UNITS])}
        fixes = reconcile(book, mine, self.policy)
        avg = next((r.avg_price for r in mine), 0.0)
        for c in fixes:
            self._apply(slot, c, avg, now, trigger)
        if not any(c.order_units for c in fixes):  # an adopted size may be above the maximum
            excess = self._cut_excess(slot, now, trigger, mine)
            fixes += [excess] if excess is not None else []
        if trigger == "startup" and not fixes:
            self._event(now, trigger, inst, "in_sync", book[inst], book[inst], 0.0, "book agrees with the broker")
        return fixes

    async def _account(self, now: int, trigger: str, flat: bool, settled: bool = True) -> None:
        """The broker's margin figure goes to the account's margin limit; flat, its balance is
        compared with the book's realised PnL; holding (book == broker, nothing in flight), its
        open P&L (equity less balance) with the book's marked at the last quotes."""
        acct = self.account
        assert acct is not None  # called only with an account
        # holding, the broker's prices on either side of its figures (where it can give them):
        # the book is marked at what the broker marks at, give or take what moved in between
        marking = settled and not flat
        before = await self.broker.quotes(list(self.slots)) if marking else {}
        report = await self.broker.account()
        after = await self.broker.quotes(list(self.slots)) if marking and before else {}
        self.account_checks += 1
        cursor = self.router.cursor
        if report.as_of is not None and cursor is not None and cursor.isdigit() and int(report.as_of) > int(cursor):
            # the figures include transactions (a stop's fill, a trade by hand) the book has not
            # synced yet: judged on the next pass, when it has (neither a strike nor a clear)
            self.account_checks_deferred += 1
        elif flat and time.monotonic() - self.router.last_fill_mono >= report.refresh_secs:
            self._check_balance(now, trigger, report.balance, report.currency)
        elif settled and report.equity_current:
            self._check_open_pnl(now, trigger, report.equity - report.balance, report.currency, before, after)
        pct = 100.0 * report.margin_used / report.equity if report.equity > 0 else 0.0
        was = acct.broker_margin_pct
        acct.broker_margin_pct = pct
        limit = acct.max_margin_pct
        if limit is not None and pct > limit and (was <= limit or trigger == "startup"):
            self._event(
                now,
                trigger,
                None,
                "account_margin",
                None,
                None,
                0.0,
                f"broker margin used {pct:.1f} % of equity {report.equity:g} {report.currency} > {limit:g} %: "
                "no new positions",
            )
            log.error("account_margin_above_limit", margin_pct=round(pct, 2), limit_pct=limit)

    async def _stops(self, now: int, trigger: str) -> None:
        """Every open trade of an instrument traded with protective stops (execution.stop_pips or
        stop_atr_multiple) has one at the broker: a missing one (removed by hand, or lost) is
        placed again at the trade's entry price -/+ the distance (``replacement_distance``): a
        ``stop_replaced`` row and an alert; one moved by hand beyond the loosest of ours
        (``loosest_stop``: the maximum loss no longer holds; for an ATR stop without a cap, the
        stop its order armed, from the order journal) is put back there: ``stop_restored``.
        At start-up this runs before any order may go out."""
        stopped = {i: s for i, s in self.slots.items() if s.ex.stops}
        if not stopped:
            return
        for k, t in enumerate(await self.broker.open_trades()):
            slot = stopped.get(t.instrument)
            if slot is None:
                continue
            loosest, armed = loosest_stop(slot, t), 0.0
            if loosest != loosest and t.stop is not None:  # an uncapped ATR stop: the one its order armed
                armed = await self.store.armed_stop(t.instrument, t.price, t.units > 0)
                if armed > 0.0 and (armed < t.price) == (t.units > 0):  # 2 pips: the broker's tick rounding
                    loosest = armed - 2 * slot.ex.pip if t.units > 0 else armed + 2 * slot.ex.pip
            if t.stop is not None and not (t.units > 0 and t.stop < loosest or t.units < 0 and t.stop > loosest):
                continue  # ours, or one moved closer by hand (more protection: left alone)
            was = (
                "had no stop"
                if t.stop is None
                else f"had its stop at {t.stop:.5f}, beyond the loosest of ours {loosest:.5f}"
            )
            d = abs(t.price - armed) if armed else replacement_distance(slot, t.units)  # armed: put back where it was
            price = t.price - d if t.units > 0 else t.price + d
            # unique per pass: a stop refused at one pass is asked for again at the next under a new id
            coid = stop_order_id(client_order_id(t.instrument, now, self.passes * 1000 + k))
            try:
                if d <= 0.0:
                    raise OrderRejected("no stop distance is known yet (no range to measure, no stop_max_loss)")
                trail = d if slot.ex.stop_trailing else 0.0  # trailing: placed again trailing by that distance
                await self.broker.set_stop(t.trade_id, t.instrument, t.units, price, coid, trail)
            except OrderRejected as e:
                kind, detail = (
                    "stop_refused",
                    f"trade {t.trade_id} ({t.units:+g}) {was} and the broker refused ours: {e}",
                )
            else:
                kind = "stop_replaced" if t.stop is None else "stop_restored"
                detail = f"trade {t.trade_id} ({t.units:+g}) {was} at the broker: placed at {price:.5f}"
            self._event(now, trigger, t.instrument, kind, None, t.units, 0.0, detail)
            log.error(kind, instrument=t.instrument, trade_id=t.trade_id, price=price)

    def _check_open_pnl(
        self,
        now: int,
        trigger: str,
        broker_open: float,
        currency: str,
        before: dict[str, tuple[float, float]],
        after: dict[str, tuple[float, float]],
    ) -> None:
        """The broker's unrealised P&L against the book's positions marked long at the bid,
        short at the ask (as the broker closes them): at the broker's own prices read just
        after its figures (``after``; the market's move since ``before``, read just before,
        is allowed for), else at the last quotes the slots saw. Allowed apart:
        ``balance_tolerance`` plus one spread and that move on every open unit. Beyond on two
        settled passes in a row: an ``account_equity_mismatch`` row and an alert, once until
        it is back within."""
        acct = self.account
        assert acct is not None
        if any("_" in i and not i.endswith("_" + currency) for i in self.slots):
            return  # P&L in another currency than the account's: not comparable here (as the balance)
        book, slack = 0.0, self.balance_tolerance
        for inst, slot in self.slots.items():
            bid, ask = after.get(inst) or acct.quotes.get(inst, (math.nan, math.nan))
            units = float(slot.position[PS_UNITS])
            if units and not (bid > 0 and ask > 0):
                return  # no quote to mark at yet
            b0, a0 = before.get(inst, (bid, ask))
            moved = max(abs(bid - b0), abs(ask - a0))
            book += float(unrealized(slot.position, bid, ask)) if units else 0.0
            slack += abs(units) * (ask - bid + moved) if units else 0.0
        self.open_pnl_checks += 1
        self.open_pnl_gap = gap = broker_open - book
        self.open_pnl_allowed = slack
        # off on two settled passes in a row: a price that moved between the book's last quote and
        # the broker's mark passes with the next quote; a trade priced otherwise stays
        self._open_pnl_strikes = self._open_pnl_strikes + 1 if abs(gap) > slack else 0
        off = self._open_pnl_strikes >= 2
        if off and not self._open_pnl_off:
            self._event(
                now,
                trigger,
                None,
                "account_equity_mismatch",
                book,
                broker_open,
                0.0,
                f"the broker's open P&L is {broker_open:+.2f} {currency}, the book's marked at "
                f"{'the broker prices' if after else 'its last quotes'} "
                f"{book:+.2f}: {gap:+.2f} apart (> {slack:.2f}): a position, price or fee the book does not know",
            )
            log.error("account_equity_mismatch", gap=round(gap, 2), allowed=round(slack, 2))
        self._open_pnl_off = off

    def _check_balance(self, now: int, trigger: str, balance: float, currency: str) -> None:
        foreign = [i for i in self.slots if "_" in i and not i.endswith("_" + currency)]
        if foreign:
            if self.balance_base is None:
                log.info("balance_check_unavailable", account_currency=currency, quoted_otherwise=foreign)
                self.balance_base = (math.nan, math.nan)
            return
        # both sides without financing: the book's realised PnL before its modelled charges, the
        # broker's balance before the financing its transactions booked
        realized = sum(float(s.position[PS_REALIZED]) + s.counters.financing for s in self.slots.values())
        balance -= self.router.financing
        if self.balance_base is None:
            self.balance_base = (balance, realized)
            return
        self.balance_checks += 1
        self.book_realised_since = realized - self.balance_base[1]
        self.balance_gap = gap = (balance - self.balance_base[0]) - self.book_realised_since
        off = abs(gap) > self.balance_tolerance
        if off and not self._balance_off:
            self._event(
                now,
                trigger,
                None,
                "account_pnl_mismatch",
                realized - self.balance_base[1],
                balance - self.balance_base[0],
                0.0,
                f"the broker's balance (financing aside) moved {balance - self.balance_base[0]:+.2f} {currency} since the "
                f"daemon's first flat check, the book realised {realized - self.balance_base[1]:+.2f}: {gap:+.2f} apart "
                f"(> {self.balance_tolerance:g}): a fill, fee or charge the book does not know",
            )
            log.error("account_pnl_mismatch", gap=round(gap, 2), tolerance=self.balance_tolerance)
        self._balance_off = off

    def _apply(self, slot: Slot, c: Correction, avg: float, now: int, trigger: str) -> None:
        slot.orders.set_position(c.book_units, avg)  # the broker's size is the truth
        action = c.detail
        if c.order_units:
            if slot.orders.submit_correction(c.order_units, now, c.detail, f"reconcile_{c.kind}"):
                action += f"; order {c.order_units:+g} sent"
            else:
                action += "; order deferred: another order is working"
        self._event(now, trigger, c.instrument, c.kind, c.ours, c.broker, c.order_units, action)
        log.warning(
            "reconcile_correction",
            trigger=trigger,
            instrument=c.instrument,
            kind=c.kind,
            ours=c.ours,
            broker=c.broker,
            order_units=c.order_units,
        )

    async def emergency_check(self) -> Correction | None:
        """The 30-second check on the broker's own size; excess is flattened and alerted."""
        async with self.router.io_lock:
            if self.router.busy():
                return None
            now = self.clock_ns()
            self.router.deliver(now)
            reports = await self.broker.positions()
            found = None
            for inst, slot in self.slots.items():
                c = self._cut_excess(slot, now, "emergency", [r for r in reports if r.instrument == inst])
                found = found or c
            if found is not None:
                await self.store.flush()
            return found

    def _cut_excess(self, slot: Slot, now: int, trigger: str, mine: list) -> Correction | None:
        units = sum(r.units for r in mine)
        maximum = self._max_units(slot.instrument)
        c = excess_over_limit(units, maximum, slot.instrument)
        if c is None:
            return None
        ours = float(slot.position[PS_UNITS])
        slot.orders.set_position(units, mine[0].avg_price)  # the broker's size first, then cut it
        sent = slot.orders.submit_correction(c.order_units, now, c.detail, "emergency_flatten_excess")
        self._event(
            now,
            trigger,
            c.instrument,
            c.kind,
            ours,
            units,
            c.order_units,
            c.detail + ("" if sent else "; deferred: another order is working"),
        )
        log.error(
            "position_above_maximum",
            instrument=slot.instrument,
            units=units,
            maximum=maximum,
            order_units=c.order_units,
        )
        return c

    def _event(self, ts: int, trigger: str, inst: str | None, kind: str, ours, broker, order_units, detail) -> None:
        self.store.add(ReconciliationRow(self.run_id, ts, trigger, inst, kind, ours, broker, order_units, detail))
        if self.alert is not None and kind != "in_sync":  # a discrepancy, or the account's margin
            self.alert(f"reconcile_{kind}", f"{inst or 'account'}: {detail}", key=f"reconcile_{kind}:{inst}")

    # -- the task ---------------------------------------------------------------------------
    async def startup(self, stop: asyncio.Event) -> bool:
        attempt = 0
        while not stop.is_set():
            try:
                if await self.run_once("startup") is not None:
                    self.ready = True
                    for inst, slot in self.slots.items():
                        slot.risk.permission.reconciled(inst, True)
                    self.last_error = ""
                    return True
            except FatalError:
                raise
            except TRANSIENT as e:
                self.last_error = str(e)
                log.error("reconcile_failed", trigger="startup", error=str(e))
            attempt += 1
            delay = backoff_delay(attempt, 0.5, self.backoff_cap)
            await sleep_or_stop(stop, delay)
        return False

    async def run(self, stop: asyncio.Event) -> None:
        for inst, slot in self.slots.items():
            slot.risk.permission.reconciled(inst, False)
        if not await self.startup(stop):
            return
        loop = asyncio.get_running_loop()
        next_full = loop.time() + self.reconcile_secs
        next_emergency = loop.time() + self.emergency_secs
        while not stop.is_set():
            timeout = max(0.0, min(next_full, next_emergency) - loop.time())
            await first_of(stop.wait(), self._wake.wait(), timeout=timeout)
            if stop.is_set():
                return
            try:
                if self._wake.is_set():
                    self._wake.clear()
                    await self.run_once("fill")
                if loop.time() >= next_full:
                    next_full = loop.time() + self.reconcile_secs
                    await self.run_once("periodic")
                if loop.time() >= next_emergency:
                    next_emergency = loop.time() + self.emergency_secs
                    await self.emergency_check()
                self.last_error = ""
            except FatalError:
                raise
            except TRANSIENT as e:
                self.last_error = str(e)
                log.error("reconcile_failed", error=str(e))
