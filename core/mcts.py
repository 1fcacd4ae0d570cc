"""MuZero's search (issue 11 §3): pUCT over the learned model, one numba kernel per decision.

The tree lives in arrays allocated once per policy (``Tree``) and reused: per node its visit
count, value sum, reward, latent state, the priors of its children and their indices. A
search of S simulations from the root:
  1. root: representation(obs) -> state; prediction -> priors (optionally mixed with
     Dirichlet noise: self-play only, never in the daemon); the state's value (the held
     position's, core.muzero_net.hold_value);
  2. each simulation descends by pUCT, score = Q_norm(s, a) + c_puct * P(s, a) *
     sqrt(max(N(s), 1)) / (1 + N(s, a)), Q(s, a) = r + gamma * V(child) min-max normalised
     over the tree (unvisited: 0), ties to the lowest action index;
  3. at the first unexpanded edge: the child state (the parent's market step, taken once per
     node when it was expanded, and the position the action leaves) and the factored reward
     (core.muzero_net); prediction -> its priors; its own market step and its value;
  4. backup: G = value, then for each node up the path: N += 1, W += G, G = r + gamma * G.
The visit counts of the root's children are the result. Deterministic: no randomness
inside the kernel (noise is passed in).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

from stairway.core.muzero_net import (
    POSITION_SLOTS,
    child_state,
    hold_value,
    market_step,
    predict,
    represent,
    state_slot,
    step_reward,
)


@dataclass
class Tree:
    """Preallocated search arrays for ``sims`` simulations (at most sims + 1 nodes)."""

    visits: np.ndarray
    value_sum: np.ndarray
    reward: np.ndarray
    latent: np.ndarray
    prior: np.ndarray
    child: np.ndarray
    path: np.ndarray
    # working arrays: per node the market's step from its latent (the next latent; mu, M_1..M_H),
    # taken once for all its children; the hidden layer; the policy logits
    scratch: tuple[np.ndarray, ...]

    @classmethod
    def allocate(
        cls,
        sims: int,
        n_actions: int,
        obs_dim: int,
        latent: int,
        hidden: int,
        dtype: type = np.float32,
        horizons: int = 1,
    ) -> Tree:
        """Network activations in ``dtype`` (the weights' type); visit and value statistics in
        float64. ``latent``: the learned latent's size (the state adds the position);
        ``horizons``: H, the value's horizons (core.muzero_net.horizons)."""
        n = sims + 1
        latent += POSITION_SLOTS
        scratch: tuple[np.ndarray, ...] = (
            np.zeros((n, latent - POSITION_SLOTS), dtype),
            np.zeros((n, 1 + horizons), dtype),
            np.zeros(hidden, dtype),
            np.zeros(n_actions, dtype),
        )
        return cls(
            np.zeros(n, np.int64),
            np.zeros(n),
            np.zeros(n),
            np.zeros((n, latent), dtype),
            np.zeros((n, n_actions)),
            np.full((n, n_actions), -1, np.int64),
            np.zeros(n, np.int64),
            scratch,
        )


@numba.njit(cache=True, nogil=True)
def _expand(
    w: tuple[np.ndarray, ...],
    node: np.ndarray,
    hid: np.ndarray,
    pol: np.ndarray,
    prior: np.ndarray,
    ahead: np.ndarray,
    market: np.ndarray,
) -> float:
    """The node's priors (softmax of the policy logits) into ``prior`` and its market step
    (core.muzero_net.market_step: the next latent into ``ahead``, mu and M into ``market``);
    returns its value, the held position's."""
    predict(w, node, hid, pol)
    m = pol.max()
    z = 0.0
    for a in range(pol.shape[0]):
        prior[a] = math.exp(pol[a] - m)
        z += prior[a]
    for a in range(pol.shape[0]):
        prior[a] /= z
    lat = ahead.shape[0]
    market_step(w, node[:lat], hid, ahead, market)
    return hold_value(w, state_slot(node, lat), market)


@numba.njit(cache=True, nogil=True)
def search(
    w: tuple[np.ndarray, ...],
    obs: np.ndarray,
    sims: int,
    c_puct: float,
    gamma: float,
    noise: np.ndarray,
    noise_frac: float,
    root_min: int,
    visits: np.ndarray,
    value_sum: np.ndarray,
    reward: np.ndarray,
    latent: np.ndarray,
    prior: np.ndarray,
    child: np.ndarray,
    path: np.ndarray,
    ahead: np.ndarray,
    market: np.ndarray,
    hid: np.ndarray,
    pol: np.ndarray,
) -> int:
    """Run ``sims`` simulations; returns the number of nodes used. Root visit counts per
    action are visits[child[0, a]] (0 where child[0, a] < 0). With ``root_min`` > 0, the
    root's least visited action (lowest index on ties) is taken while it has fewer than
    ``root_min`` visits, so every action's Q is measured (forced root playouts)."""
    n_actions = prior.shape[1]
    visits[:] = 0
    value_sum[:] = 0.0
    reward[:] = 0.0
    child[:, :] = -1
    represent(w, obs, hid, latent[0])
    lat = ahead.shape[1]
    _expand(w, latent[0], hid, pol, prior[0], ahead[0], market[0])
    if noise_frac > 0.0:
        for a in range(n_actions):
            prior[0, a] = (1.0 - noise_frac) * prior[0, a] + noise_frac * noise[a]
    n_nodes = 1
    q_min, q_max = np.inf, -np.inf
    for _ in range(sims):
        node, depth = 0, 0
        path[0] = 0
        while True:
            best_a, best = 0, -np.inf
            if node == 0 and root_min > 0:  # forced root visits: every action searched root_min times
                least = root_min
                for a in range(n_actions):
                    c = child[0, a]
                    nv = visits[c] if c >= 0 else 0
                    if nv < least:
                        least, best_a, best = nv, a, np.inf
            sq = math.sqrt(max(visits[node], 1))
            for a in range(n_actions if best < np.inf else 0):
                c = child[node, a]
                q = 0.0
                nv = 0
                if c >= 0 and visits[c] > 0:
                    nv = visits[c]
                    q = reward[c] + gamma * value_sum[c] / nv
                    if q_max > q_min:
                        q = (q - q_min) / (q_max - q_min)
                    else:
                        q = 0.0
                score = q + c_puct * prior[node, a] * sq / (1.0 + nv)
                if score > best:
                    best, best_a = score, a
            c = child[node, best_a]
            if c < 0:
                c = n_nodes
                n_nodes += 1
                child[node, best_a] = c
                reward[c] = step_reward(w, state_slot(latent[node], lat), best_a, market[node, 0])
                child_state(latent[node], best_a, ahead[node], latent[c])
                g = _expand(w, latent[c], hid, pol, prior[c], ahead[c], market[c])
                depth += 1
                path[depth] = c
                break
            depth += 1
            path[depth] = c
            node = c
        # backup from the new leaf to the root
        for k in range(depth, -1, -1):
            nd = path[k]
            visits[nd] += 1
            value_sum[nd] += g
            if nd != 0:
                q = reward[nd] + gamma * value_sum[nd] / visits[nd]
                q_min = min(q_min, q)
                q_max = max(q_max, q)
            g = reward[nd] + gamma * g
    return n_nodes


@numba.njit(cache=True, nogil=True)
def improved_policy(
    prior: np.ndarray,
    visits: np.ndarray,
    value_sum: np.ndarray,
    reward: np.ndarray,
    child: np.ndarray,
    n_nodes: int,
    gamma: float,
    c_visit: float,
    c_scale: float,
    out: np.ndarray,
) -> None:
    """Gumbel MuZero's improved policy at the root: softmax(log prior + sigma(q)), q the root
    children's Q (unvisited: the root's value, "completed"), min-max normalised over every
    Q in the tree, sigma(q) = (c_visit + max visits) * c_scale * q."""
    n_actions = prior.shape[0]
    lo, hi = np.inf, -np.inf
    for c in range(1, n_nodes):
        if visits[c] > 0:
            q = reward[c] + gamma * value_sum[c] / visits[c]
            lo = min(lo, q)
            hi = max(hi, q)
    v_root = value_sum[0] / max(visits[0], 1)
    most = 0
    for a in range(n_actions):
        c = child[0, a]
        if c >= 0 and visits[c] > most:
            most = visits[c]
    m = -np.inf
    for a in range(n_actions):
        c = child[0, a]
        q = reward[c] + gamma * value_sum[c] / visits[c] if c >= 0 and visits[c] > 0 else v_root
        qn = (q - lo) / (hi - lo) if hi > lo else 0.0
        out[a] = math.log(max(prior[a], 1e-12)) + (c_visit + most) * c_scale * qn
        m = max(m, out[a])
    z = 0.0
    for a in range(n_actions):
        out[a] = math.exp(out[a] - m)
        z += out[a]
    for a in range(n_actions):
        out[a] /= z


@numba.njit(cache=True, nogil=True)
def _one_root(
    w: tuple[np.ndarray, ...],
    obs: np.ndarray,
    sims: int,
    c_puct: float,
    gamma: float,
    noise: np.ndarray,
    noise_frac: float,
    root_min: int,
    c_visit: float,
    c_scale: float,
    latent_dim: int,
    hidden: int,
    out_visits: np.ndarray,
    out_values: np.ndarray,
    out_policy: np.ndarray,
    b: int,
) -> None:
    """Root b of a batch: its own tree, its visits, value and improved policy
    (``latent_dim``: the learned latent's size; the state adds the position)."""
    n_actions = out_visits.shape[1]
    latent_dim += POSITION_SLOTS
    n = sims + 1
    dt = w[0].dtype
    visits = np.zeros(n, np.int64)
    value_sum = np.zeros(n)
    reward = np.zeros(n)
    latent = np.zeros((n, latent_dim), dt)
    prior = np.zeros((n, n_actions))
    child = np.full((n, n_actions), -1, np.int64)
    path = np.zeros(n, np.int64)
    n_nodes = search(
        w,
        obs[b],
        sims,
        c_puct,
        gamma,
        noise[b],
        noise_frac,
        root_min,
        visits,
        value_sum,
        reward,
        latent,
        prior,
        child,
        path,
        np.zeros((n, latent_dim - POSITION_SLOTS), dt),
        np.zeros((n, w[9].shape[0]), dt),
        np.zeros(hidden, dt),
        np.zeros(n_actions, dt),
    )
    for a in range(n_actions):
        c = child[0, a]
        out_visits[b, a] = visits[c] if c >= 0 else 0
    out_values[b] = value_sum[0] / max(visits[0], 1)
    raw = prior[0].copy()
    if 0.0 < noise_frac < 1.0:  # undo the root noise: the target is the network's prior, improved
        for a in range(n_actions):
            raw[a] = max((prior[0, a] - noise_frac * noise[b, a]) / (1.0 - noise_frac), 0.0)
    improved_policy(raw, visits, value_sum, reward, child, n_nodes, gamma, c_visit, c_scale, out_policy[b])


@numba.njit(cache=True, nogil=True, parallel=True)
def search_batch(
    w: tuple[np.ndarray, ...],
    obs: np.ndarray,
    sims: int,
    c_puct: float,
    gamma: float,
    noise: np.ndarray,
    noise_frac: float,
    root_min: int,
    c_visit: float,
    c_scale: float,
    latent_dim: int,
    hidden: int,
    out_visits: np.ndarray,
    out_values: np.ndarray,
    out_policy: np.ndarray,
) -> None:
    """``search`` from each row of ``obs`` (B, obs_dim), the roots spread over numba's
    threads, each with its own tree: root visit counts into ``out_visits`` (B, A) and root
    values into ``out_values`` (B,), the improved policy (``improved_policy``, from the
    network's prior without the noise) into ``out_policy`` (B, A). Row b gives exactly what
    ``search`` gives for it alone (nothing is shared between roots)."""
    for b in numba.prange(obs.shape[0]):
        _one_root(
            w,
            obs,
            sims,
            c_puct,
            gamma,
            noise,
            noise_frac,
            root_min,
            c_visit,
            c_scale,
            latent_dim,
            hidden,
            out_visits,
            out_values,
            out_policy,
            b,
        )


@numba.njit(cache=True, nogil=True)
def search_batch_serial(
    w: tuple[np.ndarray, ...],
    obs: np.ndarray,
    sims: int,
    c_puct: float,
    gamma: float,
    noise: np.ndarray,
    noise_frac: float,
    root_min: int,
    c_visit: float,
    c_scale: float,
    latent_dim: int,
    hidden: int,
    out_visits: np.ndarray,
    out_values: np.ndarray,
    out_policy: np.ndarray,
) -> None:
    """``search_batch`` on one thread: for small batches (self-play's few sessions), where
    handing 16 roots to the thread pool costs more than it saves, and badly so when other
    processes hold the cores (a 40-s training took 570 s beside another)."""
    for b in range(obs.shape[0]):
        _one_root(
            w,
            obs,
            sims,
            c_puct,
            gamma,
            noise,
            noise_frac,
            root_min,
            c_visit,
            c_scale,
            latent_dim,
            hidden,
            out_visits,
            out_values,
            out_policy,
            b,
        )


def root_visits(tree: Tree, n_actions: int) -> np.ndarray:
    c = tree.child[0]
    return np.array([tree.visits[c[a]] if c[a] >= 0 else 0 for a in range(n_actions)], dtype=np.int64)


def python_search(
    net: Any,
    obs: np.ndarray,
    sims: int,
    c_puct: float = 1.25,
    gamma: float = 0.997,
    noise: np.ndarray | None = None,
    noise_frac: float = 0.0,
    root_min: int = 0,
) -> np.ndarray:
    """The same search in plain Python on the torch module (dict nodes): the readable
    reference the kernel is tested against, and the baseline of bench/mcts.py."""
    import torch

    n_actions = net.n_actions
    dtype = next(net.parameters()).dtype
    with torch.inference_mode():

        def expand(s: Any) -> tuple[list[float], float]:
            pl, v = net.predict(s)
            return torch.softmax(pl[0], 0).tolist(), float(v[0])

        root = {"s": net.represent(torch.as_tensor(obs, dtype=dtype)[None]), "N": 0, "W": 0.0, "r": 0.0, "kids": {}}
        root["P"], _ = expand(root["s"])
        if noise_frac > 0 and noise is not None:
            root["P"] = [(1 - noise_frac) * p + noise_frac * float(x) for p, x in zip(root["P"], noise)]
        qmin, qmax = math.inf, -math.inf
        for _ in range(sims):
            node, path = root, [root]
            while True:
                sq = math.sqrt(max(node["N"], 1))
                best, best_a = -math.inf, 0
                if node is root and root_min > 0:
                    counts = [root["kids"][a]["N"] if a in root["kids"] else 0 for a in range(n_actions)]
                    if min(counts) < root_min:
                        best, best_a = math.inf, counts.index(min(counts))
                for a in range(n_actions if best < math.inf else 0):
                    kid = node["kids"].get(a)
                    q, nv = 0.0, 0
                    if kid is not None and kid["N"] > 0:
                        nv = kid["N"]
                        q = kid["r"] + gamma * kid["W"] / nv
                        q = (q - qmin) / (qmax - qmin) if qmax > qmin else 0.0
                    score = q + c_puct * node["P"][a] * sq / (1 + nv)
                    if score > best:
                        best, best_a = score, a
                kid = node["kids"].get(best_a)
                if kid is None:
                    s2, r = net.dynamics(node["s"], torch.tensor([best_a]))
                    kid = {"s": s2, "N": 0, "W": 0.0, "r": float(r[0]), "kids": {}}
                    kid["P"], g = expand(s2)
                    node["kids"][best_a] = kid
                    path.append(kid)
                    break
                path.append(kid)
                node = kid
            for nd in reversed(path):
                nd["N"] += 1
                nd["W"] += g
                if nd is not root:
                    q = nd["r"] + gamma * nd["W"] / nd["N"]
                    qmin, qmax = min(qmin, q), max(qmax, q)
                g = nd["r"] + gamma * g
        return np.array([root["kids"][a]["N"] if a in root["kids"] else 0 for a in range(n_actions)], dtype=np.int64)
