"""Issue 20 §3: what do the added feature families buy? The same walk-forward as
`stairway validate --folds 4` (rolling, retrained per fold, costs on), with and without
``features.extra``, next to SMA 20/50 and buy-and-hold, on

- the planted time-of-day market (trainer.planted, medium) with and without tod_harmonics,
- the planted trend market (medium) with and without mtf (4-hour and daily candles),
- the planted lead-lag pair (medium: the follower's next return expects 0.2 x the leader's
  last) with and without the leader's returns (features.cross_instruments),
- the bundled EUR/USD year 2017 (config/trainer.toml) with and without mtf + tod_harmonics,
- GOOGL daily 2010-2018 (config/trainer-googl.toml) with and without mtf on 5- and 20-day
  candles (a day's bars have no time of day to encode).

    python bench/feature_value.py [--only NAME ...] [--folds 4]

Printed as a table, saved to bench/results/feature_value.json. One seed each: read the
intervals before the point estimates.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import tempfile
from pathlib import Path

from common import ROOT, report
from stairway.core.config import DateRange, load_config  # noqa: E402
from stairway.core.logs import configure_logging  # noqa: E402
from stairway.trainer.config import TrainerConfig  # noqa: E402
from stairway.trainer.planted import generate, generate_pair, overrides, write_csv  # noqa: E402
from stairway.trainer.walk_forward import run_walk_forward  # noqa: E402

P = "STAIRWAY_FEATURES__"
CASES = {
    "planted_time_of_day": ("time_of_day", {P + "EXTRA": '["tod_harmonics"]'}),
    "planted_trend": ("trend", {P + "EXTRA": '["mtf"]'}),
    "planted_lead_lag": ("lead_lag", {P + "CROSS_INSTRUMENTS": '["GBP_USD"]'}),
    "eurusd_2017": ("config/trainer.toml", {P + "EXTRA": '["mtf", "tod_harmonics"]'}),
    "googl_2010_2018": (
        "config/trainer-googl.toml",
        {P + "EXTRA": '["mtf"]', P + "PARAMS": json.dumps({"mtf": {"horizons_minutes": [7200, 28800]}})},
    ),
}
REAL_RANGES = {
    "config/trainer.toml": DateRange(start=dt.date(2017, 1, 1), end=dt.date(2017, 12, 30)),
    "config/trainer-googl.toml": DateRange(start=dt.date(2010, 1, 1), end=dt.date(2018, 8, 30)),
}


def setup(name: str, tmp: Path) -> tuple[Path, dict[str, str], DateRange]:
    source, _ = CASES[name]
    if source.startswith("config/"):
        return ROOT / source, {}, REAL_RANGES[source]
    env = {"STAIRWAY_RISK__DRAWDOWN_TIERS_PCT": "[20, 25, 30, 40]"}
    if source == "lead_lag":  # the leader's file is there for both runs; only "with" lists it
        bars, leader, _ = generate_pair("medium", n=6000, seed=0)
        write_csv(tmp / "GBPUSD_leader.csv", leader)
        env["STAIRWAY_DATA__CROSS_BARS_CSV"] = json.dumps({"GBP_USD": str(tmp / "GBPUSD_leader.csv")})
    else:
        bars, _ = generate(source, "medium", n=6000, seed=0)
    csv = tmp / f"EURUSD_{source}.csv"
    write_csv(csv, bars)
    env |= overrides(csv)
    start = dt.datetime.fromtimestamp(bars["ts_ns"][0] / 1e9, dt.UTC).date()
    end = dt.datetime.fromtimestamp(bars["ts_ns"][-1] / 1e9, dt.UTC).date()
    return ROOT / "config/trainer.toml", env, DateRange(start=start, end=end)


def added(extra: dict[str, str]) -> str:
    if P + "EXTRA" in extra:
        return ", ".join(json.loads(extra[P + "EXTRA"]))
    return "cross " + ", ".join(json.loads(extra[P + "CROSS_INSTRUMENTS"]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", nargs="*", default=list(CASES))
    ap.add_argument("--folds", type=int, default=4)
    a = ap.parse_args()
    configure_logging(level="warning")
    rows = []
    for name in a.only:
        with tempfile.TemporaryDirectory() as d:
            path, env, rng = setup(name, Path(d))
            for label, extra in (("base", {}), ("with", CASES[name][1])):
                cfg = load_config(TrainerConfig, path, environ=env | extra)
                wf = run_walk_forward(cfg, rng, a.folds)
                st = wf.stitched
                row = {
                    "case": name,
                    "features": label if label == "base" else added(extra),
                    "policy_sharpe": round(st["policy"]["sharpe"], 2),
                    "policy_sharpe_90": [round(x, 2) for x in st["policy"]["intervals"]["sharpe"]],
                    "policy_return_pct": round(st["policy"]["total_return_pct"], 2),
                    "trades": st["policy"]["trades"],
                    "sma_cross_sharpe": round(st["sma_cross"]["sharpe"], 2),
                    "buy_and_hold_sharpe": round(st["buy_and_hold"]["sharpe"], 2),
                    "wall_s": round(wf.wall_s, 1),
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
    print("\ncase                 features                 policy [90 %]           trades    SMA    B&H")
    for r in rows:
        lo, hi = r["policy_sharpe_90"]
        print(
            f"{r['case']:<20} {r['features']:<24} {r['policy_sharpe']:6.2f} [{lo:+.2f}, {hi:+.2f}] "
            f"{r['trades']:6d} {r['sma_cross_sharpe']:6.2f} {r['buy_and_hold_sharpe']:6.2f}"
        )
    report("feature_value", {"rows": rows, "folds": a.folds})


if __name__ == "__main__":
    main()
