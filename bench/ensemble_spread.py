"""Issue 20 §4: how much of an out-of-sample result is the seed? `train run` with
train.ensemble_seeds = 3 for several base seeds on the bundled EUR/USD 2017 range
(config/trainer.toml): each member alone and the ensemble, on the gate window (never trained
on, never used to pick). The spread of the single seeds' results against the spread of the
ensembles' is the figure.

    python bench/ensemble_spread.py [--base-seeds 1,11,21] [--members 3]

Saved to bench/results/ensemble_spread.json.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from common import ROOT, report
from stairway.core.config import load_config  # noqa: E402
from stairway.core.logs import configure_logging  # noqa: E402
from stairway.trainer.config import TrainerConfig  # noqa: E402
from stairway.trainer.cycles import run_cycles  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-seeds", default="1,11,21")
    ap.add_argument("--members", type=int, default=3)
    a = ap.parse_args()
    configure_logging(level="warning")
    singles, ensembles = [], []
    for seed in (int(s) for s in a.base_seeds.split(",")):
        with tempfile.TemporaryDirectory() as d:
            tmp = Path(d)
            env = {
                "STAIRWAY_TRAIN__SEED": str(seed),
                "STAIRWAY_TRAIN__ENSEMBLE_SEEDS": str(a.members),
                "STAIRWAY_TRAIN__MODELS_DIR": str(tmp / "models"),
                "STAIRWAY_TRAIN__GATE_DB": str(tmp / "gate.db"),
                "STAIRWAY_TRAIN__REPORTS_DIR": str(tmp / "runs"),
                "STAIRWAY_GATES__TICKS_DIR": str(tmp / "ticks"),
            }
            res = run_cycles(load_config(TrainerConfig, ROOT / "config/trainer.toml", environ=env), progress=False)
            singles += [{"seed": m["seed"], "pnl_pct": m["pnl_pct"], "sharpe": m["sharpe"]} for m in res.members]
            v = res.validation
            ensembles.append({"base_seed": seed, "pnl_pct": v["pnl_pct"], "sharpe": v["sharpe"], "trades": v["trades"]})
            print(
                f"base seed {seed}: members {[round(m['sharpe'], 2) for m in res.members]}, ensemble {v['sharpe']:.2f}"
            )

    def spread(rows: list[dict]) -> dict:
        s = np.array([r["sharpe"] for r in rows])
        p = np.array([r["pnl_pct"] for r in rows])
        return {
            "n": len(rows),
            "sharpe_mean": round(float(s.mean()), 2),
            "sharpe_sd": round(float(s.std(ddof=1)), 2) if len(s) > 1 else None,
            "sharpe_range": [round(float(s.min()), 2), round(float(s.max()), 2)],
            "return_pct_sd": round(float(p.std(ddof=1)), 3) if len(p) > 1 else None,
        }

    out = {
        "single_seeds": spread(singles),
        "ensembles": spread(ensembles),
        "singles": singles,
        "ensemble_rows": ensembles,
    }
    print(f"single seeds: {out['single_seeds']}\nensembles of {a.members}: {out['ensembles']}")
    report("ensemble_spread", out)


if __name__ == "__main__":
    main()
