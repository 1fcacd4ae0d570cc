"""The daemon on one instrument and on three, side by side: the reference workload (quotes ->
1-minute bars -> PPO decision on every bar -> paper fills -> SQLite) with N quotes per
instrument. Three instruments' quotes arrive interleaved (independent Poisson streams, as a
live feed delivers them), so the daemon hands them over in time order as runs of one
instrument's quotes. Each configuration runs in its own process (peak RSS is per process).

    python bench/portfolio_replay.py [--quick] [--ticks N] [--runs R]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import bench_policy, bench_service, minute_market, peak_rss_mb, report, rss_anon_mb, synthetic_quotes
from stairway.core.config import DateRange, InstrumentConfig
from stairway.core.logs import configure_logging
from stairway.daemon.app import run_daemon
from stairway.daemon.config import DaemonConfig, LegConfig, PortfolioConfig, ReplayConfig

SYMBOLS = ("EUR_USD", "GBP_USD", "AUD_USD")


def config(state: Path, n_instruments: int) -> DaemonConfig:
    m = minute_market()
    legs = tuple(LegConfig(symbol=s, bars_csv=Path("unused.csv")) for s in SYMBOLS[:n_instruments])
    risk = m.risk.model_copy(update={"max_total_lots": float(n_instruments)})
    return DaemonConfig(
        **{**m.model_dump(), "risk": risk.model_dump(), "instrument": InstrumentConfig().model_dump()},
        service=bench_service(state),
        replay=ReplayConfig(range=DateRange(start=dt.date(2017, 10, 2), end=dt.date(2017, 10, 9))),
        portfolio=PortfolioConfig(instruments=legs) if n_instruments > 1 else None,
    )


def one(n_instruments: int, n: int, runs: int) -> dict:
    configure_logging(level="warning")
    quotes = {s: synthetic_quotes(n, seed=42 + k) for k, s in enumerate(SYMBOLS[:n_instruments])}
    rates, res = [], None
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(runs + 1):  # the first run warms up (JIT, imports) and is not counted
            policies = {s: bench_policy("ppo", seed=k) for k, s in enumerate(quotes)}
            warm = {s: q[:20_000] for s, q in quotes.items()}
            cfg = config(Path(tmp) / f"run{r}", n_instruments)
            t0 = time.perf_counter()
            res = asyncio.run(run_daemon(cfg, policy=policies, ticks=warm if r == 0 else quotes))
            if r:
                rates.append(n * n_instruments / (time.perf_counter() - t0))
    c = res.counters
    return {
        "instruments": n_instruments,
        "ticks": n * n_instruments,
        "ticks_per_s": round(statistics.median(rates)),
        "bars": c["bars"],
        "decisions": c["decisions"],
        "fills": c["fills"],
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "rss_anon_mb_at_end": round(rss_anon_mb(), 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--ticks", type=int, default=1_000_000, help="quotes per instrument")
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    a = ap.parse_args()
    n, runs = (100_000, 1) if a.quick else (a.ticks, a.runs)
    if a.child:
        print(json.dumps(one(a.child, n, runs)))
        return
    out = {}
    for k in (1, 3, 1, 3):  # alternated, so both see the same machine
        r = subprocess.run(
            [sys.executable, __file__, "--child", str(k), "--ticks", str(n), "--runs", str(runs)],
            capture_output=True,
            text=True,
            check=True,
        )
        fig = json.loads(r.stdout.strip().splitlines()[-1])
        best = out.get(k)
        if best is None or fig["ticks_per_s"] > best["ticks_per_s"]:
            out[k] = fig
    report(
        "portfolio_replay",
        {
            "ticks_per_instrument": n,
            "one_instrument": out[1],
            "three_instruments": out[3],
            "ratio_3_vs_1_ticks_per_s": round(out[3]["ticks_per_s"] / out[1]["ticks_per_s"], 2),
        },
    )


if __name__ == "__main__":
    main()
