"""Walk-forward with retraining (`stairway validate --folds N`).

The date range is cut into ``folds`` consecutive test windows preceded by a training span of
``train_windows`` test windows' length:

    rolling:  |== train 0 ==|-test 0-|
                      |== train 1 ==|-test 1-|          (the training window slides)
    anchored: |== train 0 ==|-test 0-|
              |====== train 1 ======|-test 1-|          (it always starts at the range start)

Each fold trains a fresh policy with the normal cycle plan (trainer.cycles.train_cycles: the
same env, shaping, curriculum, patience and validation tail, all inside the training window)
on bars strictly before its test window (the history it learns from is built from those bars
only: the test data is not loaded), never warm-started from a published model (that model may
have seen the test window). The fold's model then decides on its test window, warmed up on the
bars just before it (the past, as the daemon would have them), next to the baselines.

The folds' out-of-sample results are stitched: one equity curve, daily returns and trade list
per strategy over all test windows. Reported: per-fold table, walk-forward efficiency (mean
annualised OOS return / mean annualised in-sample return), CAR25/DD95 on the stitched trades,
block-bootstrap intervals, the share of folds the policy beat buy-and-hold and the SMA cross,
and the share of random-entry draws it beat on the stitched total.

Folds are independent: with ``ray_address`` they run as Ray tasks ("local" starts a local Ray
with ``workers`` CPUs), else one after another in this process. A fold's result is plain data
(numbers, numpy arrays, the weights as safetensors bytes).
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass

import numpy as np
import structlog

from stairway.core.config import DateRange
from stairway.core.errors import ConfigError
from stairway.core.metrics import annualised_pct
from stairway.core.robustness import monte_carlo, walk_forward_efficiency
from stairway.trainer.config import TrainerConfig

log = structlog.get_logger("trainer")

SCHEMES = ("rolling", "anchored")


@dataclass(frozen=True)
class Fold:
    index: int
    train_start: dt.date
    test_start: dt.date  # = the training window's exclusive end
    test_end: dt.date  # exclusive

    def to_json(self) -> dict:
        return {
            "index": self.index,
            "train_start": self.train_start.isoformat(),
            "test_start": self.test_start.isoformat(),
            "test_end": self.test_end.isoformat(),
        }


def plan_folds(rng: DateRange, folds: int, scheme: str = "rolling", train_windows: float = 3.0) -> list[Fold]:
    """``folds`` test windows of equal length (whole days) filling the range after a first
    training span of ``train_windows`` test windows."""
    if scheme not in SCHEMES:
        raise ConfigError(f"walk-forward scheme {scheme!r}: expected one of {', '.join(SCHEMES)}")
    if folds < 1:
        raise ConfigError(f"--folds {folds}: at least 1")
    if train_windows <= 0:
        raise ConfigError(f"--train-windows {train_windows}: must be positive")
    span = (rng.end - rng.start).days
    test_days = span / (folds + train_windows)
    train_days = round(train_windows * test_days)
    if test_days < 7:
        raise ConfigError(
            f"--range {rng.start}..{rng.end} ({span} days) with {folds} folds and a training span of "
            f"{train_windows} windows gives test windows of {test_days:.1f} days; need at least 7"
        )
    starts = [rng.start + dt.timedelta(days=round((train_windows + k) * test_days)) for k in range(folds)]
    ends = starts[1:] + [rng.end]
    out = []
    for k, (a, b) in enumerate(zip(starts, ends)):
        tr = rng.start if scheme == "anchored" else max(rng.start, a - dt.timedelta(days=train_days))
        out.append(Fold(k, tr, a, b))
    return out


def _ns(d: dt.date) -> int:
    return int(dt.datetime(d.year, d.month, d.day, tzinfo=dt.UTC).timestamp()) * 10**9


def run_fold(cfg_json: dict, fold_json: dict, draws: int = 100) -> dict:
    """Train on [train_start, test_start), test on [test_start, test_end). Plain function,
    plain-data arguments and result (no objects of ours cross a process boundary): a Ray
    task runs it as it is."""
    from safetensors.torch import save as st_save

    from stairway.core.bar_files import load_period_bars, select_range, span_text
    from stairway.core.features import FeatureSpec
    from stairway.trainer.algos import policy_from_weights
    from stairway.trainer.baselines import compare
    from stairway.trainer.cycles import train_cycles
    from stairway.trainer.evaluation import run_evaluation
    from stairway.trainer.history import history_from_bars, load_window
    from stairway.trainer.prepared import split_history

    t0 = time.perf_counter()
    fold = Fold(
        int(fold_json["index"]),
        *(dt.date.fromisoformat(fold_json[k]) for k in ("train_start", "test_start", "test_end")),
    )
    cfg = TrainerConfig.model_validate(cfg_json)
    cfg = cfg.model_copy(
        update={"train": cfg.train.model_copy(update={"range": DateRange(start=fold.train_start, end=fold.test_start)})}
    )
    spec = FeatureSpec.from_config(cfg)
    raw, _ = load_period_bars(cfg.data.bars_csv, cfg.bars.period_minutes, cfg.bars.max_jump, cfg.instrument.symbol)
    a, b, c = _ns(fold.train_start), _ns(fold.test_start), _ns(fold.test_end)
    train_raw = select_range(raw, a, b)  # nothing at or after the test window's start
    if len(train_raw) < spec.window + 3:
        raise ConfigError(
            f"fold {fold.index}: {fold.train_start} .. {fold.test_start} holds {len(train_raw)} bars "
            f"of {cfg.data.bars_csv} (it spans {span_text(raw)}); the features need {spec.window} to "
            "warm up"
        )
    history = history_from_bars(train_raw, cfg, spec)
    try:
        data = split_history(cfg, spec, history, [], shadow_tail=False, gate_window=False)
    except ConfigError as e:  # say which fold: a window too short for the session or the holdout
        raise ConfigError(f"fold {fold.index} ({fold.train_start} .. {fold.test_start}): {e}") from None
    trained = train_cycles(cfg, data)
    best = trained.best
    state = trained.states[best.cycle]
    # sized as the daemon would size it (execution.safe_f_sizing: its selection window's safe-f)
    policy = policy_from_weights(spec, state, trained.arch, f"fold-{fold.index}", best.metrics.get("safe_f"))
    eq0 = cfg.account.initial_equity
    is_tr, _ = run_evaluation(policy, history, spec, data.ex, eq0, 0, data.split - 2, risk=cfg.risk)

    test_hist, first = load_window(cfg, spec, b, c, raw=raw)
    last = len(test_hist) - 2
    oos, _ = run_evaluation(policy, test_hist, spec, data.ex, eq0, first, last, record=True, risk=cfg.risk)
    cmp = compare(
        test_hist, spec, data.ex, eq0, first, last, oos, draws=draws, seed=cfg.train.seed + fold.index, risk=cfg.risk
    )
    summaries = {"policy": oos.summary(), **cmp.baselines}
    return {
        "fold": fold.index,
        "train_start": str(fold.train_start),
        "test_start": str(fold.test_start),
        "test_end": str(fold.test_end),
        "train_bars": int(len(history)),
        "train_last_bar_ns": int(history.bars["ts_ns"][-1]),
        "test_first_decision_ns": int(test_hist.bars["ts_ns"][first]),
        "test_bars": int(last - first + 1),
        "cycles": len(trained.records),
        "best_cycle": best.cycle,
        "steps": best.global_step,
        "in_sample": is_tr.summary(),
        "summaries": summaries,
        "intervals": cmp.intervals,
        "random_pnl_pct": cmp.random_pnl_pct,
        "beat_random_share": cmp.beat_random_share,
        "daily": {k: t.daily_returns() for k, t in cmp.trackers.items()},
        "curves": {
            k: (np.asarray(cmp.trackers[k].curve_ts), np.asarray(cmp.trackers[k].curve_equity)) for k in cmp.trackers
        },
        "trade_returns": oos.trade_returns(),
        "weights": st_save(state, metadata={"fold": str(fold.index)}),
        "wall_s": time.perf_counter() - t0,
    }


@dataclass
class WalkForward:
    scheme: str
    folds: list[dict]
    stitched: dict[str, dict]  # strategy -> total_return_pct, sharpe, max_drawdown_pct, intervals, days
    curves: dict[str, tuple[np.ndarray, np.ndarray]]  # strategy -> stitched (ts, equity)
    efficiency: float
    car25_pct: float
    dd95_pct: float
    trades: int
    beat_buy_and_hold: float  # share of folds
    beat_sma: float
    beat_random_share: float  # of the stitched random-entry totals
    random_pnl_pct: np.ndarray
    wall_s: float
    workers: str


def _stitch(folds: list[dict], initial_equity: float, mc_resamples: int, seed: int) -> dict:
    from stairway.trainer.baselines import block_bootstrap

    names = list(folds[0]["daily"])
    stitched, curves = {}, {}
    for n in names:
        daily = np.concatenate([f["daily"][n] for f in folds])
        pnl = float(sum(f["summaries"][n]["pnl_pct"] for f in folds))
        eq_offset, ts_all, eq_all = 0.0, [], []
        for f in folds:
            if n in f["curves"]:
                ts, eq = f["curves"][n]
                ts_all.append(ts)
                eq_all.append(eq + eq_offset)
                eq_offset += (eq[-1] - initial_equity) if len(eq) else 0.0
        if ts_all:
            curves[n] = (np.concatenate(ts_all), np.concatenate(eq_all))
            e = curves[n][1]
            peak = np.maximum.accumulate(np.maximum(e, initial_equity))
            mdd = float(((peak - e) / peak).max() * 100.0)
        else:
            mdd = float("nan")
        sd = daily.std()
        bars = sum(f["summaries"][n]["bars"] for f in folds)
        exposure = {
            k: sum(f["summaries"][n].get(k, 0.0) * f["summaries"][n]["bars"] for f in folds) / max(bars, 1)
            for k in ("long_pct", "short_pct")
        }
        stitched[n] = {
            **exposure,
            "total_return_pct": pnl,
            "sharpe": float(daily.mean() / sd * np.sqrt(252)) if sd > 1e-15 else 0.0,
            "max_drawdown_pct": mdd,
            "days": len(daily),
            "trades": int(sum(f["summaries"][n]["trades"] for f in folds)),
            "halted_bars": int(sum(f["summaries"][n].get("halted_bars", 0) for f in folds)),
            "intervals": block_bootstrap(daily, seed=seed),
        }
    trades = np.concatenate([f["trade_returns"] for f in folds])
    years = sum(f["summaries"]["policy"]["calendar_days"] for f in folds) / 365.25
    mc = monte_carlo(trades, years, mc_resamples, seed=seed)
    draws = [f["random_pnl_pct"] for f in folds]
    k = max((len(d) for d in draws), default=0)
    rand = np.sum([d if len(d) == k else np.zeros(k) for d in draws], axis=0) if k else np.zeros(0)
    return {"stitched": stitched, "curves": curves, "mc": mc, "trades": len(trades), "random": rand}


def run_walk_forward(
    cfg: TrainerConfig,
    rng: DateRange,
    folds: int,
    scheme: str = "rolling",
    train_windows: float = 3.0,
    draws: int = 100,
    ray_address: str | None = None,
    workers: int = 2,
) -> WalkForward:
    plan = plan_folds(rng, folds, scheme, train_windows)
    # a Ray worker runs in its own directory: ship absolute paths
    cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"bars_csv": cfg.data.bars_csv.resolve()})})
    cfg_json = cfg.model_dump(mode="json")
    t0 = time.perf_counter()
    log.info(
        "walk_forward_started",
        scheme=scheme,
        folds=[(str(f.train_start), str(f.test_start), str(f.test_end)) for f in plan],
        ray=ray_address or "none",
    )
    if ray_address:
        results = _run_on_ray(cfg_json, plan, draws, ray_address, workers)
        where = f"ray ({ray_address}, {workers} workers)" if ray_address == "local" else f"ray ({ray_address})"
    else:
        from tqdm import tqdm

        results = []
        bar = tqdm(total=len(plan), desc="walk-forward", unit="fold", disable=None, leave=False)  # a TTY only
        for k, f in enumerate(plan, 1):
            results.append(run_fold(cfg_json, f.to_json(), draws))
            bar.update()
            elapsed = time.perf_counter() - t0
            log.info(  # one line per fold as it ends, with the time left at this pace (issue 22 §1)
                "fold_finished",
                fold=f.index,
                done=f"{k}/{len(plan)}",
                wall_s=round(results[-1]["wall_s"], 1),
                elapsed_s=round(elapsed, 1),
                eta_s=round(elapsed / k * (len(plan) - k), 1),
                oos_pnl_pct=round(results[-1]["summaries"]["policy"]["pnl_pct"], 3),
            )
        bar.close()
        where = "in process"
    results.sort(key=lambda r: r["fold"])
    st = _stitch(results, cfg.account.initial_equity, cfg.gates.mc_resamples, cfg.train.seed)
    ins = [annualised_pct(r["in_sample"]) for r in results]
    oos = [annualised_pct(r["summaries"]["policy"]) for r in results]
    pol = [r["summaries"]["policy"]["pnl_pct"] for r in results]
    bh = [r["summaries"]["buy_and_hold"]["pnl_pct"] for r in results]
    sma = [r["summaries"]["sma_cross"]["pnl_pct"] for r in results]
    mine = st["stitched"]["policy"]["total_return_pct"]
    return WalkForward(
        scheme,
        results,
        st["stitched"],
        st["curves"],
        walk_forward_efficiency(ins, oos),
        st["mc"].car25_pct,
        st["mc"].dd95_pct,
        st["trades"],
        float(np.mean([p > x for p, x in zip(pol, bh)])),
        float(np.mean([p > x for p, x in zip(pol, sma)])),
        float((st["random"] < mine).mean()) if len(st["random"]) else float("nan"),
        st["random"],
        time.perf_counter() - t0,
        where,
    )


def run_fold_on_one_cpu(cfg_json: dict, fold_json: dict, draws: int = 100) -> dict:
    """``run_fold`` in a Ray task given one CPU: numba's batched searches (MuZero) on one thread,
    not on as many threads as the host has cores, beside the other workers."""
    import numba

    numba.set_num_threads(1)
    return run_fold(cfg_json, fold_json, draws)


def _run_on_ray(cfg_json: dict, plan: list[Fold], draws: int, address: str, workers: int) -> list[dict]:
    from stairway.trainer.ray_setup import ray_session

    with ray_session(address, workers, "--ray-address") as ray:
        task = ray.remote(num_cpus=1)(run_fold_on_one_cpu)
        return ray.get([task.remote(cfg_json, f.to_json(), draws) for f in plan])
