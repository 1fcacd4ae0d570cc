"""The PPO actor-critic network, defined once: the trainer optimises this torch module; the
daemon runs its actor from the same safetensors weights without torch (core.policy.PPOPolicy)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from stairway.core.types import ACTION_NAMES


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
            layer(obs_dim, hidden, 2**0.5),
            nn.Tanh(),
            layer(hidden, hidden, 2**0.5),
            nn.Tanh(),
            layer(hidden, n_actions, 0.01),
        )

    def value(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.critic(x).squeeze(-1)
        return out

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.actor(x)
        return out


def ppo_from_tensors(tensors: Mapping[str, Any], obs_dim: int, hidden: int) -> ActorCritic:
    """Rebuild the network from checkpoint tensors; strict, so a missing or extra tensor fails."""
    net = ActorCritic(obs_dim, hidden=hidden)
    net.load_state_dict(torch_tensors(tensors), strict=True)
    return net


def torch_tensors(tensors: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Checkpoint tensors (numpy arrays, as core.checkpoint reads them) as torch tensors."""
    return {k: v if isinstance(v, torch.Tensor) else torch.from_numpy(np.array(v)) for k, v in tensors.items()}
