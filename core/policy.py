"""Policies: the PPO actor-critic network and the inference wrapper the daemon runs.

The network is defined once here; the trainer optimises it and the daemon runs it from the
same safetensors weights. Inference uses torch.inference_mode, one intra-op thread and a
pre-allocated input tensor that shares memory with a numpy array, so a decision allocates
no new input buffers.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch
from torch import nn

from core.types import ACTION_NAMES


class ActorCritic(nn.Module):
    """Separate actor and critic MLPs with tanh activations (CleanRL's PPO layout)."""

    def __init__(self, obs_dim: int, n_actions: int = len(ACTION_NAMES), hidden: int = 64) -> None:
        super().__init__()
        self.obs_dim, self.n_actions, self.hidden = obs_dim, n_actions, hidden

        def layer(i: int, o: int, std: float) -> nn.Linear:
            lin = nn.Linear(i, o)
            nn.init.orthogonal_(lin.weight, std)
            nn.init.constant_(lin.bias, 0.0)
            return lin

        self.critic = nn.Sequential(
            layer(obs_dim, hidden, 2**0.5), nn.Tanh(), layer(hidden, hidden, 2**0.5), nn.Tanh(), layer(hidden, 1, 1.0)
        )
        self.actor = nn.Sequential(
            layer(obs_dim, hidden, 2**0.5), nn.Tanh(), layer(hidden, hidden, 2**0.5), nn.Tanh(),
            layer(hidden, n_actions, 0.01),
        )

    def value(self, x: torch.Tensor) -> torch.Tensor:
        return self.critic(x).squeeze(-1)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.actor(x)


class Policy(Protocol):
    """What the daemon needs from a policy: an action index and its confidence."""

    sha: str

    def act(self, obs: np.ndarray) -> tuple[int, float]: ...


class PPOPolicy:
    """Greedy inference for a trained ActorCritic."""

    kind = "ppo"

    def __init__(self, net: ActorCritic, sha: str = "") -> None:
        torch.set_num_threads(1)
        self.net = net.eval()
        self.sha = sha
        self._x = torch.zeros(1, net.obs_dim)
        self._xn = self._x.numpy()

    def act(self, obs: np.ndarray) -> tuple[int, float]:
        self._xn[0, :] = obs
        with torch.inference_mode():
            logits = self.net.actor(self._x)[0]
            probs = torch.softmax(logits, 0)
            a = int(torch.argmax(probs))
            return a, float(probs[a])


class ScriptedPolicy:
    """Plays a fixed sequence of actions (then HOLD): replays and parity tests."""

    kind = "scripted"

    def __init__(self, actions: list[int] | np.ndarray, sha: str = "scripted") -> None:
        self.actions = [int(a) for a in actions]
        self.sha = sha
        self.calls = 0
        self.observations: list[np.ndarray] = []

    def act(self, obs: np.ndarray) -> tuple[int, float]:
        self.observations.append(obs.copy())
        a = self.actions[self.calls] if self.calls < len(self.actions) else 0
        self.calls += 1
        return a, 1.0


def ppo_from_tensors(tensors: dict[str, torch.Tensor], obs_dim: int, hidden: int) -> ActorCritic:
    """Rebuild the network from checkpoint tensors; strict, so a missing or extra tensor fails."""
    net = ActorCritic(obs_dim, hidden=hidden)
    net.load_state_dict(tensors, strict=True)
    return net
