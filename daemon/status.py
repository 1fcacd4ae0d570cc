"""What the daemon reports about itself: the status snapshot (``/status``, ``/metrics``,
``state/status.json``, ``ctl status``) and the health reasons (``/health``, 503 when any).
Read from the running daemon's parts (daemon.parts) by ``StatusView``; nothing here changes them."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from stairway.core.broker import FeedStatus
from stairway.core.redaction import redact
from stairway.core.risk_rules import TIER_NAMES
from stairway.daemon.alerts import health_conditions
from stairway.daemon.control import hint

if TYPE_CHECKING:
    from stairway.daemon.config import DaemonConfig
    from stairway.daemon.lifecycle import Lifecycle
    from stairway.daemon.parts import Parts
    from stairway.daemon.supervisor import LoopLag


def fmt_ts(ts_ns: int | None) -> str:
    return "-" if ts_ns is None else time.strftime("%Y-%m-%d %H:%M", time.gmtime(ts_ns // 10**9))


def iso_utc(ts_ns: int) -> str:
    """UTC ISO 8601 to the second, e.g. 2026-12-04T14:29:05Z."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts_ns // 10**9))


def model_age_secs(policy) -> float | None:
    """Age of the running model from its checkpoint header; None when unknown."""
    created = policy.card.created_at
    try:
        return time.time() - dt.datetime.fromisoformat(created).timestamp() if created else None
    except ValueError:
        return None


def slot_counters(slot) -> dict:
    """One instrument's counters (the run's result, per instrument)."""
    c, b = slot.counters, slot.builder
    return {
        "ticks": c.ticks,
        "bars": c.bars,
        "decisions": c.decisions,
        "orders": c.orders,
        "fills": c.fills,
        "swaps": c.swaps,
        "history_bars": c.history_bars,
        "financing": c.financing,
        "actions": dict(c.actions),
        "rejected_bad": b.rejected_bad,
        "rejected_out_of_order": b.rejected_out_of_order,
        "rejected_duplicate": b.rejected_duplicate,
        "rejected_jump": b.rejected_jump,
        "risk_events": dict(c.risk_events),
        "blocked_intents": c.blocked_intents,
        "policy_errors": c.policy_errors,
        "bound_cancels": c.bound_cancels,
    }


# decision latency histogram buckets (seconds) for /metrics
LATENCY_BUCKETS = (50e-6, 100e-6, 200e-6, 500e-6, 1e-3, 2e-3, 5e-3, 10e-3, 50e-3)


def latency_histogram(ns) -> dict:
    """Cumulative bucket counts, sum and count of the slot's recent decision latencies."""
    import numpy as np

    lat = np.asarray(ns, dtype=float) / 1e9
    return {
        "decision_latency_buckets": [int((lat <= b).sum()) for b in LATENCY_BUCKETS],
        "decision_latency_sum": float(lat.sum()),
        "decision_latency_count": int(len(lat)),
    }


# the slot's counters an instrument's snapshot carries as they are
COUNTED = ("ticks", "bars", "decisions", "orders", "fills", "swaps", "actions", "policy_errors", "bound_cancels")


SUMMED = (
    "ticks",
    "bars",
    "decisions",
    "orders",
    "fills",
    "swaps",
    "swaps_refused",
    "rejected_quotes",
    "rejected_jump_quotes",
    "recorder_dropped_ticks",
)


@dataclass
class Vitals:
    """What the running daemon knows of itself beyond its parts (daemon.app keeps them)."""

    last_tick_monotonic: float = field(default_factory=time.monotonic)  # when the feed last gave a quote
    db_error: str = ""  # the database write that failed, if one did
    stopped: bool = False  # shutdown has finished


class StatusView:
    """The daemon as /status, /metrics, /health, status.json and the alert conditions see it:
    read from its parts, its lifecycle and its vitals; nothing here changes them."""

    def __init__(
        self,
        cfg: DaemonConfig,
        parts: Parts,
        lifecycle: Lifecycle,
        lag: LoopLag,
        vitals: Vitals,
        stop: asyncio.Event,
        clock: Callable[[], int],
    ) -> None:
        self.cfg, self.parts, self.lifecycle, self.lag = cfg, parts, lifecycle, lag
        self.vitals, self.stop, self.clock = vitals, stop, clock

    def instrument(self, inst: str) -> dict:
        """One instrument's figures."""
        d = self.parts
        s = d.slots[inst]
        b, w = s.builder, s.watch
        rec = d.recorders.get(inst)
        c = slot_counters(s)
        return {
            **{k: c[k] for k in COUNTED},
            "swaps_refused": d.watchers[inst].stats.refused,
            "rejected_quotes": b.rejected,
            "rejected_jump_quotes": b.rejected_jump,
            "recorder_dropped_ticks": rec.dropped_ticks if rec else 0,
            "position_units": float(s.position[0]),
            "equity": s.marks.equity,
            "model_sha": s.policy.sha,
            # verified, waiting for the next bar to be swapped in ("" when none)
            "pending_model_sha": s.swap.pending.sha if s.swap.pending is not None else "",
            # the instrument's calendar says its market is open now (the no-quotes alert waits for it)
            "market_open": int(s.calendar.is_open(self.clock())),
            "model_age_seconds": model_age_secs(s.policy) or 0.0,
            "last_bar": fmt_ts(s.counters.last_bar_ts),
            "data_stale": int(s.data_stale),
            "regime": w.regime_value,
            "live_sharpe": w.guard.sharpe if w.guard else 0.0,
            "hold_rate": w.guard.hold_rate if w.guard else 1.0,
            "orders_per_session": w.guard.orders_per_session if w.guard else 0.0,
            "validation_sharpe": float(s.policy.card.validation.get("sharpe", float("nan"))),
            "live_pnl_z": w.guard.pnl_z if w.guard else 0.0,
            "financing": c["financing"],
            **(w.feature_watch.snapshot() if w.feature_watch else {}),
            **latency_histogram(s.latency.snapshot()),
        }

    def snapshot(self) -> dict:
        """/status, /metrics, status.json and `ctl status`."""
        d = self.parts
        per = {inst: self.instrument(inst) for inst in d.slots}
        only = next(iter(per.values())) if len(per) == 1 else None  # one instrument: its figures at the top
        actions: dict[str, int] = {}
        for p in per.values():
            for a, n in p["actions"].items():
                actions[a] = actions.get(a, 0) + n
        return {
            "instrument": next(iter(per)) if only is not None else "ACCOUNT",
            "run_id": d.run_id,
            **{k: sum(p[k] for p in per.values()) for k in SUMMED},
            "actions": actions,
            "reconcile_discrepancies": d.reconciler.discrepancies if d.reconciler else 0,
            "alerts_sent": d.alerter.stats.sent,
            "alerts_failed": d.alerter.stats.failed,
            "alerts_suppressed": d.alerter.stats.deduplicated + d.alerter.stats.rate_limited + d.alerter.stats.dropped,
            # a portfolio's positions are per instrument (instruments.*.position_units): units of
            # different instruments do not add up
            "position_units": only["position_units"] if only is not None else None,
            "equity": d.account.equity,
            "drawdown_pct": d.account.drawdown_pct,
            "margin_pct": d.account.margin_pct,
            "risk_tier": d.risk.state.tier,
            "halted": int(d.risk.state.halted),
            "model_sha": only["model_sha"] if only is not None else None,  # a portfolio's: per instrument
            "pending_swaps": {i: p["pending_model_sha"] for i, p in per.items() if p["pending_model_sha"]},
            "model_age_seconds": max(p["model_age_seconds"] for p in per.values()),
            "rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "event_loop_lag_seconds": self.lag.last,
            "trading_enabled": int(d.risk.permission.control_allows),
            "state": self.lifecycle.state.value,  # daemon.lifecycle
            "state_reason": self.lifecycle.reason,
            "state_since": iso_utc(self.lifecycle.since_ns),
            "last_bar": max(p["last_bar"] for p in per.values()),  # the latest instrument's ("-": none yet)
            "health": self.health(),
            "control_ignored_files": [hint(n, d.control.known) for n in d.supervisor.unknown],
            "pid": os.getpid(),
            "written_at": time.time(),
            "stopped": self.vitals.stopped,
            "instruments": per,
        }

    def health(self) -> list[str]:
        """Why the daemon is not healthy (/health answers 503 when any); [] when it is."""
        d, v, cfg = self.parts, self.vitals, self.cfg
        reasons = []
        svc = cfg.service
        idle = time.monotonic() - v.last_tick_monotonic
        if idle > svc.feed_stale_secs and not self.stop.is_set():
            reasons.append(f"feed stale: no quote for {idle:.0f} s")
        if v.db_error:
            reasons.append(f"database error: {v.db_error}")
        for inst, slot in d.slots.items():
            if slot.policy.kind == "none":  # core.policy.ObserveOnlyPolicy: nothing verified at start-up
                reasons.append(f"{inst}: {slot.policy.note}")
                continue
            age = model_age_secs(slot.policy)
            if age is not None and age / 86400 > svc.max_model_age_days:
                name = f"{inst} model" if len(d.slots) > 1 else "model"
                reasons.append(f"{name} {slot.policy.sha[:12]} is {age / 86400:.1f} days old")
        if d.risk.state.halted:
            reasons.append(f"halted: {d.risk.state.halted_reason}")
        for inst, rec in d.recorders.items():
            if rec.failing:
                reasons.append(
                    f"tick recording failing for {inst}: {rec.failing} ({rec.errors} errors, {rec.dropped_ticks} ticks lost)"
                )
        if d.supervisor.unsafe:
            reasons.append(f"control directory unsafe, no new positions: {d.supervisor.unsafe}")
        if cfg.live:
            status = d.feed.status
            if status is not FeedStatus.CONNECTED:
                reasons.append(f"broker disconnected: {cfg.broker.kind} feed {status.value}")
            for inst, slot in d.slots.items():
                if slot.data_stale:
                    reasons.append(f"{inst} stale: no price while its market is open")
        if d.reconciler is not None:
            if not d.reconciler.ready:
                reasons.append(
                    "not reconciled with the broker yet: orders blocked"
                    + (f" ({d.reconciler.last_error})" if d.reconciler.last_error else "")
                )
            elif d.reconciler.last_error:
                reasons.append(f"reconciliation failing: {d.reconciler.last_error}")
        if d.router is not None and d.router.unresolved:
            reasons.append(f"order outcome unknown: {', '.join(sorted(d.router.unresolved))}")
        return [redact(r) for r in reasons]  # shown on /health, /status and in status.json

    def conditions(self) -> dict[str, tuple[str, str]]:
        """The alert conditions that hold now (daemon.alerts.Conditions): the /health reasons
        but the halt (alerted at once; its clearing is the operator's resume), and the
        account's drawdown tier."""
        active = health_conditions(self.health())
        active.pop("health:halted", None)
        tier = self.parts.risk.state.tier
        if tier:
            name = TIER_NAMES[tier]
            dd = max((s.marks.drawdown_pct for s in self.parts.slots.values()), default=0.0)
            active["drawdown_tier"] = (f"tier_{name}", f"drawdown tier {name}: intraday drawdown {dd:.2f} %")
        return active

    def write(self, snapshot: dict | None = None) -> None:
        write_status(self.cfg.service.status_file, snapshot if snapshot is not None else self.snapshot())


def write_status(path: Path, snap: dict) -> None:
    """status.json, replaced atomically; a write error is not the daemon's concern."""
    try:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(snap, default=str))
        tmp.replace(path)
    except OSError:
        pass


def summed(counters: list[dict]) -> dict:
    """Counters of several instruments added up (numbers, and dicts of numbers by key)."""
    out: dict = {}
    for c in counters:
        for k, v in c.items():
            if isinstance(v, dict):
                d = out.setdefault(k, {})
                for kk, vv in v.items():
                    d[kk] = d.get(kk, 0) + vv
            else:
                out[k] = out.get(k, 0) + v
    return out
