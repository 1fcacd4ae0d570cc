"""Issue 20 §2: does the learner find a planted edge, and only a planted edge?

For each synthetic market (trainer.planted: trend, mean reversion, time of day, a lead-lag
pair at three strengths; random walks with and without drift) and each algorithm (PPO: config/trainer.toml;
MuZero: config/trainer-muzero.toml), the same walk-forward as `stairway validate --folds N`
(rolling, each fold retrained on its window only, costs on, drawdown tiers widened to
20/25/30/40 % so a fold is judged on its trading, not stopped), and then one gated
`train run` on the whole range: was a candidate published? Next to it, the oracle (it knows
the planted expected return; long above the one-way cost, short below its negative) over the
same test windows, SMA 20/50 cross and buy-and-hold. The lead-lag follower is traded with
the leader's returns as features (features.cross_instruments = the leader; the daemon config
of the gates is then a two-instrument portfolio), every other market with the shipped features.

    python bench/learner_power.py [--quick] [--markets trend,random_walk] [--strengths strong]
        [--algos ppo,muzero] [--seeds 0] [--folds 4] [--no-publish] [--set ALGO:SECTION__KEY=VALUE ...]

--quick trains less (cycles 3 x 30,000 steps for PPO, 3 x 8,000 for MuZero) and uses
5,000 bars. Each row's walk_forward_s is its wall time. Printed as a table and saved to
bench/results/learner_power.json, with each algorithm's Sharpe sum and wall over the planted
cells both ran, and MuZero's share of PPO's (issue 20 §1's goal: >= 80 % at equal wall time).
PPO's quick plan takes about a seventh of MuZero's time; to compare at equal time give PPO
more steps until the two walls printed match, e.g.

    python bench/learner_power.py --quick --markets trend,mean_reversion --strengths strong \
        --seeds 0,1 --no-publish --set ppo:CYCLES__STEPS=340000
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from common import ROOT, report
from stairway.core.config import DateRange, load_config  # noqa: E402
from stairway.core.errors import ConfigError  # noqa: E402
from stairway.core.execution import ExecutionModel  # noqa: E402
from stairway.core.features import FeatureSpec  # noqa: E402
from stairway.core.logs import configure_logging  # noqa: E402
from stairway.trainer.config import TrainerConfig  # noqa: E402
from stairway.trainer.cycles import run_cycles  # noqa: E402
from stairway.trainer.evaluation import run_evaluation  # noqa: E402
from stairway.trainer.history import load_window  # noqa: E402
from stairway.trainer.planted import MARKETS, generate, generate_pair, oracle_actions, overrides, write_csv  # noqa: E402
from stairway.trainer.walk_forward import run_walk_forward  # noqa: E402

P = "STAIRWAY_"
CONFIGS = {"ppo": "config/trainer.toml", "muzero": "config/trainer-muzero.toml"}


def settings(
    tmp: Path, csv: Path, algo: str, quick: bool, start: dt.date, end: dt.date, sets: tuple[str, ...] = ()
) -> dict[str, str]:
    env = overrides(csv) | {
        P + "TRAIN__MODELS_DIR": str(tmp / "models"),
        P + "TRAIN__GATE_DB": str(tmp / "gate.db"),
        P + "TRAIN__REPORTS_DIR": str(tmp / "runs"),
        P + "GATES__TICKS_DIR": str(tmp / "ticks"),
        P + "GATES__DAEMON_CONFIG": str(tmp / "daemon.toml"),
        P + "TRAIN__RANGE": json.dumps({"start": str(start), "end": str(end)}),
        P + "RISK__DRAWDOWN_TIERS_PCT": "[20, 25, 30, 40]",
    }
    if quick:  # MuZero searches every step and learns 32 updates a round: ~20x fewer steps in the same time
        env |= {P + "CYCLES__COUNT": "3", P + "CYCLES__STEPS": "30000" if algo == "ppo" else "8000"}
    # the caller's own STAIRWAY_ overrides (both algorithms), then --set ALGO:SECTION__KEY=VALUE (one)
    env |= {k: v for k, v in os.environ.items() if k.startswith(P) and k != P + "CONFIG"}
    for s in sets:
        who, _, kv = s.partition(":")
        key, eq, value = kv.partition("=")
        if who not in CONFIGS or not eq:
            raise SystemExit(f"--set {s!r}: ALGO:SECTION__KEY=VALUE with ALGO one of {', '.join(CONFIGS)}")
        if who == algo:
            env[P + key.upper()] = value
    return env


def daemon_toml(tmp: Path, csv: Path, leader: Path | None = None) -> None:
    """The gates' daemon config: the shipped paper config on the generated file, mid prices
    (with a lead-lag leader: a portfolio of the follower and the leader)."""
    text = (ROOT / "config/paper.toml").read_text()
    if leader is not None:
        text = text.replace("[features]\n", '[features]\ncross_instruments = ["GBP_USD"]\n', 1)
        text += (
            "\n[portfolio]\ninstruments = [\n"
            f'    {{ symbol = "EUR_USD", pip_size = 0.0001, lot_units = 100000, bars_csv = "{csv}" }},\n'
            f'    {{ symbol = "GBP_USD", pip_size = 0.0001, lot_units = 100000, bars_csv = "{leader}" }},\n]\n'
        )
    text = text.replace('bars_csv = "data/FOREX_EURUSD_1H_ASK.csv"', f'bars_csv = "{csv}"')
    text = text.replace('bars_side = "ask"', 'bars_side = "mid"').replace('price = "ask"', 'price = "mid"')
    text = text.replace("drawdown_tiers_pct = [1.5, 1.8, 2.0, 2.5]", "drawdown_tiers_pct = [20, 25, 30, 40]")
    (tmp / "daemon.toml").write_text(text)


def sharpe(daily: np.ndarray) -> float:
    sd = daily.std()
    return float(daily.mean() / sd * np.sqrt(252)) if sd > 1e-15 else 0.0


def oracle(cfg: TrainerConfig, wf, bars: np.ndarray, expected: np.ndarray) -> dict:
    """The oracle over the walk-forward's test windows, through the same evaluation and costs."""
    spec = FeatureSpec.from_config(cfg)
    ex = ExecutionModel.from_config(cfg.execution, cfg.instrument)
    cost = cfg.data.modelled_spread_pips / 2 + cfg.execution.commission_pips + cfg.execution.slippage_pips
    cost *= cfg.instrument.pip_size / float(np.median(bars["close"]))
    daily, trades = [], 0
    for f in wf.folds:
        b = int(dt.datetime.fromisoformat(f["test_start"]).replace(tzinfo=dt.UTC).timestamp()) * 10**9
        c = int(dt.datetime.fromisoformat(f["test_end"]).replace(tzinfo=dt.UTC).timestamp()) * 10**9
        hist, first = load_window(cfg, spec, b, c)
        last = len(hist) - 2
        idx = np.searchsorted(bars["ts_ns"], hist.bars["ts_ns"])
        acts = oracle_actions(expected[idx], first, last, cost)
        tr, _ = run_evaluation(
            None, hist, spec, ex, cfg.account.initial_equity, first, last, actions=acts, risk=cfg.risk
        )
        daily.append(tr.daily_returns())
        trades += int(tr.summary()["trades"])
    return {"sharpe": sharpe(np.concatenate(daily)), "trades": trades}


def one(market: str, strength: str, algo: str, seed: int, a) -> dict:
    n = 5000 if a.quick else 6000
    leader = None
    if market == "lead_lag":
        bars, leader, expected = generate_pair(strength, n=n, seed=seed)
    else:
        bars, expected = generate(market, strength, n=n, seed=seed)
    start = dt.datetime.fromtimestamp(bars["ts_ns"][0] / 1e9, dt.UTC).date()
    end = dt.datetime.fromtimestamp(bars["ts_ns"][-1] / 1e9, dt.UTC).date()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        csv = tmp / f"EURUSD_{market}_{strength}_{seed}.csv"
        write_csv(csv, bars)
        env = settings(tmp, csv, algo, a.quick, start, end, tuple(a.set))
        lead_csv = None
        if leader is not None:
            lead_csv = tmp / f"GBPUSD_leader_{strength}_{seed}.csv"
            write_csv(lead_csv, leader)
            env |= {
                P + "FEATURES__CROSS_INSTRUMENTS": '["GBP_USD"]',
                P + "DATA__CROSS_BARS_CSV": json.dumps({"GBP_USD": str(lead_csv)}),
            }
        daemon_toml(tmp, csv, lead_csv)
        cfg = load_config(TrainerConfig, ROOT / CONFIGS[algo], environ=env)
        t0 = time.perf_counter()
        wf = run_walk_forward(cfg, DateRange(start=start, end=end), a.folds)
        orc = oracle(cfg, wf, bars, expected)
        st = wf.stitched
        row = {
            "market": market,
            "strength": strength,
            "algo": algo,
            "seed": seed,
            "oracle_sharpe": round(orc["sharpe"], 2),
            "policy_sharpe": round(st["policy"]["sharpe"], 2),
            "policy_sharpe_90": [round(x, 2) for x in st["policy"]["intervals"]["sharpe"]],
            "policy_trades": st["policy"]["trades"],
            "sma_cross_sharpe": round(st["sma_cross"]["sharpe"], 2),
            "buy_and_hold_sharpe": round(st["buy_and_hold"]["sharpe"], 2),
            "share_of_oracle": round(st["policy"]["sharpe"] / orc["sharpe"], 2) if orc["sharpe"] > 0.5 else None,
            "walk_forward_s": round(time.perf_counter() - t0, 1),
        }
        if not a.no_publish:
            res = run_cycles(cfg, progress=False)
            row["published"] = bool(res.published)
            row["gate"] = {k: v for k, v in res.gate.items() if isinstance(v, (bool, str, int, float))}
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--markets", default=",".join((*MARKETS, "lead_lag")))
    ap.add_argument("--strengths", default="weak,medium,strong")
    ap.add_argument("--algos", default="ppo,muzero")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--folds", type=int, default=4)
    ap.add_argument("--no-publish", action="store_true")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        help="ALGO:SECTION__KEY=VALUE, one algorithm's override (e.g. ppo:CYCLES__STEPS=340000 to give PPO "
        "MuZero's wall time); repeatable",
    )
    a = ap.parse_args()
    configure_logging(level="warning")
    try:
        check_settings(a)  # a typo in --set or STAIRWAY_* ends here, not after the first rows' minutes
    except ConfigError as e:
        raise SystemExit(f"learner_power: {e}") from None
    rows = []
    for market in a.markets.split(","):
        graded = ("trend", "mean_reversion", "time_of_day", "lead_lag")
        strengths = a.strengths.split(",") if market in graded else ["-"]
        for strength in strengths:
            for algo in a.algos.split(","):
                for seed in (int(s) for s in a.seeds.split(",")):
                    row = one(market, "strong" if strength == "-" else strength, algo, seed, a)
                    if strength == "-":
                        row["strength"] = "-"
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    print("\nmarket         strength algo    oracle  policy [90 %]          SMA    B&H  share  published")
    for r in rows:
        lo, hi = r["policy_sharpe_90"]
        share = "" if r["share_of_oracle"] is None else f"{r['share_of_oracle']:.2f}"
        print(
            f"{r['market']:<14} {r['strength']:<8} {r['algo']:<7} {r['oracle_sharpe']:6.2f} {r['policy_sharpe']:6.2f} "
            f"[{lo:+.2f}, {hi:+.2f}]  {r['sma_cross_sharpe']:6.2f} {r['buy_and_hold_sharpe']:6.2f} {share:>6} "
            f"{r.get('published', '-')}"
        )
    comparison = compare_algos(rows)
    for line in comparison.pop("lines"):
        print(line)
    report("learner_power", {"rows": rows, "quick": a.quick, "folds": a.folds, "sets": a.set, **comparison})


def check_settings(a) -> None:
    """Each algorithm's config with the run's overrides, on a small generated file: raises
    ConfigError naming the field."""
    bars, _ = generate("random_walk", "strong", n=500)
    start = dt.datetime.fromtimestamp(bars["ts_ns"][0] / 1e9, dt.UTC).date()
    with tempfile.TemporaryDirectory() as d:
        csv = Path(d) / "check.csv"
        write_csv(csv, bars)
        for algo in a.algos.split(","):
            if algo not in CONFIGS:
                raise ConfigError(f"--algos {algo!r}: one of {', '.join(CONFIGS)}")
            env = settings(Path(d), csv, algo, a.quick, start, start + dt.timedelta(days=30), tuple(a.set))
            load_config(TrainerConfig, ROOT / CONFIGS[algo], environ=env)


def compare_algos(rows: list[dict]) -> dict:
    """Issue 20 §1's goal: per algorithm, the sum of OOS Sharpes over the planted cells that
    every algorithm ran (the same market, strength and seed) and the wall time they took, and
    MuZero's sum as a share of PPO's. Equal time is the caller's: give PPO more steps (--set
    ppo:CYCLES__STEPS=...) until the two walls match, and read the walls printed here."""
    planted = [r for r in rows if r["strength"] != "-"]
    algos = sorted({r["algo"] for r in planted})

    def cell(r: dict) -> tuple:
        return r["market"], r["strength"], r["seed"]

    ran = {x: {cell(r) for r in planted if r["algo"] == x} for x in algos}
    cells = set.intersection(*ran.values()) if ran else set()
    out: dict = {"lines": [], "planted_cells": len(cells)}
    for x in algos:
        mine = [r for r in planted if r["algo"] == x and cell(r) in cells]
        out[x] = {
            "sharpe_sum": round(sum(r["policy_sharpe"] for r in mine), 2),
            "wall_s": round(sum(r["walk_forward_s"] for r in mine), 1),
        }
        out["lines"].append(
            f"{x:<7} over {len(cells)} planted cells: OOS Sharpe sum {out[x]['sharpe_sum']:6.2f}, wall {out[x]['wall_s']:7.1f} s"
        )
    if {"ppo", "muzero"} <= set(algos) and out["ppo"]["sharpe_sum"] > 0:
        out["muzero_share_of_ppo"] = round(out["muzero"]["sharpe_sum"] / out["ppo"]["sharpe_sum"], 3)
        out["wall_ratio_muzero_to_ppo"] = round(out["muzero"]["wall_s"] / max(out["ppo"]["wall_s"], 1e-9), 2)
        out["lines"].append(
            f"MuZero / PPO: {out['muzero_share_of_ppo']:.0%} of the Sharpe sum at {out['wall_ratio_muzero_to_ppo']:.2f}x the wall time"
        )
    return out


if __name__ == "__main__":
    main()
