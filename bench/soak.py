"""Soak: >= 10,000,000 reference quotes through the whole daemon (1-minute bars, PPO on
every bar, paper fills, SQLite, tick recorder, HTTP, scheduler). Reports event-loop lag
percentiles during the replay and RSS sampled along the way; growth is measured after a
warm-up of the first 20 % of the quotes (goal: < 5 MB), both end-minus-start and as the
trend of sampled peaks (robust to the allocator's sawtooth).

With --policy muzero every bar runs a 15-simulation search on the event loop: the loop lag
then says whether the search stalls the loop.

    python bench/soak.py [--quick] [--ticks N] [--policy ppo|muzero]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from replay_throughput import config

from common import bench_policy, report, synthetic_quotes
from stairway.core.logs import configure_logging  # noqa: E402
from stairway.daemon.app import Daemon  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * PAGE / 2**20


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--ticks", type=int, default=10_000_000)
    ap.add_argument("--policy", choices=["ppo", "muzero"], default="ppo")
    a = ap.parse_args()
    n = 1_000_000 if a.quick else a.ticks
    configure_logging(level="warning")
    ticks = synthetic_quotes(n)
    samples: list[tuple[int, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        cfg = config(Path(tmp) / "state")
        svc = cfg.service.model_copy(
            update={"require_start_file": False, "http_port": 0, "record_ticks": True, "require_gate_record": False}
        )
        cfg = cfg.model_copy(update={"service": svc, "replay": cfg.replay.model_copy(update={"batch_ticks": 8192})})

        async def scenario():
            d = Daemon(cfg, policy=bench_policy(a.policy), ticks=ticks, latency_capacity=1 << 16)
            task = asyncio.create_task(d.run())
            while not task.done():
                if hasattr(d, "slot"):
                    samples.append((d.slot.counters.ticks, rss_mb()))
                await asyncio.sleep(0.25)
            return d, await task

        t0 = time.perf_counter()
        d, res = asyncio.run(scenario())
        wall = time.perf_counter() - t0
    lag = np.asarray(res.loop_lag_s) * 1000
    warm = [r for t, r in samples if t >= 0.2 * n]
    q2 = [r for t, r in samples if 0.2 * n <= t < 0.4 * n]
    q5 = [r for t, r in samples if t >= 0.8 * n]
    report(
        "soak" + ("_muzero" if a.policy == "muzero" else ""),
        {
            "ticks": res.counters["ticks"],
            "bars": res.counters["bars"],
            "decisions": res.counters["decisions"],
            "wall_s": round(wall, 1),
            "ticks_per_s": round(res.counters["ticks"] / wall),
            "loop_lag_ms_p50": round(float(np.percentile(lag, 50)), 2),
            "loop_lag_ms_p99": round(float(np.percentile(lag, 99)), 2),
            "loop_lag_ms_max": round(float(lag.max()), 2),
            "batch_ticks": 8192,
            "rss_mb_after_warmup": round(warm[0], 1) if warm else None,
            "rss_mb_end": round(warm[-1], 1) if warm else None,
            "rss_growth_mb_after_warmup": round(warm[-1] - warm[0], 2) if warm else None,
            # allocator sawtooth makes end-minus-start noisy (+-9 MB seen); the trend compares peaks
            "rss_trend_mb_peak_last_fifth_vs_second_fifth": round(max(q5) - max(q2), 2) if q2 and q5 else None,
            "malloc_arena_max": os.environ.get("MALLOC_ARENA_MAX", "default"),
            "rss_mb_max_sampled": round(max(r for _, r in samples), 1),
            "recorder_dropped_ticks": res.counters["recorder_dropped_ticks"],
            "goal_growth_mb": 5.0,
        },
    )


if __name__ == "__main__":
    main()
