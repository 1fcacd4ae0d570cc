"""The fault-matrix harness: the real daemon (live OANDA mode) against the local v20
emulator, in one event loop, plus the invariants every case must end with.

Prices: real EUR/USD hourly bars (October 2017) replayed as bar-derived quotes through the
emulator's pricing stream; the daemon's clock is the emulator's (the time of the last
price it sent), so the risk engine's stale-data rule sees the stream as live.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stairway.core.features import FeatureSpec
from stairway.daemon.app import Daemon
from stairway.daemon.config import DaemonConfig
from stairway.daemon.feeds.replay import replay_ticks
from stairway.emulators.oanda_v20 import OandaEmulator
from tests.helpers import EURUSD, daemon_config, tiny_checkpoint

INSTRUMENT = "EUR_USD"
WARMUP_DAYS = 6  # the feature windows need 96 hourly bars before the first decision


def live_config(tmp: Path, url: str, **broker) -> DaemonConfig:
    cfg, _ = daemon_config(
        tmp, EURUSD, "2017-10-01", "2017-11-01", require_start_file="false", record_ticks="false", reconcile_secs="0.5"
    )
    b = cfg.broker.model_copy(
        update={
            "kind": "oanda",
            "emergency_check_secs": 0.5,
            **broker,
            "oanda": cfg.broker.oanda.model_copy(
                update={
                    "rest_url": url,
                    "stream_url": url,
                    "heartbeat_timeout_secs": 0.6,
                    "price_stale_secs": 1.0,
                    "backoff_base_secs": 0.05,
                    "backoff_cap_secs": 0.2,
                    "request_timeout_secs": 2.0,
                }
            ),
        }
    )
    svc = cfg.service.model_copy(update={"http_port": None})
    # the emulator's clock runs ahead of the daemon by the quotes in flight (15 simulated
    # minutes each): a stale limit of 12 h keeps that from reading as stale data
    risk = cfg.risk.model_copy(update={"stale_after_secs": 43200.0})
    return cfg.model_copy(update={"broker": b, "replay": None, "service": svc, "risk": risk})


def prices(cfg: DaemonConfig, days: float, start: str = "2017-10-02") -> list[tuple[int, float, float]]:
    import datetime as dt

    t0 = int(dt.datetime.fromisoformat(start).replace(tzinfo=dt.UTC).timestamp()) * 10**9
    q = replay_ticks(cfg, t0, t0 + int(days * 86400) * 10**9)
    return list(zip(q["ts_ns"].tolist(), q["bid"].tolist(), q["ask"].tolist()))


@dataclass
class Outcome:
    error: BaseException | None
    daemon: Daemon
    health: list[str] = field(default_factory=list)
    reached: bool = False  # the stopping condition became true (else the daemon stopped by itself)


class ConditionNotReached(AssertionError):
    """A run hit its wall-clock limit before its stopping condition: the case proves nothing."""


class Rig:
    """One emulator and one state directory; ``run`` starts a daemon until a condition."""

    def __init__(self, tmp: Path, spec: FeatureSpec, seed: int = 3, **broker) -> None:
        self.tmp, self.spec, self.seed = tmp, spec, seed
        self.emu = OandaEmulator()
        self.emu.knobs.end_when_exhausted = False
        self.emu.knobs.price_interval_secs = 0.003  # a bar every 12 ms: order round trips fit in one
        self.broker = broker
        self.clock_offset_ns = 0
        self.history_from = 0  # broker transactions up to this id predate the daemon's history
        self.cfg: DaemonConfig | None = None

    async def start(self) -> None:
        if not (self.tmp / "models" / "current").exists():  # the operator's model, written off the loop
            await asyncio.to_thread(tiny_checkpoint, self.tmp / "models", self.spec, seed=self.seed)
        url = await self.emu.start()
        self.cfg = await asyncio.to_thread(live_config, self.tmp, url, **self.broker)

    async def start_with(self, **execution) -> None:
        """``start`` with these [execution] settings for every run (stop_pips, price_bound_pips); a
        stop setting given replaces the shipped stop (3 ATRs, capped) as a whole."""
        await self.start()
        assert self.cfg is not None
        stops = ("stop_pips", "stop_atr_multiple", "stop_max_loss")
        if any(k in execution for k in stops):
            execution = dict.fromkeys(stops) | execution
        self.cfg = self.cfg.model_copy(update={"execution": self.cfg.execution.model_copy(update=execution)})

    def clock(self) -> int:
        return self.emu.now_ns + self.clock_offset_ns

    def env(self) -> dict[str, str]:
        return {"OANDA_TOKEN": self.emu.token, "OANDA_ACCOUNT": self.emu.account}

    async def run(
        self, until, timeout: float = 30.0, cfg: DaemonConfig | None = None, during=None, policy=None
    ) -> Outcome:
        """Run a daemon until ``until(daemon)`` is true (or the timeout), then stop it."""
        stop = asyncio.Event()
        d = Daemon(cfg or self.cfg, policy=policy, stop=stop, clock=self.clock, environ=self.env())
        task = asyncio.create_task(d.run())
        t_end = time.monotonic() + timeout
        health: list[str] = []
        reached = False
        try:
            while not task.done() and time.monotonic() < t_end:
                await asyncio.sleep(0.02)
                if d.setup_done:  # not before every component exists (the reconciler follows the slot)
                    if during is not None:
                        await during(d)
                    if until(d):
                        reached = True
                        break
            if d.setup_done and not task.done():
                health = d.view.health()
            stopped_by_itself = task.done()
        finally:
            stop.set()
            try:
                await asyncio.wait_for(asyncio.shield(task), 15)
                error = None
            except TimeoutError as e:  # a daemon that does not stop is a failure: say where it hangs
                stacks = [
                    f"{t.get_name()}: {t.get_stack(limit=4)}"
                    for t in asyncio.all_tasks()
                    if t is not asyncio.current_task()
                ]
                print("daemon did not stop within 15 s; tasks:\n" + "\n".join(stacks))
                error = e
            except BaseException as e:  # the case decides whether a stop was wanted
                error = e
        if not reached and not stopped_by_itself:
            raise ConditionNotReached(
                f"the run ended at its {timeout:.0f} s limit, not by its stopping condition "
                f"(ticks {d.slot.counters.ticks if d.setup_done else 0}, emulator "
                f"cursor {self.emu.cursor}/{len(self.emu.prices)}, orders "
                f"{self.emu.order_requests}); error: {error!r}"
            )
        return Outcome(error, d, health, reached)

    async def close(self) -> None:
        await self.emu.stop()

    # -- invariants -------------------------------------------------------------------------
    def db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.cfg.service.db_path)

    def check(self) -> dict:
        """No duplicate order, no lost fill, the book equals the broker's position."""
        with self.db() as c:
            book = c.execute("SELECT units FROM book WHERE instrument = ?", (INSTRUMENT,)).fetchone()
        journal, broker_fills = self.check_orders_and_fills()
        # the book is the broker's position
        held = self.emu.positions.get(INSTRUMENT, 0.0)
        assert book is not None or held == 0.0
        assert abs((book[0] if book else 0.0) - held) < 1e-6, (book, held)
        return {"orders": len(self.emu.orders), "fills": len(broker_fills), "position": held, "journal": journal}

    def check_orders_and_fills(self) -> tuple[dict, set]:
        """No duplicate order, none left unknown, every broker fill recorded once; returns
        (the journal, the broker's fill ids)."""
        emu = self.emu
        with self.db() as c:
            journal = dict(c.execute("SELECT client_order_id, state FROM order_journal").fetchall())
            fills = {r[0] for r in c.execute("SELECT broker_fill_id FROM broker_fills")}
        # every order the broker holds is ours, journaled, and settled as such; one POST per order
        assert set(emu.orders) <= set(journal), set(emu.orders) - set(journal)
        for coid, o in emu.orders.items():  # (a bounded order the broker cancelled: journaled so)
            want = ("cancelled",) if o["state"] == "CANCELLED" else ("filled", "partially_filled")
            assert journal[coid] in want, (coid, journal[coid])
        rejected = sum(1 for s in journal.values() if s == "rejected")
        assert emu.order_requests == len(emu.orders) + rejected, (emu.order_requests, len(emu.orders), rejected)
        assert not [k for k, s in journal.items() if s in ("new", "unknown")], journal
        for coid, s in journal.items():  # nothing the broker lacks is believed filled
            if s in ("filled", "partially_filled"):
                assert coid in emu.orders, coid
        # every fill the broker made (ours and manual) was recorded once
        broker_fills = set()
        for tx in emu.transactions:
            if tx["type"] == "ORDER_FILL" and int(tx["id"]) > self.history_from:
                parts = len(tx.get("tradesClosed") or []) + bool(tx.get("tradeReduced")) + bool(tx.get("tradeOpened"))
                broker_fills |= {f"{tx['id']}:{k}" for k in range(parts)}
        assert broker_fills <= fills, broker_fills - fills
        return journal, broker_fills


def ticks_done(d: Daemon, n: int) -> bool:
    return d.slot.counters.ticks >= n and not d.parts.router.busy() and d.parts.reconciler.ready


def reconcile_events(rig: Rig) -> list[tuple]:
    with rig.db() as c:
        return c.execute(
            "SELECT trigger, kind, ours, broker, order_units FROM reconciliation_events ORDER BY id"
        ).fetchall()


__all__ = ["Rig", "live_config", "prices", "ticks_done", "reconcile_events", "np"]
