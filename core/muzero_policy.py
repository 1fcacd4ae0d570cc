"""MCTS inference for a MuZero checkpoint (issue 11 §3/§5): the Policy the daemon, the gates
and the evaluation run, built by core.policies.load_policy from the checkpoint's ``arch``.

Settings (``arch["inference"]``): simulations 15, c_puct 1.25, discount 0.997, temperature
0 (the most visited action, as MuZero acts at evaluation; T > 0 draws from the root visit
counts raised to 1/T with a generator seeded by ``seed``), no root noise (self-play only).
Confidence is the chosen action's share of the root visits. ``reset`` re-seeds the
generator, so a run's decisions depend only on its observations.

With ``act = "improved"`` (what the trainer writes since issue 20) the search first visits
every root action ``root_min_visits`` times (2), then the action is the arg-max of Gumbel
MuZero's improved policy, softmax(log prior + (c_visit + max visits) c_scale q_norm), which
weighs the measured Q of each action against the prior: with 15 simulations the visit counts
are near uniform (4, 4, 3, 4) and their arg-max mostly a tie; the improved policy is not.
Confidence is the improved policy's probability of the chosen action.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from stairway.core.mcts import Tree, root_visits, search, search_batch, search_batch_serial
from stairway.core.muzero_net import horizons, numpy_weights
from stairway.core.policy import NO_CARD

# a checkpoint that names no temperature acts greedily on the visits (MuZero's evaluation)
# (checkpoints from before issue 20 name neither "act" nor "root_min_visits": they act on visits)
INFERENCE_DEFAULTS = {
    "simulations": 15,
    "c_puct": 1.25,
    "discount": 0.997,
    "temperature": 0.0,
    "seed": 0,
    "act": "visits",
    "root_min_visits": 0,
    "c_visit": 50.0,
    "c_scale": 0.1,
}


PARALLEL_ROOTS = 8  # a batch this large is spread over numba's threads (self-play, reanalyse); smaller ones run on one


class MuZeroPolicy:
    kind = "muzero"
    note = ""
    card = NO_CARD

    def __init__(self, tensors: Mapping[str, Any], obs_dim: int, arch: dict[str, Any], sha: str = "") -> None:
        inf = {**INFERENCE_DEFAULTS, **arch.get("inference", {})}
        self.sims, self.c_puct, self.gamma = int(inf["simulations"]), float(inf["c_puct"]), float(inf["discount"])
        self.temperature, self.seed = float(inf["temperature"]), int(inf["seed"])
        self.act_on, self.root_min = str(inf["act"]), int(inf["root_min_visits"])
        self.c_visit, self.c_scale = float(inf["c_visit"]), float(inf["c_scale"])
        if self.act_on not in ("visits", "improved"):
            raise ValueError(f"inference.act = {self.act_on!r}: 'visits' or 'improved'")
        self.n_actions = int(arch["n_actions"])
        self.latent, self.hidden = int(arch["latent"]), int(arch["hidden"])
        self.sha, self.obs_dim = sha, obs_dim
        self.w = numpy_weights(tensors)
        self.tree = Tree.allocate(
            self.sims, self.n_actions, obs_dim, int(arch["latent"]), int(arch["hidden"]), horizons=horizons(arch)
        )
        self._obs = np.zeros(obs_dim, self.w[0].dtype)
        self._noise = np.zeros(self.n_actions)
        self.rng = np.random.default_rng(self.seed)
        self.last_visits = np.zeros(self.n_actions, dtype=np.int64)

    def visits(self, obs: np.ndarray, noise: np.ndarray | None = None, noise_frac: float = 0.0) -> np.ndarray:
        """Root visit counts of one search (``noise``: Dirichlet sample for self-play)."""
        self._obs[:] = obs
        t = self.tree
        search(
            self.w,
            self._obs,
            self.sims,
            self.c_puct,
            self.gamma,
            self._noise if noise is None else noise,
            noise_frac,
            self.root_min,
            t.visits,
            t.value_sum,
            t.reward,
            t.latent,
            t.prior,
            t.child,
            t.path,
            *t.scratch,
        )
        self.last_visits = root_visits(t, self.n_actions)
        return self.last_visits

    def batch_visits(
        self, obs: np.ndarray, noise: np.ndarray | None = None, noise_frac: float = 0.0
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Root visit counts (B, A), root values (B,) and improved policies (B, A; core.mcts.
        improved_policy) of one search per row of ``obs``, in one call spread over numba's
        threads; row b's visits equal ``visits(obs[b], noise[b])``."""
        x = np.ascontiguousarray(obs, dtype=self.w[0].dtype)
        nz = np.zeros((len(x), self.n_actions)) if noise is None else np.ascontiguousarray(noise, dtype=np.float64)
        vis = np.zeros((len(x), self.n_actions), np.int64)
        val = np.zeros(len(x))
        pol = np.zeros((len(x), self.n_actions))
        kernel = search_batch if len(x) >= PARALLEL_ROOTS else search_batch_serial
        kernel(
            self.w,
            x,
            self.sims,
            self.c_puct,
            self.gamma,
            nz,
            noise_frac,
            self.root_min,
            self.c_visit,
            self.c_scale,
            self.latent,
            self.hidden,
            vis,
            val,
            pol,
        )
        return vis, val, pol

    def act(self, obs: np.ndarray) -> tuple[int, float]:
        if self.act_on == "improved":
            vis, _, pol = self.batch_visits(obs[None])
            self.last_visits, p = vis[0], pol[0]
            if self.temperature <= 0.0:
                a = int(p.argmax())
            else:
                q = p ** (1.0 / self.temperature)
                a = int(self.rng.choice(self.n_actions, p=q / q.sum()))
            return a, float(p[a])
        n = self.visits(obs)
        total = n.sum()
        if self.temperature <= 0.0:
            a = int(n.argmax())
        else:
            p = n.astype(np.float64) ** (1.0 / self.temperature)
            a = int(self.rng.choice(self.n_actions, p=p / p.sum()))
        return a, float(n[a] / total)

    def reset(self) -> None:
        self.rng = np.random.default_rng(self.seed)
