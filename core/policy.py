"""Policies as the daemon, the gates and the evaluation run them, without torch: the Policy
protocol, the confidence floor, PPO's greedy inference in numpy, and a scripted policy.

The PPO network is defined once (core.ppo_net, a torch module the trainer optimises); its
actor runs here from the same weights, read from the safetensors file as numpy arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from stairway.core.types import ACTION_NAMES
from stairway.core.weights import numpy_tensors


@dataclass(frozen=True)
class ModelCard:
    """What a checkpoint records of its model besides the weights (core.policies reads it);
    a policy from no checkpoint (scripted, observe-only) has the empty card."""

    created_at: str = ""  # ISO 8601, from the checkpoint's header: the model's age
    validation: dict[str, Any] = field(default_factory=dict)  # the trainer's validation metrics (the live guard)
    safe_f: float | None = None  # its safe-f, where the trainer measured one (execution.safe_f_sizing)
    feature_profile: dict[str, Any] = field(default_factory=dict)  # the training window's features (feature_drift)


NO_CARD = ModelCard()


class Policy(Protocol):
    """What the daemon, the gates and the evaluation need from a policy of any kind: an
    action index and its confidence; ``reset`` drops any state the policy keeps between
    decisions (a reused search tree), so warm-up calls leave nothing behind; ``note`` says
    why the last action was changed, if it was ("" otherwise); ``card`` is what its
    checkpoint records of it."""

    sha: str
    kind: str
    note: str
    card: ModelCard

    def act(self, obs: np.ndarray) -> tuple[int, float]: ...

    def reset(self) -> None: ...


class ConfidenceFloor:
    """The one place where a low-confidence action becomes HOLD, for every policy kind: an
    action other than HOLD whose confidence is below ``min_confidence`` is held, and
    ``note`` says so (the decision row records it). ``min_confidence`` 0 changes nothing."""

    def __init__(self, inner: Policy, min_confidence: float) -> None:
        self.inner, self.min_confidence = inner, float(min_confidence)
        self.kind, self.sha, self.card = inner.kind, inner.sha, inner.card
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
    """Greedy inference of core.ppo_net.ActorCritic's actor: three float32 layers (tanh, tanh,
    linear) as numpy matrix products into pre-allocated buffers; nothing is allocated per
    decision. ``weights``: the network's tensors (a state_dict, or the checkpoint's numpy
    arrays), or the module itself; they are copied, so later training does not move them."""

    kind = "ppo"
    note = ""
    card = NO_CARD

    def __init__(self, weights: Any, sha: str = "") -> None:
        t = numpy_tensors(weights.state_dict() if hasattr(weights, "state_dict") else weights)
        try:
            self._w = [
                (
                    np.ascontiguousarray(t[f"actor.{k}.weight"].T, dtype=np.float32),
                    np.array(t[f"actor.{k}.bias"], dtype=np.float32),
                )
                for k in (0, 2, 4)
            ]
        except KeyError as e:
            raise ValueError(f"expected a 3-layer actor, {e.args[0]} is missing") from None
        self.sha = sha
        self._x = np.zeros((1, self._w[0][0].shape[0]), np.float32)
        self._h1 = np.zeros((1, self._w[0][0].shape[1]), np.float32)
        self._h2 = np.zeros((1, self._w[1][0].shape[1]), np.float32)
        self._out = np.zeros((1, self._w[2][0].shape[1]), np.float32)

    def logits(self, obs: np.ndarray) -> np.ndarray:
        self._x[0, :] = obs
        (w1, b1), (w2, b2), (w3, b3) = self._w
        np.matmul(self._x, w1, out=self._h1)
        np.tanh(np.add(self._h1, b1, out=self._h1), out=self._h1)
        np.matmul(self._h1, w2, out=self._h2)
        np.tanh(np.add(self._h2, b2, out=self._h2), out=self._h2)
        np.matmul(self._h2, w3, out=self._out)
        np.add(self._out, b3, out=self._out)
        out: np.ndarray = self._out[0]
        return out

    def act(self, obs: np.ndarray) -> tuple[int, float]:
        z = self.logits(obs)
        a = int(z.argmax())
        return a, float(1.0 / np.exp(z - z[a]).sum())

    def reset(self) -> None:
        """Stateless: nothing to drop."""


class EnsemblePolicy:
    """Several PPO nets of one architecture, trained with different seeds (a seed ensemble):
    their action probabilities averaged, the most probable action taken; the confidence is
    its averaged probability. Less of one seed's luck in what trades."""

    kind = "ensemble"
    note = ""
    card = NO_CARD

    def __init__(self, members: list[PPOPolicy], sha: str = "") -> None:
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members, self.sha = members, sha
        self._p = np.zeros(members[0]._out.shape[1])
        self._e = np.zeros_like(self._p)

    def act(self, obs: np.ndarray) -> tuple[int, float]:
        p, e = self._p, self._e
        p[:] = 0.0
        for m in self.members:
            z = m.logits(obs)
            np.exp(z - z.max(), out=e)
            p += e / e.sum()
        p /= len(self.members)
        a = int(p.argmax())
        return a, float(p[a])

    def reset(self) -> None:
        """Stateless: nothing to drop."""


class ObserveOnlyPolicy:
    """Stands in for a model when none verifies at start-up (a live daemon): HOLD on every
    bar, with the reason as the note; the daemon streams, records and reconciles, and a
    model published later is swapped in as usual."""

    kind = "none"
    card = NO_CARD
    sha = "none"

    def __init__(self, reason: str) -> None:
        self.reason = reason
        self.note = f"no verified model: observe only ({reason})"

    def act(self, obs: np.ndarray) -> tuple[int, float]:
        return 0, 0.0

    def reset(self) -> None:
        """Stateless: nothing to drop."""


class ScriptedPolicy:
    """Plays a fixed sequence of actions (then HOLD): replays and parity tests."""

    kind = "scripted"
    note = ""
    card = NO_CARD

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


def ppo_shapes(obs_dim: int, hidden: int, n_actions: int = len(ACTION_NAMES)) -> dict[str, tuple[int, ...]]:
    """Every tensor of core.ppo_net.ActorCritic with its shape (the checkpoint must hold exactly these)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for head, out in (("critic", 1), ("actor", n_actions)):
        for k, (i, o) in zip((0, 2, 4), ((obs_dim, hidden), (hidden, hidden), (hidden, out))):
            shapes[f"{head}.{k}.weight"], shapes[f"{head}.{k}.bias"] = (o, i), (o,)
    return shapes
