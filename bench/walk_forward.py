"""Wall time of a 6-fold rolling walk-forward with retraining on the bundled year
(config/trainer.toml's cycle plan), in process and on a local Ray with 2 workers, side by
side in one run; the ratio is the figure (this machine is shared and noisy).

    python bench/walk_forward.py [--quick]     (--quick: 2 cycles x 20,000 steps per fold)
"""

from __future__ import annotations

import argparse
import datetime as dt
import time

from common import ROOT, report
from stairway.core.config import DateRange, load_config  # noqa: E402
from stairway.core.logs import configure_logging  # noqa: E402
from stairway.trainer.config import TrainerConfig  # noqa: E402
from stairway.trainer.walk_forward import run_walk_forward  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    configure_logging(level="warning")
    env = {"STAIRWAY_CYCLES__COUNT": "2", "STAIRWAY_CYCLES__STEPS": "20000"} if a.quick else {}
    cfg = load_config(TrainerConfig, ROOT / "config/trainer.toml", environ=env)
    year = DateRange(start=dt.date(2017, 1, 1), end=dt.date(2017, 12, 30))
    runs = {}
    for where, addr in (("local", None), ("ray_2_workers", "local")):
        t0 = time.perf_counter()
        wf = run_walk_forward(cfg, year, 6, "rolling", 3.0, draws=100, ray_address=addr, workers=2)
        runs[where] = {
            "wall_s": round(time.perf_counter() - t0, 2),
            "fold_wall_s": [round(f["wall_s"], 2) for f in wf.folds],
            "oos_return_pct": round(wf.stitched["policy"]["total_return_pct"], 3),
        }
    report(
        "walk_forward",
        {
            "folds": 6,
            "cycles": cfg.cycles.count,
            "steps_per_cycle": cfg.cycles.steps,
            **runs,
            "ray_speedup": round(runs["local"]["wall_s"] / runs["ray_2_workers"]["wall_s"], 2),
            "same_result": runs["local"]["oos_return_pct"] == runs["ray_2_workers"]["oos_return_pct"],
        },
    )


if __name__ == "__main__":
    main()
