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
    """What the daemon, the gates and the evaluation need from a policy of any kind: an
    action index and its confidence; ``reset`` drops any state the policy keeps between
    decisions (a reused search tree), so warm-up calls leave nothing behind; ``note`` says
    why the last action was changed, if it was ("" otherwise)."""

    sha: str
    kind: str
    note: str

    def act(self, obs: np.ndarray) -> tuple[int, float]: ...

    def reset(self) -> None: ...


class ConfidenceFloor:
    """The one place where a low-confidence action becomes HOLD, for every policy kind: an
    action other than HOLD whose confidence is below ``min_confidence`` is held, and
    ``note`` says so (the decision row records it). ``min_confidence`` 0 changes nothing."""

    def __init__(self, inner: Policy, min_confidence: float) -> None:
        self.inner, self.min_confidence = inner, float(min_confidence)
        self.kind, self.sha = inner.kind, inner.sha
        self.created_at = getattr(inner, "created_at", "")
        self.note = ""

    def act(self, obs: np.ndarray) -> tuple[int, float]:
        a, c = self.inner.act(obs)
        if a != 0 and c < self.min_confidence:
            self.note = f"{ACTION_NAMES[a]} held: confidence {c:.3f} < min_confidence {self.min_confidence:g}"
            return 0, c
        self.note = ""
        return a, c

    def reset(self) -> None:
        self.inner.reset()
        self.note = ""


class PPOPolicy:
    """Greedy inference for a trained ActorCritic.

    The actor's three layers run as ``addmm`` + ``tanh`` into pre-allocated output tensors
    (what ``nn.Linear`` computes, without the module-call overhead), under inference_mode
    with one intra-op thread. The observation is copied into a pre-allocated input tensor
    that shares memory with a numpy array; nothing is allocated per decision but the result.
    """

    kind = "ppo"
    note = ""

    def __init__(self, net: ActorCritic, sha: str = "") -> None:
        torch.set_num_threads(1)
        self.net = net.eval()
        self.sha = sha
        lin = [m for m in net.actor if isinstance(m, nn.Linear)]
        if len(lin) != 3:
            raise ValueError(f"expected a 3-layer actor, found {len(lin)} linear layers")
        with torch.inference_mode():
            self._w = [(m.bias.detach().clone(), m.weight.detach().t().contiguous()) for m in lin]
            self._x = torch.zeros(1, net.obs_dim)
            self._h1 = torch.zeros(1, lin[0].out_features)
            self._h2 = torch.zeros(1, lin[1].out_features)
            self._out = torch.zeros(1, lin[2].out_features)
        self._xn = self._x.numpy()
        self._outn = self._out.numpy()[0]

    def logits(self, obs: np.ndarray) -> np.ndarray:
        self._xn[0, :] = obs
        (b1, w1), (b2, w2), (b3, w3) = self._w
        with torch.inference_mode():
            torch.tanh(torch.addmm(b1, self._x, w1, out=self._h1), out=self._h1)
            torch.tanh(torch.addmm(b2, self._h1, w2, out=self._h2), out=self._h2)
            torch.addmm(b3, self._h2, w3, out=self._out)
        return self._outn

    def act(self, obs: np.ndarray) -> tuple[int, float]:
        z = self.logits(obs)
        a = int(z.argmax())
        return a, float(1.0 / np.exp(z - z[a]).sum())

    def reset(self) -> None:
        """Stateless: nothing to drop."""


class ScriptedPolicy:
    """Plays a fixed sequence of actions (then HOLD): replays and parity tests."""

    kind = "scripted"
    note = ""

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

    def reset(self) -> None:
        """Back to the first action, observations forgotten (a warm-up call leaves nothing)."""
        self.calls = 0
        self.observations = []


def ppo_from_tensors(tensors: dict[str, torch.Tensor], obs_dim: int, hidden: int) -> ActorCritic:
    """Rebuild the network from checkpoint tensors; strict, so a missing or extra tensor fails."""
    net = ActorCritic(obs_dim, hidden=hidden)
    net.load_state_dict(tensors, strict=True)
    return net
