"""MuZero's networks as a torch module (the trainer optimises it; the search runs the same
weights through core.muzero_net's kernels, which say what each part is)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from stairway.core.muzero_net import LAYOUT, POSITION_SLOTS
from stairway.core.ppo_net import torch_tensors


def _minmax(s: torch.Tensor) -> torch.Tensor:
    lo = s.min(-1, keepdim=True).values
    hi = s.max(-1, keepdim=True).values
    return (s - lo) / (hi - lo).clamp(min=1e-5)


class MuZeroNet(nn.Module):
    """Layout 2 (core.muzero_net): action-independent market dynamics, the factored reward
    dir(a) * mu(latent) - cost[position, a], the held position's value max_h dir * M_h(latent)
    - cost[position, CLOSE] over the ``horizons`` (bars; None: one, unnamed, as in checkpoints
    from before horizons)."""

    def __init__(
        self, obs_dim: int, n_actions: int, latent: int = 32, hidden: int = 64, horizons: list[int] | None = None
    ) -> None:
        super().__init__()
        self.obs_dim, self.n_actions, self.latent, self.hidden = obs_dim, n_actions, latent, hidden
        self.horizons = None if horizons is None else [int(h) for h in horizons]
        n_h = 1 if horizons is None else len(horizons)
        st = latent + POSITION_SLOTS
        self.repr = nn.Sequential(nn.Linear(obs_dim, hidden), nn.ReLU(), nn.Linear(hidden, latent))
        self.dyn = nn.Sequential(nn.Linear(latent, hidden), nn.ReLU())
        self.dyn_state = nn.Linear(hidden, latent)
        self.dyn_market = nn.Linear(hidden, 1 + n_h)  # mu (next bar), M_1 .. M_H (the horizons)
        self.cost = nn.Parameter(torch.zeros(POSITION_SLOTS * n_actions))
        self.pred = nn.Sequential(nn.Linear(st, hidden), nn.ReLU())
        self.pred_policy = nn.Linear(hidden, n_actions)
        # position slot (0 flat, 1 long, 2 short) after each action from each slot: HOLD keeps
        # it, BUY long, SELL short, CLOSE flat (core.muzero_net.next_slot); each slot's sign
        self._next: torch.Tensor
        self._dir: torch.Tensor
        self.register_buffer("_next", torch.tensor([[0, 1, 2, 0], [1, 1, 2, 0], [2, 1, 2, 0]]), persistent=False)
        self.register_buffer("_dir", torch.tensor([0.0, 1.0, -1.0]), persistent=False)

    def represent(self, obs: torch.Tensor) -> torch.Tensor:
        """The state: the learned latent, then the position one-hot read from the
        observation's is_long / is_short features (the last three are is_long, is_short,
        has_position)."""
        slot = torch.where(obs[:, -3] > 0.5, 1, torch.where(obs[:, -2] > 0.5, 2, 0))
        return torch.cat([_minmax(self.repr(obs)), self._onehot(slot)], -1)

    def _onehot(self, slot: torch.Tensor) -> torch.Tensor:
        return nn.functional.one_hot(slot, POSITION_SLOTS).to(self.cost.dtype)

    def slot(self, s: torch.Tensor) -> torch.Tensor:
        return s[:, self.latent :].argmax(-1)

    def market(self, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(next latent, mu, M): the market's step, the same for every action; M (batch, H)
        the expected discounted return over each horizon."""
        x = self.dyn(s[:, : self.latent])
        y = self.dyn_market(x)
        return _minmax(self.dyn_state(x)), y[:, 0], y[:, 1:]

    def value(self, s: torch.Tensor) -> torch.Tensor:
        """The held position's value: max_h dir * M_h - cost[position, CLOSE] (flat: 0 - cost)."""
        slot = self.slot(s)
        held = (self.direction(slot)[:, None] * self.market(s)[2]).max(-1).values
        return held - self.cost[slot * self.n_actions + 3]

    def next_slot(self, slot: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return self._next[slot, a]

    def direction(self, slot: torch.Tensor) -> torch.Tensor:
        return self._dir[slot].to(self.cost.dtype)

    def state(self, z: torch.Tensor, slot: torch.Tensor) -> torch.Tensor:
        return torch.cat([z, self._onehot(slot)], -1)

    def dynamics(self, s: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(next state, reward): reward = dir(next position) * mu - cost[position, a]."""
        z, mu, _ = self.market(s)
        slot = self.slot(s)
        nxt = self.next_slot(slot, a)
        return self.state(z, nxt), self.direction(nxt) * mu - self.cost[slot * self.n_actions + a]

    def policy_logits(self, s: torch.Tensor) -> torch.Tensor:
        """The prior's logits of each state."""
        logits: torch.Tensor = self.pred_policy(self.pred(s))
        return logits

    def predict(self, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(policy logits, value) of each state."""
        return self.policy_logits(s), self.value(s)

    def arch(self) -> dict[str, Any]:
        return {
            "kind": "muzero",
            "layout": LAYOUT,
            "latent": self.latent,
            "hidden": self.hidden,
            "n_actions": self.n_actions,
        } | ({} if self.horizons is None else {"horizons": self.horizons})


def muzero_from_tensors(tensors: Mapping[str, Any], obs_dim: int, arch: dict[str, Any]) -> MuZeroNet:
    hs = arch.get("horizons")
    net = MuZeroNet(obs_dim, int(arch["n_actions"]), int(arch["latent"]), int(arch["hidden"]), hs)
    net.load_state_dict(torch_tensors(tensors), strict=True)
    return net
