"""The nightly training run's figures as a Prometheus text file (the node_exporter textfile
collector's format), written atomically at the end of every run, passed or not: a batch job
has no /metrics of its own. ``train.metrics_file`` names it (off by default)."""

from __future__ import annotations

import os
import time
from pathlib import Path


def _line(name: str, value: float, labels: dict[str, str] | None = None) -> str:
    lab = ",".join(f'{k}="{v}"' for k, v in (labels or {}).items())
    return f"{name}{{{lab}}} {value!r}" if lab else f"{name} {value!r}"


def training_metrics(run, instrument: str) -> str:
    """``run``: trainer.cycles.CycleRun."""
    best = max(run.cycles, key=lambda r: (r.metrics["sharpe"], -r.cycle)) if run.cycles else None
    last = run.cycles[-1] if run.cycles else None
    inst = {"instrument": instrument}
    gauges = [
        ("stairway_trainer_last_run_timestamp_seconds", "When the last training run ended", time.time()),
        ("stairway_trainer_last_run_seconds", "How long it took", float(run.seconds)),
        ("stairway_trainer_published", "1 when the last run's candidate passed its gates and was published", float(run.published)),
        ("stairway_trainer_cycles", "Training cycles run", float(len(run.cycles))),
        ("stairway_trainer_validation_sharpe", "The candidate's validation Sharpe", float(run.validation.get("sharpe", 0.0))),
        ("stairway_trainer_validation_pnl_pct", "The candidate's validation return, %", float(run.validation.get("pnl_pct", 0.0))),
        ("stairway_trainer_validation_hold_rate", "The candidate's validation hold rate", float(run.validation.get("hold_rate", 0.0))),
        ("stairway_trainer_controller_bonus", "The hold-bonus controller's bonus after the last cycle", float(last.controller_bonus) if last else 0.0),
        ("stairway_trainer_train_hold_rate", "The training envs' hold rate after the last cycle", float(last.train_hold_rate) if last else 0.0),
        ("stairway_trainer_best_cycle", "The candidate's cycle", float(best.cycle) if best else -1.0),
    ]  # fmt: skip
    out = []
    for name, doc, value in gauges:
        out += [f"# HELP {name} {doc}", f"# TYPE {name} gauge", _line(name, value, inst)]
    return "\n".join(out) + "\n"


def write_metrics_file(path: Path, text: str) -> None:
    """Atomically (the collector never reads half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
