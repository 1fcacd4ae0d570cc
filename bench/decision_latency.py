"""Bar close -> order intent, measured inside the daemon's slot on every decision: bar row,
feature update, position marking, observation, inference (PPO, or with --policy muzero a
15-simulation search on an untrained MuZero network of the shipped sizes), risk check, intent
handed to the broker. Percentiles over >= 10,000 decisions of the reference workload.

    python bench/decision_latency.py [--quick] [--policy ppo|muzero]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

import numpy as np
from replay_throughput import config

from common import bench_policy, report, synthetic_quotes
from stairway.core.logs import configure_logging  # noqa: E402
from stairway.daemon.app import run_daemon  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--policy", choices=["ppo", "muzero"], default="ppo")
    a = ap.parse_args()
    n = 300_000 if a.quick else 2_600_000  # ~240 quotes per 1-minute bar
    configure_logging(level="warning")

    def make():
        return bench_policy(a.policy)

    ticks = synthetic_quotes(n)
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(run_daemon(config(Path(tmp) / "warm"), policy=make(), ticks=ticks[:20_000]))
        res = asyncio.run(run_daemon(config(Path(tmp) / "run"), policy=make(), ticks=ticks, latency_capacity=1_000_000))
    lat = res.decision_latency_ns / 1000.0  # µs, one per closed bar after warm-up
    dec = res.counters["decisions"]
    report(
        "decision_latency" + ("_muzero" if a.policy == "muzero" else ""),
        {
            "decisions": int(dec),
            "samples": int(len(lat)),
            "orders": res.counters["orders"],
            "p50_us": round(float(np.percentile(lat, 50)), 1),
            "p90_us": round(float(np.percentile(lat, 90)), 1),
            "p99_us": round(float(np.percentile(lat, 99)), 1),
            "max_us": round(float(lat.max()), 1),
            "goal_p99_us": 150,
            "sb3_predict_p99_us_ref": 304,
        },
    )


if __name__ == "__main__":
    main()
