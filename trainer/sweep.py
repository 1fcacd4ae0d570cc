"""`stairway train sweep`: hyperparameter search with Ray Tune over the seed's space.

Each trial scores one set of shaping and regime parameters. The objective (issue 20 §4):

- ``walk_forward`` (the default): a rolling walk-forward of ``folds`` folds inside the
  training and selection bars of `train run`'s split (never the gate window), each fold
  trained from scratch for ``steps`` env steps on its own window and judged on the next;
  the trial's Sharpe is the stitched out-of-sample one, its trades the folds' together.
- ``selection``: one policy trained for ``steps`` on the training bars and judged on the
  selection window (what picks a cycle in `train run`: one window, so a trial's luck counts).

Sweeps never publish: they print and save the table (runs/<sweep_id>/sweep.json).

Search space (seed plan): fast gain, base hold bonus, regime weights (momentum,
volatility, divergence; normalised to sum 1), target hold rate.

Ray is an optional extra (``pip install .[sweep]``). Without an address a small local Ray
instance is started; with one, the trials run on that cluster, whose workers must have
Stairway installed.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time
from pathlib import Path
from typing import Any

import structlog

from stairway.core.config import DateRange
from stairway.core.errors import ConfigError
from stairway.core.types import NS_PER_DAY
from stairway.trainer.config import TrainerConfig

log = structlog.get_logger("trainer")


def apply_trial(cfg: TrainerConfig, params: dict) -> TrainerConfig:
    w = [params["w_momentum"], params["w_volatility"], params["w_divergence"]]
    total = sum(w)
    weights = tuple(x / total for x in w) if total > 0 else (0.4, 0.3, 0.3)
    shaping = cfg.shaping.model_copy(
        update={
            "fast_gain": params["fast_gain"],
            "base_hold_bonus": params["base_hold_bonus"],
            "target_hold_rate": params["target_hold_rate"],
        }
    )
    return cfg.model_copy(update={"shaping": shaping, "regime": cfg.regime.model_copy(update={"weights": weights})})


def walk_forward_range(cfg: TrainerConfig) -> DateRange:
    """The part of the range a trial's walk-forward may use: up to the first day of the gate
    window (training and selection bars), as `train run` splits it."""
    from stairway.trainer.prepared import prepare_data

    d = prepare_data(cfg)
    assert cfg.train.range is not None
    first_gate_ns = int(d.history.bars["ts_ns"][d.select_end])
    end = dt.date(1970, 1, 1) + dt.timedelta(days=first_gate_ns // NS_PER_DAY)
    return DateRange(start=cfg.train.range.start, end=end)


def walk_forward_trial(cfg: TrainerConfig, steps: int, folds: int) -> dict:
    """One parameter set judged by a rolling walk-forward (see the module docstring)."""
    from stairway.trainer.walk_forward import _stitch, plan_folds, run_fold

    rng = walk_forward_range(cfg)
    one = cfg.model_copy(update={"cycles": cfg.cycles.model_copy(update={"count": 1, "steps": steps, "min_cycles": 1})})
    cfg_json = one.model_dump(mode="json")
    results = [run_fold(cfg_json, f.to_json(), draws=10) for f in plan_folds(rng, folds)]
    st = _stitch(results, cfg.account.initial_equity, cfg.gates.mc_resamples, cfg.train.seed)["stitched"]["policy"]
    decisions = [r["summaries"]["policy"] for r in results]
    return {
        "sharpe": st["sharpe"],
        "pnl_pct": st["total_return_pct"],
        "max_drawdown_pct": st["max_drawdown_pct"],
        "trades": st["trades"],
        "hold_rate": sum(x["hold_rate"] * x["bars"] for x in decisions) / max(sum(x["bars"] for x in decisions), 1),
        "steps": sum(int(r["steps"]) for r in results),
        "objective": f"walk_forward {folds} folds {rng.start}..{rng.end}",
    }


def run_trial(cfg: TrainerConfig, params: dict, steps: int, seed: int, folds: int = 3) -> dict:
    """Train and judge one parameter set (plain function: Ray calls it in a worker): by a
    walk-forward of ``folds`` folds, or, with ``folds`` = 0, on the selection window."""
    from stairway.trainer.algos import make_algorithm
    from stairway.trainer.evaluation import evaluate
    from stairway.trainer.prepared import prepare_data, training_env

    cfg = apply_trial(cfg, params)
    cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"seed": seed})})
    if folds:
        return walk_forward_trial(cfg, steps, folds)
    d = prepare_data(cfg)
    env, _ = training_env(cfg, d, seed)
    algo = make_algorithm(
        cfg.model_copy(update={"train": cfg.train.model_copy(update={"seed": seed})}), env, planned_steps=steps
    )
    algo.learn(steps)
    m, _ = evaluate(
        algo.policy(), d.history, d.spec, d.ex, cfg.account.initial_equity, d.split, d.select_end - 2, risk=cfg.risk
    )
    return {
        "sharpe": m["sharpe"],
        "pnl_pct": m["pnl_pct"],
        "max_drawdown_pct": m["max_drawdown_pct"],
        "trades": m["trades"],
        "hold_rate": m["hold_rate"],
        "steps": algo.global_step,
        "objective": "selection window",
    }


def best_trial(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The trial with the best validation Sharpe among those that traded: a trial that never
    traded has a Sharpe of 0, not a result, and is never "best" (None when no trial traded)."""
    ok = [r for r in rows if "error" not in r and math.isfinite(r["sharpe"]) and r["trades"] > 0]
    return max(ok, key=lambda r: r["sharpe"]) if ok else None


def trial_progress(total: int):
    """A Ray Tune callback in the driver: a bar with elapsed time and ETA over the trials on a
    terminal, and one ``sweep_trial_finished`` line per trial as it ends (done/total, its
    walk-forward Sharpe or its error, elapsed and the time left at this pace)."""
    from ray.tune import Callback
    from tqdm import tqdm

    class TrialProgress(Callback):
        def __init__(self) -> None:
            self.t0, self.done = time.perf_counter(), 0
            self.bar = tqdm(total=total, desc="sweep", unit="trial", disable=None, leave=False)  # a TTY only

        def _ended(self, **fields: Any) -> None:
            self.done += 1
            self.bar.update()
            elapsed = time.perf_counter() - self.t0
            eta = elapsed / self.done * max(0, total - self.done)
            log.info("sweep_trial_finished", done=f"{self.done}/{total}", elapsed_s=round(elapsed, 1),
                     eta_s=round(eta, 1), **fields)  # fmt: skip
            if self.done >= total:
                self.bar.close()

        def on_trial_complete(self, iteration, trials, trial, **info) -> None:
            sharpe = (trial.last_result or {}).get("sharpe")
            self._ended(sharpe=None if sharpe is None else round(float(sharpe), 3))

        def on_trial_error(self, iteration, trials, trial, **info) -> None:
            self._ended(error=str(getattr(trial, "error_file", "") or "failed"))

    return TrialProgress()


def run_sweep(
    cfg: TrainerConfig,
    trials: int,
    steps: int,
    ray_address: str | None = None,
    out_dir: Path | None = None,
    folds: int = 3,
) -> dict:
    try:
        from ray import tune
    except ImportError:
        raise ConfigError("the sweep needs Ray Tune: pip install -c constraints.txt '.[sweep]'") from None
    from stairway.trainer.ray_setup import ray_session

    space = {
        "fast_gain": tune.uniform(0.05, 0.5),
        "base_hold_bonus": tune.loguniform(1e-3, 1e-1),
        "target_hold_rate": tune.uniform(0.35, 0.75),
        "w_momentum": tune.uniform(0.0, 1.0),
        "w_volatility": tune.uniform(0.0, 1.0),
        "w_divergence": tune.uniform(0.0, 1.0),
    }
    # Ray runs trials in their own working directories: ship absolute paths
    cfg = cfg.model_copy(
        update={
            "data": cfg.data.model_copy(update={"bars_csv": cfg.data.bars_csv.resolve()}),
            "gates": cfg.gates.model_copy(
                update={"ticks_dir": cfg.gates.ticks_dir.resolve(), "daemon_config": cfg.gates.daemon_config.resolve()}
            ),
        }
    )
    base = cfg.model_dump(mode="json")
    seed = cfg.train.seed

    def trainable(params: dict) -> None:
        from stairway.trainer.config import TrainerConfig as TC

        tune.report(run_trial(TC.model_validate(base), params, steps, seed, folds))

    sweep_id = time.strftime("sweep-%Y%m%dT%H%M%S", time.gmtime())
    out = (out_dir or cfg.train.reports_dir) / sweep_id
    out.mkdir(parents=True, exist_ok=True)
    with ray_session(ray_address, 2, "the sweep"):
        tuner = tune.Tuner(
            tune.with_resources(trainable, {"cpu": 1}),
            param_space=space,
            tune_config=tune.TuneConfig(
                num_samples=trials,
                metric="sharpe",
                mode="max",
                search_alg=tune.search.BasicVariantGenerator(random_state=seed),
            ),
            run_config=tune.RunConfig(
                name=sweep_id,
                storage_path=str((out / "ray").resolve()),
                verbose=0,  # Ray's own reporter off: the progress below says what people read
                callbacks=[trial_progress(trials)],
            ),
        )
        grid = tuner.fit()
    rows: list[dict[str, Any]] = []
    for r in list(grid):  # type: ignore[call-overload]  # ResultGrid: __len__ and __getitem__
        if r.error:
            rows.append({"config": r.config, "error": str(r.error)})
        else:
            rows.append(
                {
                    "config": r.config,
                    **{
                        k: r.metrics[k]
                        for k in ("sharpe", "pnl_pct", "max_drawdown_pct", "trades", "hold_rate", "steps", "objective")
                    },
                }
            )
    best = best_trial(rows)
    result = {
        "sweep_id": sweep_id,
        "trials": rows,
        "best": best,
        "steps_per_trial": steps,
        "objective": f"walk_forward ({folds} folds)" if folds else "selection window",
        "ray_address": ray_address or "local",
    }
    (out / "sweep.json").write_text(json.dumps(result, indent=2, default=float))
    return result | {"path": str(out / "sweep.json")}
