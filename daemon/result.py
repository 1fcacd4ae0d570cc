"""What a daemon run returns when it ends (``Daemon.run``): the run's figures, each
instrument's, and the one way a run names its models."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from stairway.daemon import status

if TYPE_CHECKING:
    from stairway.daemon.app import Daemon


@dataclass
class DaemonResult:
    run_id: str
    summary: dict[str, float]
    counters: dict
    db_path: Path
    model_sha: str  # models_line: the model's, or a portfolio's by instrument unless all share one
    interrupted: bool
    seconds: float
    first_decision: str  # the earliest instrument's
    last_bar: str  # the latest instrument's
    decision_latency_ns: object = None  # every instrument's
    loop_lag_s: object = None
    http_port: int | None = None
    tracker: object = None  # core.metrics.PerformanceTracker of a one-instrument run (a portfolio's: per instrument)
    instruments: dict | None = None  # per instrument: counters, summary, model sha, decisions, tracker


def models_line(shas: dict[str, str]) -> str:
    """The run's model: its sha when every instrument runs the same one, else each
    instrument's ("EUR_USD 1a2b3c4d5e6f, GBP_USD ..."), as the runs row and the result say."""
    if len(set(shas.values())) == 1:
        return next(iter(shas.values()))
    return ", ".join(f"{inst} {sha[:12]}" for inst, sha in shas.items())


def run_result(d: Daemon, t0: float) -> DaemonResult:
    """The ended run's result from the daemon's parts (after shutdown: summaries are set)."""
    p = d.parts
    per = {inst: status.slot_counters(slot) for inst, slot in p.slots.items()}
    counters = dict(*per.values()) if len(per) == 1 else status.summed(list(per.values()))
    counters["halted"] = p.risk.state.halted_reason or ""
    counters["recorder_dropped_ticks"] = sum(r.dropped_ticks for r in p.recorders.values())
    instruments = {
        inst: {
            "counters": per[inst],
            "summary": d.summaries[inst],
            "model_sha": slot.policy.sha,
            "first_decision": status.fmt_ts(slot.counters.first_decision_bar_ts),
            "last_bar": status.fmt_ts(slot.counters.last_bar_ts),
            "tracker": slot.tracker,
        }
        for inst, slot in p.slots.items()
    }
    slots = list(p.slots.values())
    firsts = [s.counters.first_decision_bar_ts for s in slots if s.counters.first_decision_bar_ts is not None]
    lasts = [s.counters.last_bar_ts for s in slots if s.counters.last_bar_ts is not None]
    return DaemonResult(
        p.run_id,
        d.summary,
        counters,
        d.cfg.service.db_path,
        models_line({inst: slot.policy.sha for inst, slot in p.slots.items()}),
        d.interrupted,
        time.perf_counter() - t0,
        status.fmt_ts(min(firsts, default=None)),
        status.fmt_ts(max(lasts, default=None)),
        np.concatenate([s.latency.snapshot() for s in slots]),
        np.array(d.lag.all),
        d.http_port,
        slots[0].tracker if len(slots) == 1 else None,
        instruments,
    )
