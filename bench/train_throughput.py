"""PPO training throughput on the reference env spec (SB3 2.9: 3,100 env-steps/s with 8
envs): 32-float observations, 4 actions, 360-step sessions, real EUR/USD hourly bars with
costs on. Reports env-steps/s for 8 envs and for the trainer's default 64 envs.

    python bench/train_throughput.py [--quick]
"""

from __future__ import annotations

import argparse
import time

from common import ROOT, report
from stairway.core.config import load_config  # noqa: E402
from stairway.core.execution import ExecutionModel  # noqa: E402
from stairway.core.features import FeatureSpec  # noqa: E402
from stairway.trainer.config import PPOArgs, TrainerConfig  # noqa: E402
from stairway.trainer.env import VecTradingEnv  # noqa: E402
from stairway.trainer.history import load_history  # noqa: E402
from stairway.trainer.ppo import train_ppo  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    steps = 60_000 if a.quick else 400_000
    cfg = load_config(TrainerConfig, ROOT / "config/trainer.toml", environ={})
    # one more return lag makes the observation 32 floats (23 market + 9 position), as in the reference
    cfg = cfg.model_copy(
        update={
            "features": cfg.features.model_copy(
                update={"return_lags_minutes": (60, 120, 180, 360, 720, 1440, 2880, 4320)}
            )
        }
    )
    spec = FeatureSpec.from_config(cfg)
    assert spec.obs_dim == 32, spec.obs_dim
    ex = ExecutionModel.from_config(cfg.execution, cfg.instrument)
    hist = load_history(cfg, spec, *cfg.train.range.ns())
    figures = {"obs_dim": spec.obs_dim, "actions": 4, "session_steps": 360, "sb3_8env_ref_steps_per_s": 3100}
    for num_envs in (8, 64):
        env = VecTradingEnv(hist, spec, ex, 100_000.0, num_envs, 360, seed=1)
        args = PPOArgs(total_steps=num_envs * 128 * 2, num_envs=num_envs)
        train_ppo(env, args, seed=1)  # warm-up (JIT caches, allocator)
        args = PPOArgs(total_steps=steps, num_envs=num_envs)
        t0 = time.perf_counter()
        train_ppo(VecTradingEnv(hist, spec, ex, 100_000.0, num_envs, 360, seed=1), args, seed=1)
        done = -(-steps // (num_envs * 128)) * num_envs * 128
        figures[f"steps_per_s_{num_envs}env"] = round(done / (time.perf_counter() - t0))
    figures["ratio_vs_sb3_8env"] = round(figures["steps_per_s_64env"] / 3100, 1)
    report("train_throughput", figures)


if __name__ == "__main__":
    main()
