"""Monte Carlo bootstrap speed: 10,000 resamples of 1,000 trades (goal < 1 s).

python bench/monte_carlo.py [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from common import report
from stairway.core.robustness import monte_carlo  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    resamples, trades, runs = (2_000, 1_000, 2) if a.quick else (10_000, 1_000, 5)
    r = np.random.default_rng(0).normal(0.0005, 0.005, trades)
    monte_carlo(r, 1.0, 100)
    times = []
    for k in range(runs):
        t0 = time.perf_counter()
        mc = monte_carlo(r, 1.0, resamples, seed=k)
        times.append(time.perf_counter() - t0)
    report(
        "monte_carlo",
        {
            "resamples": resamples,
            "trades": trades,
            "runs": runs,
            "seconds_median": round(statistics.median(times), 3),
            "seconds_max": round(max(times), 3),
            "car25_pct": round(mc.car25_pct, 2),
            "dd95_pct": round(mc.dd95_pct, 2),
            "goal_seconds": 1.0,
        },
    )


if __name__ == "__main__":
    main()
