"""Ray Tune sweep smoke test: 2 trials on a local Ray instance."""

import json
import math

import pytest

from stairway.core.config import load_config
from stairway.trainer.config import TrainerConfig
from tests.helpers import ROOT

ray = pytest.importorskip("ray", reason="the sweep extra (ray[tune]) is not installed")


@pytest.mark.slow
def test_sweep_two_trials_on_local_ray(tmp_path, capsys):
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
    assert all(math.isfinite(t["sharpe"]) and t["steps"] >= 1024 for t in trials)
    assert all(t["objective"].startswith("walk_forward 3 folds") for t in trials)
    traded = [t for t in trials if t["trades"] > 0]
    assert res["best"] == (max(traded, key=lambda t: t["sharpe"]) if traded else None)
    saved = json.loads((tmp_path / res["sweep_id"] / "sweep.json").read_text())
    assert saved["best"] == res["best"]
    assert not (tmp_path / "models").exists()  # sweeps never publish
    # progress (issue 22 §1): a line per trial as it ends, with the count, its Sharpe and the time left
    lines = [x for x in capsys.readouterr().out.splitlines() if "sweep_trial_finished" in x]
    assert len(lines) == 2 and "done=1/2" in lines[0] and "done=2/2" in lines[1] and "eta_s=0.0" in lines[1]
    assert all("elapsed_s=" in x and "sharpe=" in x for x in lines)


def test_a_local_ray_refuses_a_client_without_its_token():
    """Issue 19.11: the local Ray of sweeps, walk-forward and self-play listened on every
    interface without authentication. Its ports still open on every interface (Ray 2.60 binds
    them so whatever node address it is given), but a client without the token this process
    made is refused, and the token leaves the environment with the session."""
    import os
    import subprocess
    import sys

    from stairway.trainer.ray_setup import ray_session

    with ray_session("local", 1) as ray:

        @ray.remote
        def plus_one(x):
            return x + 1

        assert ray.get(plus_one.remote(1)) == 2  # the workers hold the token
        gcs = ray.get_runtime_context().gcs_address
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
        probe = f"import ray\nray.init(address={gcs!r}, log_to_driver=False)\nprint('CONNECTED')\n"
        r = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
    assert "CONNECTED" not in r.stdout and "InvalidAuthToken" in r.stdout + r.stderr
    assert "RAY_AUTH_TOKEN" not in os.environ and "RAY_AUTH_MODE" not in os.environ


def test_a_trial_that_never_traded_is_never_best():
    """Issue 20 §4: a 0-trade trial (Sharpe 0) beat every trial that traded at a loss."""
    from stairway.trainer.sweep import best_trial

    rows = [
        {"config": {"k": 1}, "sharpe": 0.0, "trades": 0},
        {"config": {"k": 2}, "sharpe": -0.4, "trades": 31},
        {"config": {"k": 3}, "sharpe": -1.2, "trades": 12},
        {"config": {"k": 4}, "error": "boom"},
        {"config": {"k": 5}, "sharpe": float("nan"), "trades": 3},
    ]
    assert best_trial(rows)["config"] == {"k": 2}
    assert best_trial([rows[0], rows[3]]) is None
