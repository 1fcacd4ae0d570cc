"""MuZero's networks as a torch module (the trainer optimises it; the search runs the same
weights through core.muzero_net's kernels), the torch scaling transform and the two-hot
support targets."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from stairway.core.muzero_net import EPS, POSITION_SLOTS
from stairway.core.ppo_net import torch_tensors


def scale(x: torch.Tensor) -> torch.Tensor:
    """MuZero's h (core.muzero_net.scale for numpy)."""
    return torch.sign(x) * (torch.sqrt(torch.abs(x) + 1.0) - 1.0) + EPS * x


def to_support(x: torch.Tensor, support: int) -> torch.Tensor:
    """Two-hot targets over the integer support points of the scaled values."""
    y = scale(x).clamp(-support, support)
    lo = y.floor()
    frac = y - lo
    out = torch.zeros(*x.shape, 2 * support + 1, dtype=x.dtype)
    idx = (lo + support).long()
    out.scatter_(-1, idx.unsqueeze(-1), (1.0 - frac).unsqueeze(-1))
    out.scatter_add_(-1, (idx + 1).clamp(max=2 * support).unsqueeze(-1), frac.unsqueeze(-1))
    return out


def from_support(logits: torch.Tensor, support: int) -> torch.Tensor:
    """Expected value of a categorical over the support, unscaled (torch, for training)."""
    pts = torch.arange(-support, support + 1, dtype=logits.dtype)
    y = (torch.softmax(logits, -1) * pts).sum(-1)
    a = (torch.sqrt(1.0 + 4.0 * EPS * (y.abs() + 1.0 + EPS)) - 1.0) / (2.0 * EPS)
    return torch.sign(y) * (a * a - 1.0)


def _minmax(s: torch.Tensor) -> torch.Tensor:
    lo = s.min(-1, keepdim=True).values
    hi = s.max(-1, keepdim=True).values
    return (s - lo) / (hi - lo).clamp(min=1e-5)


class MuZeroNet(nn.Module):
    def __init__(self, obs_dim: int, n_actions: int, latent: int = 32, hidden: int = 64, support: int = 300) -> None:
        super().__init__()
        self.obs_dim, self.n_actions, self.latent, self.hidden, self.support = (
            obs_dim,
            n_actions,
            latent,
            hidden,
            support,
        )
        k = 2 * support + 1
        st = latent + POSITION_SLOTS
        self.repr = nn.Sequential(nn.Linear(obs_dim, hidden), nn.ReLU(), nn.Linear(hidden, latent))
        self.dyn = nn.Sequential(nn.Linear(st + n_actions, hidden), nn.ReLU())
        self.dyn_state = nn.Linear(hidden, latent)
        self.dyn_reward = nn.Linear(hidden, k)
        self.pred = nn.Sequential(nn.Linear(st, hidden), nn.ReLU())
        self.pred_policy = nn.Linear(hidden, n_actions)
        self.pred_value = nn.Linear(hidden, k)
        # position slot (0 flat, 1 long, 2 short) after each action from each slot: HOLD keeps
        # it, BUY long, SELL short, CLOSE flat (core.muzero_net.next_slot)
        self._next: torch.Tensor
        self.register_buffer("_next", torch.tensor([[0, 1, 2, 0], [1, 1, 2, 0], [2, 1, 2, 0]]), persistent=False)

    def represent(self, obs: torch.Tensor) -> torch.Tensor:
        """The state: the learned latent, then the position one-hot read from the
        observation's is_long / is_short features (the last three are is_long, is_short,
        has_position)."""
        slot = torch.where(obs[:, -3] > 0.5, 1, torch.where(obs[:, -2] > 0.5, 2, 0))
        return torch.cat([_minmax(self.repr(obs)), self._onehot(slot)], -1)

    def _onehot(self, slot: torch.Tensor) -> torch.Tensor:
        return nn.functional.one_hot(slot, POSITION_SLOTS).to(torch.float32)

    def dynamics(self, s: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.dyn(torch.cat([s, nn.functional.one_hot(a, self.n_actions).float()], -1))
        slot = self._next[s[:, self.latent :].argmax(-1), a]
        return torch.cat([_minmax(self.dyn_state(x)), self._onehot(slot)], -1), self.dyn_reward(x)

    def predict(self, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.pred(s)
        return self.pred_policy(y), self.pred_value(y)

    def arch(self) -> dict[str, Any]:
        return {
            "kind": "muzero",
            "latent": self.latent,
            "hidden": self.hidden,
            "support": self.support,
            "n_actions": self.n_actions,
        }


def muzero_from_tensors(tensors: Mapping[str, Any], obs_dim: int, arch: dict[str, Any]) -> MuZeroNet:
    net = MuZeroNet(obs_dim, int(arch["n_actions"]), int(arch["latent"]), int(arch["hidden"]), int(arch["support"]))
    net.load_state_dict(torch_tensors(tensors), strict=True)
    return net
