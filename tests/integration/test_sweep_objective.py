"""Issue 20 §4: a sweep trial is judged by a walk-forward inside the training and selection
bars (never the gate window), not by one window."""

import datetime as dt

import pytest

from stairway.core.config import load_config
from stairway.trainer.config import TrainerConfig
from stairway.trainer.prepared import prepare_data
from stairway.trainer.sweep import run_trial, walk_forward_range
from stairway.trainer.walk_forward import run_walk_forward
from tests.helpers import ROOT

SMALL = {
    "STAIRWAY_PPO__NUM_ENVS": "8",
    "STAIRWAY_PPO__NUM_STEPS": "64",
    "STAIRWAY_PPO__HIDDEN": "16",
    "STAIRWAY_TRAIN__SESSION_MINUTES": "7200",
    "STAIRWAY_TRAIN__RANGE": '{"start": "2017-01-01", "end": "2017-07-01"}',
}
PARAMS = {
    "fast_gain": 0.2,
    "base_hold_bonus": 0.01,
    "target_hold_rate": 0.6,
    "w_momentum": 0.4,
    "w_volatility": 0.3,
    "w_divergence": 0.3,
}


def test_a_trial_is_scored_by_a_walk_forward_that_stops_before_the_gate_window(tmp_path):
    cfg = load_config(
        TrainerConfig, ROOT / "config/trainer.toml", environ=SMALL | {"STAIRWAY_GATES__TICKS_DIR": str(tmp_path)}
    )
    rng = walk_forward_range(cfg)
    d = prepare_data(cfg)
    gate_start = dt.datetime.fromtimestamp(d.history.bars["ts_ns"][d.select_end] / 1e9, dt.UTC)
    assert rng.start == dt.date(2017, 1, 1) and rng.end <= gate_start.date() < dt.date(2017, 7, 1)
    trial = run_trial(cfg, PARAMS, steps=1024, seed=3, folds=3)
    assert trial["objective"] == f"walk_forward 3 folds {rng.start}..{rng.end}"
    # the same numbers as `stairway validate --folds 3` over that range with the trial's settings
    from stairway.trainer.sweep import apply_trial

    one = apply_trial(cfg, PARAMS)
    one = one.model_copy(
        update={
            "train": one.train.model_copy(update={"seed": 3}),
            "cycles": one.cycles.model_copy(update={"count": 1, "steps": 1024, "min_cycles": 1}),
        }
    )
    wf = run_walk_forward(one, rng, 3, draws=10)
    assert trial["sharpe"] == pytest.approx(wf.stitched["policy"]["sharpe"], abs=1e-12)
    assert trial["trades"] == wf.stitched["policy"]["trades"] and trial["steps"] >= 3 * 1024
    single = run_trial(cfg, PARAMS, steps=1024, seed=3, folds=0)
    assert single["objective"] == "selection window"
