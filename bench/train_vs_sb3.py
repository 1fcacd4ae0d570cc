"""PPO env-steps/s: Stairway vs Stable-Baselines3 2.9 on the same environment, side by
side in one run. SB3 (and gymnasium) are installed only for this benchmark, with --no-deps
into bench/.sb3 (reusing this environment's CPU torch and numpy); SB3 trains through an
SB3 VecEnv wrapping the very same vectorised env.

The headline is at equal settings: SB3 given our rollout length, minibatch size, epochs,
network (separate 64x64 tanh actor and critic), entropy coefficient and one torch thread, so
both do the same gradient steps per env step. SB3 with its own defaults (2,048-step rollouts,
minibatches of 64, 10 epochs: many more gradient steps per env step) is shown beside it.

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


def sb3(steps: int, num_envs: int, settings: dict | None = None) -> float:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TARGET), str(ROOT / "bench"), str(ROOT)]))
    mode = "defaults" if settings is None else json.dumps(settings)
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "sb3_side.py"), str(steps), str(num_envs), mode],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])["steps_per_s"]


def equal_settings(num_envs: int) -> dict:
    """Our PPOArgs for ``num_envs`` envs in SB3's names."""
    from stairway.trainer.config import PPOArgs

    a = PPOArgs(num_envs=num_envs)
    batch = num_envs * a.num_steps // a.num_minibatches
    return {"n_steps": a.num_steps, "batch_size": batch, "n_epochs": a.update_epochs, "hidden": a.hidden,
            "ent_coef": a.ent_coef, "learning_rate": a.learning_rate}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    steps = 32_768 if a.quick else 163_840
    ensure_sb3()
    figures: dict = {"sb3_version": "2.9.2", "obs_dim": 32, "actions": 4, "session_steps": 360, "torch_threads": 1}
    for n in (8, 64):
        same = equal_settings(n)
        theirs, mine = sb3(steps, n, same), ours(steps, n)
        figures[f"settings_{n}env"] = same
        figures[f"sb3_equal_steps_per_s_{n}env"] = round(theirs)
        figures[f"ours_steps_per_s_{n}env"] = round(mine)
        figures[f"ratio_equal_{n}env"] = round(mine / theirs, 2)
    figures["sb3_defaults_steps_per_s_8env"] = round(sb3(steps // 2, 8))
    report("train_vs_sb3", figures)


if __name__ == "__main__":
    main()
