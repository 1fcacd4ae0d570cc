"""Ray Tune sweep smoke test: 2 trials on a local Ray instance."""

import json
import math

import pytest

from stairway.core.config import load_config
from stairway.trainer.config import TrainerConfig
from tests.helpers import ROOT

ray = pytest.importorskip("ray", reason="the sweep extra (ray[tune]) is not installed")


@pytest.mark.slow
def test_sweep_two_trials_on_local_ray(tmp_path):
    from stairway.trainer.sweep import run_sweep

    cfg = load_config(
        TrainerConfig,
        ROOT / "config/trainer.toml",
        environ={
            "STAIRWAY_PPO__NUM_ENVS": "8",
            "STAIRWAY_PPO__NUM_STEPS": "64",
            "STAIRWAY_PPO__HIDDEN": "16",
            "STAIRWAY_GATES__TICKS_DIR": str(tmp_path / "ticks"),
            "STAIRWAY_TRAIN__RANGE": '{"start": "2017-01-01", "end": "2017-04-01"}',
        },
    )
    res = run_sweep(cfg, trials=2, steps=1024, out_dir=tmp_path)
    trials = res["trials"]
    assert len(trials) == 2 and all("error" not in t for t in trials), trials
    assert trials[0]["config"] != trials[1]["config"]  # two different samples of the space
    assert all(math.isfinite(t["sharpe"]) and t["steps"] == 1024 for t in trials)
    assert res["best"]["sharpe"] == max(t["sharpe"] for t in trials)
    saved = json.loads((tmp_path / res["sweep_id"] / "sweep.json").read_text())
    assert saved["best"]["config"] == res["best"]["config"]
    assert not (tmp_path / "models").exists()  # sweeps never publish
