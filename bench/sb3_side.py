"""The Stable-Baselines3 side of bench/train_vs_sb3.py (run in a subprocess with SB3 on
PYTHONPATH). SB3's PPO drives the same vectorised trading env through an SB3 VecEnv."""

from __future__ import annotations

import json
import sys
import time

import gymnasium as gym
import numpy as np
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import VecEnv
from train_vs_sb3 import make_env


class StairwayVecEnv(VecEnv):
    def __init__(self, env) -> None:
        self.env = env
        space = gym.spaces.Box(-np.inf, np.inf, (env.obs_dim,), np.float32)
        super().__init__(env.num_envs, space, gym.spaces.Discrete(4))
        self._actions = None

    def reset(self):
        return self.env.reset().astype(np.float32)

    def step_async(self, actions):
        self._actions = np.asarray(actions, dtype=np.int64)

    def step_wait(self):
        obs, rew, done = self.env.step(self._actions)
        infos = [{} for _ in range(self.num_envs)]
        return obs.astype(np.float32), rew.astype(np.float32), done.copy(), infos

    def close(self):
        pass

    def get_attr(self, name, indices=None):
        return [getattr(self.env, name)] * self.num_envs

    def set_attr(self, name, value, indices=None):
        setattr(self.env, name, value)

    def env_method(self, name, *args, indices=None, **kwargs):
        return [None] * self.num_envs

    def env_is_wrapped(self, wrapper_class, indices=None):
        return [False] * self.num_envs


def main() -> None:
    """argv: steps, num_envs, then either "defaults" (SB3's own PPO settings) or the settings
    to match as JSON: n_steps, batch_size, n_epochs, hidden, ent_coef, learning_rate."""
    steps, num_envs, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    import torch

    torch.set_num_threads(1)
    venv = StairwayVecEnv(make_env(num_envs))
    if mode == "defaults":
        model = PPO("MlpPolicy", venv, seed=1, device="cpu", verbose=0)
    else:  # ours: separate 64x64 tanh actor and critic, our rollout, minibatch and epochs
        a = json.loads(mode)
        arch = {"net_arch": {"pi": [a["hidden"]] * 2, "vf": [a["hidden"]] * 2}, "activation_fn": torch.nn.Tanh}
        model = PPO(
            "MlpPolicy", venv, n_steps=a["n_steps"], batch_size=a["batch_size"], n_epochs=a["n_epochs"],
            ent_coef=a["ent_coef"], learning_rate=a["learning_rate"], policy_kwargs=arch, seed=1, device="cpu",
            verbose=0,
        )  # fmt: skip
    model.learn(model.n_steps * num_envs * 2)  # warm-up
    before = model.num_timesteps
    t0 = time.perf_counter()
    model.learn(steps, reset_num_timesteps=False)  # SB3 finishes whole rollouts: count what it did
    done = model.num_timesteps - before
    print(json.dumps({"steps_per_s": done / (time.perf_counter() - t0), "steps": done}))


if __name__ == "__main__":
    main()
