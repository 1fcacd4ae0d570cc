"""PPO env-steps/s: Stairway vs Stable-Baselines3 2.9 on the same environment, side by
side in one run. SB3 (and gymnasium) are installed only for this benchmark, with --no-deps
into bench/.sb3 (reusing this environment's CPU torch and numpy); SB3 trains through an
SB3 VecEnv wrapping the very same vectorised env, with SB3's default PPO settings.

Spec: 32-float observations, 4 actions, 360-step sessions, real EUR/USD hourly bars, costs on.

    python bench/train_vs_sb3.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from common import ROOT, report

SB3 = ["stable-baselines3==2.9.2", "gymnasium==1.4.0", "cloudpickle==3.1.2", "farama-notifications==0.0.6"]
TARGET = ROOT / "bench" / ".sb3"


def make_env(num_envs: int):
    from stairway.core.config import load_config
    from stairway.core.execution import ExecutionModel
    from stairway.core.features import FeatureSpec
    from stairway.trainer.config import TrainerConfig
    from stairway.trainer.env import VecTradingEnv
    from stairway.trainer.history import load_history

    cfg = load_config(TrainerConfig, ROOT / "config/trainer.toml", environ={})
    cfg = cfg.model_copy(
        update={
            "features": cfg.features.model_copy(
                update={"return_lags_minutes": (60, 120, 180, 360, 720, 1440, 2880, 4320)}
            )
        }
    )
    spec = FeatureSpec.from_config(cfg)
    assert spec.obs_dim == 32
    ex = ExecutionModel.from_config(cfg.execution, cfg.instrument)
    hist = load_history(cfg, spec, *cfg.train.range.ns())
    return VecTradingEnv(hist, spec, ex, 100_000.0, num_envs, 360, seed=1)


def ensure_sb3() -> None:
    stamp = TARGET / ".installed"
    if stamp.exists():
        return
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(TARGET), *SB3], check=True
    )
    stamp.touch()


def ours(steps: int, num_envs: int) -> float:
    from stairway.trainer.config import PPOArgs
    from stairway.trainer.ppo import PPOLearner

    learner = PPOLearner(make_env(num_envs), PPOArgs(num_envs=num_envs, total_steps=steps), seed=1)
    learner.learn(num_envs * 128 * 2)  # warm-up
    t0 = time.perf_counter()
    before = learner.global_step
    learner.learn(steps)
    return (learner.global_step - before) / (time.perf_counter() - t0)


def sb3(steps: int, num_envs: int) -> float:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TARGET), str(ROOT / "bench"), str(ROOT)]))
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "sb3_side.py"), str(steps), str(num_envs)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])["steps_per_s"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    steps = 32_768 if a.quick else 163_840
    ensure_sb3()
    sb3_8 = sb3(steps // 2, 8)
    ours_8 = ours(steps, 8)
    ours_64 = ours(steps, 64)
    report(
        "train_vs_sb3",
        {
            "sb3_version": "2.9.2",
            "sb3_steps_per_s_8env": round(sb3_8),
            "ours_steps_per_s_8env": round(ours_8),
            "ours_steps_per_s_64env": round(ours_64),
            "ratio_8env": round(ours_8 / sb3_8, 1),
            "ratio_default_vs_sb3_8env": round(ours_64 / sb3_8, 1),
            "obs_dim": 32,
            "actions": 4,
            "session_steps": 360,
        },
    )


if __name__ == "__main__":
    main()
