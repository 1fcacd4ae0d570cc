"""The trainer's algorithm seam: what `run_cycles`, the gates, the walk-forward and publishing
need from a learning algorithm, whatever it is. ``train.algo`` chooses one.

    learn(steps, on_progress)   train for at least ``steps`` more env steps
    tensors()                   the weights to save (safetensors)
    arch()                      the checkpoint's generic architecture JSON (kind, sizes, inference)
    policy(sha)                 the greedy inference Policy of the current weights, exactly as
                                core.policies.load_policy will build it from the saved checkpoint
    controller()                (bonus, hold rate) of the hold-bonus controller that shaped the last
                                learning: the shaper the algorithm's own env steps used
    close()                     release what it started (MuZero's Ray actors)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import torch

from stairway.core.checkpoint import Checkpoint, CheckpointMeta
from stairway.core.errors import ConfigError
from stairway.core.features import FeatureSpec
from stairway.core.policies import load_policy
from stairway.core.policy import Policy
from stairway.core.ppo_net import ppo_from_tensors
from stairway.core.types import ACTION_NAMES
from stairway.trainer.config import TrainerConfig
from stairway.trainer.env import VecTradingEnv
from stairway.trainer.ppo import PPOLearner, PPOProgress


class Algorithm(Protocol):
    kind: str

    @property
    def global_step(self) -> int: ...

    def learn(self, steps: int, on_progress: Callable[[PPOProgress], None] | None = None) -> None: ...

    def tensors(self) -> dict[str, torch.Tensor]: ...

    def arch(self) -> dict: ...

    def policy(self, sha: str = "") -> Policy: ...

    def controller(self) -> tuple[float, float]: ...

    def close(self) -> None: ...


class PPOAlgorithm:
    kind = "ppo"

    def __init__(
        self, cfg: TrainerConfig, env: VecTradingEnv, parent: Checkpoint | None, start_step: int, planned_steps: int
    ) -> None:
        self.cfg = cfg
        # the parent's kind and sizes were checked by the warm start (trainer.cycles._warm_start)
        net = ppo_from_tensors(parent.tensors, env.obs_dim, cfg.ppo.hidden) if parent is not None else None
        self.learner = PPOLearner(
            env, cfg.ppo, cfg.train.seed, net=net, start_step=start_step, planned_steps=planned_steps
        )

    @property
    def global_step(self) -> int:
        return self.learner.global_step

    def learn(self, steps: int, on_progress: Callable[[PPOProgress], None] | None = None) -> None:
        self.learner.learn(steps, on_progress)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.learner.agent.state_dict().items()}

    def arch(self) -> dict:
        return {
            "kind": "ppo",
            "hidden": self.cfg.ppo.hidden,
            "inference": {"min_confidence": self.cfg.train.min_confidence},
        }

    def policy(self, sha: str = "") -> Policy:
        return policy_from_weights(self.learner.env.spec, self.tensors(), self.arch(), sha)

    def controller(self) -> tuple[float, float]:
        shaper = self.learner.env.shaper
        return (shaper.last_bonus, shaper.hold_rate) if shaper is not None else (0.0, 0.0)

    def close(self) -> None:
        """Nothing to release."""


def policy_from_weights(
    spec: FeatureSpec, tensors: dict[str, torch.Tensor], arch: dict, sha: str = "", safe_f: float | None = None
) -> Policy:
    """The Policy of weights that were not saved (a walk-forward fold's model), built by the
    same registry as a saved checkpoint's (``safe_f``: as a checkpoint's validation records it)."""
    meta = CheckpointMeta(
        arch["kind"],
        spec.hash,
        spec.to_json(),
        (spec.obs_dim,),
        ACTION_NAMES,
        int(arch.get("hidden", 0)),
        arch=json.dumps(arch),
        extra=json.dumps({"validation": {"safe_f": safe_f}} if safe_f is not None else {}),
    )
    return load_policy(Checkpoint(sha, Path(), meta, tensors), spec, sha or "unsaved weights")


def make_algorithm(
    cfg: TrainerConfig,
    env: VecTradingEnv,
    parent: Checkpoint | None = None,
    start_step: int = 0,
    planned_steps: int | None = None,
) -> Algorithm:
    planned = planned_steps if planned_steps is not None else cfg.cycles.count * cfg.cycles.steps
    if cfg.train.algo == "ppo":
        return PPOAlgorithm(cfg, env, parent, start_step, planned)
    if cfg.train.algo == "muzero":
        from stairway.trainer.muzero import MuZeroAlgorithm

        return MuZeroAlgorithm(cfg, env, parent, start_step, planned)
    raise ConfigError(f"train.algo = {cfg.train.algo!r}: expected 'ppo' or 'muzero'")
