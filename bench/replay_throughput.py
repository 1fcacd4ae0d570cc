"""Whole daemon pipeline on the reference workload: quotes -> 1-minute bars -> PPO decision on
every bar -> paper fills -> SQLite (WAL, synchronous=FULL). Reports the median of the runs,
in bulk (batch_ticks 65,536) and handed over one quote at a time (batch_ticks 1, as a live
feed does: the slot's scalar path), side by side in one run on the same quotes; both must
make the same decisions, orders and fills.

With ``--nautilus-python PY`` (a Python with nautilus_trader 1.221.0: bench/nautilus_side.py)
NautilusTrader's per-event engine runs the same one-quote quotes in each run, interleaved
with ours, and the ratios are of figures measured side by side; without it the ratio is to
issue 2's reference figure (143k quotes/s, measured on another machine) and says so.

    python bench/replay_throughput.py [--quick] [--ticks N] [--runs R] [--nautilus-python PY]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

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
    ap.add_argument("--nautilus-python", help="a Python with nautilus_trader 1.221.0 (bench/nautilus_side.py)")
    a = ap.parse_args()
    n, runs = (100_000, 1) if a.quick else (a.ticks, a.runs)
    configure_logging(level="warning")
    ticks = synthetic_quotes(n)
    rates, results = [], []
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(run_daemon(config(Path(tmp) / "warm"), policy=bench_policy("ppo"), ticks=ticks[:20_000]))
        one_rates, one_results, nautilus = [], [], []
        m = min(n, 200_000)  # one at a time: the first 200k quotes
        if a.nautilus_python:
            np.save(Path(tmp) / "quotes.npy", ticks[:m])
        for r in range(runs):
            t0 = time.perf_counter()
            res = asyncio.run(run_daemon(config(Path(tmp) / f"run{r}"), policy=bench_policy("ppo"), ticks=ticks))
            rates.append(n / (time.perf_counter() - t0))
            results.append(res)
            t0 = time.perf_counter()
            res = asyncio.run(run_daemon(config(Path(tmp) / f"one{r}", 1), policy=bench_policy("ppo"), ticks=ticks[:m]))
            one_rates.append(m / (time.perf_counter() - t0))
            one_results.append(res)
            if a.nautilus_python:  # the same quotes through Nautilus's engine, between ours
                side = Path(__file__).with_name("nautilus_side.py")
                cmd = [a.nautilus_python, str(side), str(Path(tmp) / "quotes.npy"), "--runs", "1"]
                try:
                    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
                except (OSError, subprocess.CalledProcessError) as e:
                    detail = getattr(e, "stderr", "") or str(e)
                    raise SystemExit(
                        f"--nautilus-python {a.nautilus_python}: {detail.strip().splitlines()[-1]}"
                    ) from None
                nautilus.append(json.loads(out))
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
            **nautilus_figures(nautilus, statistics.median(rates), statistics.median(one_rates)),
            "one_quote_ticks": min(n, 200_000),
            "one_quote_ticks_per_s": round(one),
            "one_quote_decisions": one_results[-1].counters["decisions"],
            "one_quote_orders": one_results[-1].counters["orders"],
            "bulk_over_one_quote": round(statistics.median(rates) / one, 2),
        },
    )


def nautilus_figures(runs: list[dict], bulk: float, one: float) -> dict:
    """Our rates over Nautilus's: measured here, side by side, or issue 2's reference."""
    if not runs:
        ref = 143_000
        return {
            "nautilus": "issue 2's reference figure, not measured in this run (--nautilus-python)",
            "nautilus_ticks_per_s": ref,
            "ratio_vs_nautilus": round(bulk / ref, 2),
            "one_quote_ratio_vs_nautilus": round(one / ref, 2),
        }
    rate = statistics.median(r["quotes_per_s"] for r in runs)
    return {
        "nautilus": f"NautilusTrader {runs[0]['nautilus_version']} measured side by side in this run",
        "nautilus_ticks_per_s": round(rate),
        "nautilus_ticks_per_s_runs": [round(r["quotes_per_s"]) for r in runs],
        "nautilus_orders": runs[-1]["runs"][0]["orders"],
        "ratio_vs_nautilus": round(bulk / rate, 2),
        "one_quote_ratio_vs_nautilus": round(one / rate, 2),
    }


if __name__ == "__main__":
    main()
