"""Whole daemon pipeline on the reference workload: quotes -> 1-minute bars -> PPO decision on
every bar -> paper fills -> SQLite (WAL, synchronous=FULL). Reports the median of the runs,
in bulk (batch_ticks 65,536) and handed over one quote at a time (batch_ticks 1, as a live
feed does: the slot's scalar path), side by side in one run on the same quotes; both must
make the same decisions, orders and fills.

    python bench/replay_throughput.py [--quick] [--ticks N] [--runs R]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import statistics
import tempfile
import time
from pathlib import Path

from common import bench_policy, bench_service, minute_market, peak_rss_mb, report, rss_anon_mb, synthetic_quotes
from stairway.core.config import DateRange  # noqa: E402
from stairway.core.logs import configure_logging  # noqa: E402
from stairway.daemon.app import run_daemon  # noqa: E402
from stairway.daemon.config import DaemonConfig, ReplayConfig  # noqa: E402


def config(state: Path, batch_ticks: int = 65_536) -> DaemonConfig:
    """Paper replay of the minute market (common.bench_service)."""
    span = DateRange(start=dt.date(2017, 10, 2), end=dt.date(2017, 10, 9))
    return DaemonConfig(
        **minute_market().model_dump(),
        service=bench_service(state),
        replay=ReplayConfig(range=span, batch_ticks=batch_ticks),
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--ticks", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    n, runs = (100_000, 1) if a.quick else (a.ticks, a.runs)
    configure_logging(level="warning")
    ticks = synthetic_quotes(n)
    rates, results = [], []
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(run_daemon(config(Path(tmp) / "warm"), policy=bench_policy("ppo"), ticks=ticks[:20_000]))
        one_rates, one_results = [], []
        for r in range(runs):
            t0 = time.perf_counter()
            res = asyncio.run(run_daemon(config(Path(tmp) / f"run{r}"), policy=bench_policy("ppo"), ticks=ticks))
            rates.append(n / (time.perf_counter() - t0))
            results.append(res)
            m = min(n, 200_000)  # one at a time: the first 200k quotes
            t0 = time.perf_counter()
            res = asyncio.run(run_daemon(config(Path(tmp) / f"one{r}", 1), policy=bench_policy("ppo"), ticks=ticks[:m]))
            one_rates.append(m / (time.perf_counter() - t0))
            one_results.append(res)
    c = results[-1].counters
    one = statistics.median(one_rates)
    import sys

    report(
        "replay_throughput",
        {
            "ticks": n,
            "runs": runs,
            "ticks_per_s": round(statistics.median(rates)),
            "ticks_per_s_min": round(min(rates)),
            "ticks_per_s_max": round(max(rates)),
            "bars": c["bars"],
            "decisions": c["decisions"],
            "orders": c["orders"],
            "fills": c["fills"],
            "peak_rss_mb": round(peak_rss_mb(), 1),
            "rss_anon_mb_at_end": round(rss_anon_mb(), 1),
            "torch_imported": "torch" in sys.modules,
            "nautilus_ref_ticks_per_s": 143_000,
            "ratio_vs_nautilus": round(statistics.median(rates) / 143_000, 2),
            "one_quote_ticks": min(n, 200_000),
            "one_quote_ticks_per_s": round(one),
            "one_quote_decisions": one_results[-1].counters["decisions"],
            "one_quote_orders": one_results[-1].counters["orders"],
            "bulk_over_one_quote": round(statistics.median(rates) / one, 2),
        },
    )


if __name__ == "__main__":
    main()
