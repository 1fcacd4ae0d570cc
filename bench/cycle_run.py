"""Wall time of a full gated cycle run (config/trainer.toml: 8 cycles, early stop, gates,
report) on the bundled EUR/USD data, in a scratch models/state folder.

    python bench/cycle_run.py [--quick]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import ROOT, report
from stairway.core.config import load_config  # noqa: E402
from stairway.core.logs import configure_logging  # noqa: E402
from stairway.trainer.config import TrainerConfig  # noqa: E402
from stairway.trainer.cycles import run_cycles  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    configure_logging(level="warning")
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            "STAIRWAY_TRAIN__MODELS_DIR": f"{tmp}/models",
            "STAIRWAY_TRAIN__GATE_DB": f"{tmp}/gate.db",
            "STAIRWAY_TRAIN__REPORTS_DIR": f"{tmp}/runs",
            "STAIRWAY_GATES__TICKS_DIR": f"{tmp}/ticks",
        }
        if a.quick:
            env |= {"STAIRWAY_CYCLES__COUNT": "2", "STAIRWAY_CYCLES__STEPS": "20000"}
        cfg = load_config(TrainerConfig, ROOT / "config/trainer.toml", environ=env)
        t0 = time.perf_counter()
        res = run_cycles(cfg, progress=False)
        wall = time.perf_counter() - t0
        size = sum(p.stat().st_size for p in Path(tmp, "runs").rglob("*"))
    report(
        "cycle_run",
        {
            "cycles_planned": cfg.cycles.count,
            "cycles_run": len(res.cycles),
            "steps_per_cycle": cfg.cycles.steps,
            "total_steps": res.cycles[-1].global_step,
            "wall_s": round(wall, 2),
            "train_steps_per_s_median": round(res.steps_per_s),
            "gates_passed": res.passed,
            "action": res.action,
            "report_bytes": size,
        },
    )


if __name__ == "__main__":
    main()
