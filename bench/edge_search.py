"""Issue 10 §7: the learner's configurations tried, each judged by a 6-fold rolling
walk-forward with retraining (costs on, every baseline beside it), on the bundled EUR/USD
year (config/trainer.toml) or on GOOGL daily 2010-2018 (--config config/trainer-googl.toml).

Every configuration is a set of overrides of config/trainer.toml; all of them are printed
and saved (bench/results/edge_search.json), not only the best. The "best" one is picked on
the same out-of-sample folds, so its figures are optimistic by selection: it is then rerun
with other seeds, and those runs are what to believe.

    python bench/edge_search.py [--quick] [--config FILE] [--only NAME ...] [--seeds 2,3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time

from common import ROOT
from stairway.core.config import DateRange, load_config  # noqa: E402
from stairway.core.logs import configure_logging  # noqa: E402
from stairway.trainer.config import TrainerConfig  # noqa: E402
from stairway.trainer.walk_forward import run_walk_forward  # noqa: E402

P = "STAIRWAY_"


def trend(lags: tuple[int, ...]) -> dict[str, str]:
    """The two longest return lags and the trend/mean-reversion features, nothing intraday."""
    return {
        P + "FEATURES__INCLUDE": json.dumps(
            [f"ret_{lags[-2]}", f"ret_{lags[-1]}", "z_short", "z_long", "sma_cross", "vol_ratio", "rsi"]
        )
    }


def returns_only(lags: tuple[int, ...]) -> dict[str, str]:
    return {P + "FEATURES__INCLUDE": json.dumps([f"ret_{k}" for k in lags])}


# name -> overrides, or a function of the config's return lags (in bars) giving them
CONFIGS: dict = {
    "shipped": {},
    "no_hold_bonus": {P + "SHAPING__HOLD_BONUS": "false"},
    "amddp": {P + "SHAPING__AMDDP_WEIGHT": "1.0"},
    "risk_terms": {P + "SHAPING__SORTINO_WEIGHT": "0.5", P + "SHAPING__DRAWDOWN_WEIGHT": "0.5"},
    "entropy_0.05": {P + "PPO__ENT_COEF": "0.05"},
    "trend_features": trend,
    "short_sessions": {P + "TRAIN__SESSION_MINUTES": "7200"},
    "small_net_low_lr": {P + "PPO__HIDDEN": "32", P + "PPO__LEARNING_RATE": "0.0001"},
    # round 2: combinations of round 1's better ingredients
    "trend_no_bonus": lambda lags: trend(lags) | {P + "SHAPING__HOLD_BONUS": "false"},
    "trend_short_sessions": lambda lags: trend(lags) | {P + "TRAIN__SESSION_MINUTES": "7200"},
    "returns_only": returns_only,
}
RANGES = {
    "config/trainer.toml": DateRange(start=dt.date(2017, 1, 1), end=dt.date(2017, 12, 30)),
    "config/trainer-googl.toml": DateRange(start=dt.date(2010, 1, 1), end=dt.date(2018, 8, 30)),
}


def row(name: str, seed: int, wf) -> dict:
    s = wf.stitched
    p = s["policy"]
    return {
        "config": name,
        "seed": seed,
        "wall_s": round(wf.wall_s, 1),
        "policy_return_pct": p["total_return_pct"],
        "policy_return_90": p["intervals"]["total_return_pct"],
        "policy_sharpe": p["sharpe"],
        "policy_sharpe_90": p["intervals"]["sharpe"],
        "policy_max_dd_pct": p["max_drawdown_pct"],
        "trades": p["trades"],
        "hold_rate_mean": sum(f["summaries"]["policy"]["hold_rate"] for f in wf.folds) / len(wf.folds),
        "long_pct": p.get("long_pct", float("nan")),
        "short_pct": p.get("short_pct", float("nan")),
        "buy_and_hold_pct": s["buy_and_hold"]["total_return_pct"],
        "sell_and_hold_pct": s["sell_and_hold"]["total_return_pct"],
        "sma_cross_pct": s["sma_cross"]["total_return_pct"],
        "sma_long_flat_pct": s["sma_long_flat"]["total_return_pct"],
        "beat_bh_folds": wf.beat_buy_and_hold,
        "beat_sma_folds": wf.beat_sma,
        "beat_random": wf.beat_random_share,
        "wfe": wf.efficiency,
        "car25_pct": wf.car25_pct,
        "dd95_pct": wf.dd95_pct,
        "fold_returns": [f["summaries"]["policy"]["pnl_pct"] for f in wf.folds],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="2 cycles x 20,000 steps per fold")
    ap.add_argument("--only", nargs="*", help="configuration names")
    ap.add_argument("--seeds", default="", help="extra seeds for the best configuration, e.g. 2,3")
    ap.add_argument("--config", default="config/trainer.toml", choices=sorted(RANGES))
    ap.add_argument("--out", help="JSON (default bench/results/edge_search[-googl].json)")
    a = ap.parse_args()
    a.out = a.out or str(
        ROOT
        / "bench"
        / "results"
        / ("edge_search.json" if a.config == "config/trainer.toml" else "edge_search-googl.json")
    )
    configure_logging(level="warning")
    from stairway.core.features import FeatureSpec

    lags = FeatureSpec.from_config(load_config(TrainerConfig, ROOT / a.config)).return_lags
    quick = {P + "CYCLES__COUNT": "2", P + "CYCLES__STEPS": "20000"} if a.quick else {}
    rows: list[dict] = []

    def run(name: str, seed: int) -> None:
        over = CONFIGS[name](lags) if callable(CONFIGS[name]) else CONFIGS[name]
        env = quick | over | {P + "TRAIN__SEED": str(seed)}
        cfg = load_config(TrainerConfig, ROOT / a.config, environ=env)
        t0 = time.perf_counter()
        wf = run_walk_forward(cfg, RANGES[a.config], 6, "rolling", 3.0, draws=100, ray_address="local", workers=2)
        rows.append(row(name, seed, wf))
        r = rows[-1]
        print(
            f"{name:18} seed {seed}: OOS {r['policy_return_pct']:+6.2f} % [{r['policy_return_90'][0]:+.2f}, "
            f"{r['policy_return_90'][1]:+.2f}]  Sharpe {r['policy_sharpe']:+.2f}  trades {r['trades']:4}  hold "
            f"{r['hold_rate_mean']:.2f}  long/short {r['long_pct']:.0f}/{r['short_pct']:.0f} %  B&H {r['buy_and_hold_pct']:+.2f}  SMA {r['sma_cross_pct']:+.2f}  "
            f"beat random {r['beat_random']:.0%}  ({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
        with open(a.out, "w") as fh:
            json.dump(
                {
                    "config": a.config,
                    "rows": rows,
                    "quick": a.quick,
                    "overrides": {k: (v(lags) if callable(v) else v) for k, v in CONFIGS.items()},
                },
                fh,
                indent=1,
                default=float,
            )

    for name in a.only or CONFIGS:
        run(name, 1)
    if a.seeds:
        best = max((r for r in rows if r["seed"] == 1), key=lambda r: r["policy_sharpe"])["config"]
        print(f"best by stitched OOS Sharpe (selection-biased): {best}; rerun with seeds {a.seeds}")
        for s in a.seeds.split(","):
            run(best, int(s))


if __name__ == "__main__":
    main()
