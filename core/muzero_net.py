"""MuZero's three networks (issue 11 §2) as the search runs them: numba kernels over the
weights read from the safetensors file, no torch. The same networks as a torch module, which
the trainer optimises, are core.muzero_model.MuZeroNet (one tensor layout: TENSOR_NAMES).

- representation h: observation -> latent (obs -> hidden -> latent, ReLU), min-max scaled
  to [0, 1] per latent vector as in MuZero. The observation is Stairway's feature vector
  (lagged returns, volatility, trend and position features), which already summarises the
  recent window, so the representation is an MLP, not the seed's temporal conv net.
- the state the search carries is that learned latent followed by the position, one-hot
  (flat, long, short; POSITION_SLOTS): read from the observation's ``is_long``/``is_short``
  features at the root and moved by the action's known effect (target-position semantics,
  core.execution.target_units) at each step of the model. What an order does to our position
  is not something to learn: learned, it was blurred after one step, every position's value
  looked like its costs and the search never traded (issue 20). The market's part stays
  learned.
- dynamics g: latent -> hidden -> next latent (min-max scaled): the market's next state, the
  same whatever we do (our orders do not move it); the next position from the action;
- reward, factored (layout 2): r(s, a) = dir(a) * mu(latent) - cost[position, a], where
  dir is the position after the action (+1 long, -1 short, 0 flat), mu the market's expected
  next-bar return (a linear head on the dynamics' hidden layer, in reward units: pips per
  traded unit times the reward scale) and cost a learned table of what each change of
  position costs. mu learns from every step's realised return, whatever was held; a reward
  head learned from the rewards alone saw nothing while flat and, one step on, could not tell
  the actions apart (issue 20);
- value, of a state: its position held over the best of the horizons ``td_steps``
  (h_1 .. h_H bars), V(s) = max_h dir(position) * M_h(latent) - cost[position, CLOSE], with
  M_h the market's expected discounted return over the next h bars (the dynamics hidden
  layer's outputs after mu), learned like mu from every step's realised returns. It is the
  value of "hold what you have, then close at the horizon that pays best" (a rollout's base
  policy, chosen at the node): the search improves on it one decision at a time. One horizon
  of a day could not see an intraday edge: a morning rise and an afternoon fall cancel over
  24 bars, so a long at 08:00 was worth less than its costs. Checkpoints without
  ``horizons`` in their arch have one (H = 1). The categorical
  value of the policy (layout 1), learned from the positions the policy happened to visit,
  did not depend on the market state: each fold's policy played one action throughout;
- prediction f: state -> hidden -> policy logits (the prior).

Measured on the planted markets (bench/learner_power.py --quick, trend and mean reversion,
seeds 0 and 1, OOS Sharpe): layout 1 7.02 / 0.27 / 3.43 / 3.83, layout 2 10.23 / 1.28 /
8.19 / 8.34.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numba
import numpy as np

from stairway.core.weights import as_numpy

POSITION_SLOTS = 3  # the state's last entries: flat, long, short (one-hot)
LAYOUT = 2  # checkpoints record it (arch["layout"]); layout 1 learned reward and value per action
TENSOR_NAMES = (
    "repr.0.weight",
    "repr.0.bias",
    "repr.2.weight",
    "repr.2.bias",
    "dyn.0.weight",
    "dyn.0.bias",
    "dyn_state.weight",
    "dyn_state.bias",
    "dyn_market.weight",
    "dyn_market.bias",
    "cost",
    "pred.0.weight",
    "pred.0.bias",
    "pred_policy.weight",
    "pred_policy.bias",
)


def state_dim(arch: dict[str, Any]) -> int:
    """The size of the state the search carries: the learned latent and the position."""
    return int(arch["latent"]) + POSITION_SLOTS


def horizons(arch: dict[str, Any]) -> int:
    """H, the number of value horizons (M_1 .. M_H) of this architecture (1 where it names
    none); ValueError unless ``horizons`` is a list of 1 to 8 whole numbers of bars >= 1."""
    hs = arch.get("horizons", [1])
    if not (isinstance(hs, list) and 1 <= len(hs) <= 8 and all(type(h) is int and h >= 1 for h in hs)):
        raise ValueError(f"horizons = {hs!r}: a list of 1 to 8 whole numbers of bars >= 1")
    return len(hs)


def muzero_shapes(obs_dim: int, arch: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """Every tensor of core.muzero_model.MuZeroNet of this architecture, with its shape."""
    lat, hid, n_act = int(arch["latent"]), int(arch["hidden"]), int(arch["n_actions"])
    st = lat + POSITION_SLOTS
    layers = {
        "repr.0": (obs_dim, hid),
        "repr.2": (hid, lat),
        "dyn.0": (lat, hid),
        "dyn_state": (hid, lat),
        "dyn_market": (hid, 1 + horizons(arch)),
        "pred.0": (st, hid),
        "pred_policy": (hid, n_act),
    }
    shapes: dict[str, tuple[int, ...]] = {}
    for name, (i, o) in layers.items():
        shapes[f"{name}.weight"], shapes[f"{name}.bias"] = (o, i), (o,)
    shapes["cost"] = (POSITION_SLOTS * n_act,)
    return shapes


def numpy_weights(tensors: Mapping[str, Any], dtype: type = np.float32) -> tuple[np.ndarray, ...]:
    """The weights (torch tensors or numpy arrays) for the kernels, in TENSOR_NAMES order:
    contiguous arrays of ``dtype`` (float32 for inference: the precision the network was
    trained in, twice the SIMD width of float64), each matrix transposed to (in, out) so a
    layer is a sum of the input's columns scaled, vectorised over the outputs."""

    def arr(x: Any) -> np.ndarray:
        a = as_numpy(x)
        out: np.ndarray = a.T if a.ndim == 2 else a
        return out

    return tuple(np.ascontiguousarray(arr(tensors[n]), dtype=dtype) for n in TENSOR_NAMES)


# -- numba inference ------------------------------------------------------------------------
@numba.njit(cache=True, fastmath=True, nogil=True)
def _dense(wt: np.ndarray, b: np.ndarray, x: np.ndarray, out: np.ndarray, relu: bool) -> None:
    """out = b + x @ wt (wt is the layer's weight transposed: (in, out)), ReLU if asked."""
    n = out.shape[0]
    for i in range(n):
        out[i] = b[i]
    for j in range(wt.shape[0]):
        xj = x[j]
        for i in range(n):
            out[i] += wt[j, i] * xj
    if relu:
        for i in range(n):
            if out[i] < 0.0:
                out[i] = 0.0


@numba.njit(cache=True, nogil=True)
def _minmax_inplace(s: np.ndarray, n: int) -> None:
    """Min-max scale s[:n] to [0, 1]."""
    lo, hi = s[0], s[0]
    for i in range(n):
        lo = min(lo, s[i])
        hi = max(hi, s[i])
    d = max(hi - lo, 1e-5)
    for i in range(n):
        s[i] = (s[i] - lo) / d


@numba.njit(cache=True, nogil=True)
def _set_position(s: np.ndarray, n: int, slot: int) -> None:
    """s[n:n+3] = one-hot of ``slot`` (0 flat, 1 long, 2 short)."""
    for i in range(POSITION_SLOTS):
        s[n + i] = 1.0 if i == slot else 0.0


@numba.njit(cache=True, nogil=True)
def position_slot(is_long: float, is_short: float) -> int:
    """The position's slot from the observation's is_long / is_short features."""
    if is_long > 0.5:
        return 1
    if is_short > 0.5:
        return 2
    return 0


@numba.njit(cache=True, nogil=True)
def next_slot(slot: int, a: int) -> int:
    """The action's effect on the position (core.execution.target_units: BUY long, SELL
    short, CLOSE flat, HOLD unchanged)."""
    if a == 1:
        return 1
    if a == 2:
        return 2
    if a == 3:
        return 0
    return slot


@numba.njit(cache=True, nogil=True)
def slot_direction(slot: int) -> float:
    """The position's sign: +1 long, -1 short, 0 flat."""
    if slot == 1:
        return 1.0
    if slot == 2:
        return -1.0
    return 0.0


@numba.njit(cache=True, nogil=True)
def state_slot(s: np.ndarray, lat: int) -> int:
    """The position slot of a state (its one-hot after the latent)."""
    slot = 0
    for i in range(POSITION_SLOTS):
        if s[lat + i] > 0.5:
            slot = i
    return slot


@numba.njit(cache=True, nogil=True)
def represent(w: tuple[np.ndarray, ...], obs: np.ndarray, hid: np.ndarray, out: np.ndarray) -> None:
    """out (the state): the latent, then the position read from the observation's
    position features (core.position: ... is_long, is_short, has_position, last)."""
    n = w[3].shape[0]
    _dense(w[0], w[1], obs, hid, True)
    _dense(w[2], w[3], hid, out[:n], False)
    _minmax_inplace(out, n)
    d = obs.shape[0]
    _set_position(out, n, position_slot(obs[d - 3], obs[d - 2]))


@numba.njit(cache=True, nogil=True)
def market_step(
    w: tuple[np.ndarray, ...], z: np.ndarray, hid: np.ndarray, out_latent: np.ndarray, mu: np.ndarray
) -> None:
    """The market's step from latent ``z``, the same for every action: the next latent
    (min-max scaled) into ``out_latent`` and (mu, M_1 .. M_H) into ``mu``."""
    _dense(w[4], w[5], z, hid, True)
    _dense(w[6], w[7], hid, out_latent, False)
    _minmax_inplace(out_latent, out_latent.shape[0])
    _dense(w[8], w[9], hid, mu, False)


@numba.njit(cache=True, nogil=True)
def step_reward(w: tuple[np.ndarray, ...], slot: int, a: int, mu: float) -> float:
    """The reward of action ``a`` from position ``slot``: dir(position after a) * mu - cost[slot, a]."""
    n_actions = w[14].shape[0]  # pred_policy.bias
    return float(slot_direction(next_slot(slot, a)) * mu - w[10][slot * n_actions + a])


@numba.njit(cache=True, nogil=True)
def hold_value(w: tuple[np.ndarray, ...], slot: int, market: np.ndarray) -> float:
    """A state's value: its position held over the best horizon, max_h dir * M_h -
    cost[slot, CLOSE] (``market``: mu, M_1 .. M_H; flat holds nothing)."""
    n_actions = w[14].shape[0]
    d = slot_direction(slot)
    best = 0.0
    if d != 0.0:
        best = d * market[1]
        for j in range(2, market.shape[0]):
            best = max(best, d * market[j])
    return float(best - w[10][slot * n_actions + 3])


@numba.njit(cache=True, nogil=True)
def child_state(s: np.ndarray, a: int, next_latent: np.ndarray, out_state: np.ndarray) -> None:
    """The state after action ``a`` from ``s``: the market's next latent (market_step of s's
    latent) and the position the action leaves."""
    lat = next_latent.shape[0]
    for i in range(lat):
        out_state[i] = next_latent[i]
    _set_position(out_state, lat, next_slot(state_slot(s, lat), a))


@numba.njit(cache=True, nogil=True)
def predict(w: tuple[np.ndarray, ...], s: np.ndarray, hid: np.ndarray, policy_logits: np.ndarray) -> None:
    """The policy's logits (the prior) of state ``s``."""
    _dense(w[11], w[12], s, hid, True)
    _dense(w[13], w[14], hid, policy_logits, False)
