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
- dynamics g: (state, one-hot action) -> hidden -> next latent (min-max scaled) and a
  reward distribution; the next position from the action;
- prediction f: state -> hidden -> policy logits and a value distribution.

Value and reward are categorical over ``2 * support + 1`` integer points in the scaled space
of MuZero's invertible transform h(x) = sign(x)(sqrt(|x| + 1) - 1) + eps x (eps 0.001):
601 points (support 300) by default, for values in pips.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numba
import numpy as np

from stairway.core.weights import as_numpy

EPS = 0.001
POSITION_SLOTS = 3  # the state's last entries: flat, long, short (one-hot)
TENSOR_NAMES = (
    "repr.0.weight",
    "repr.0.bias",
    "repr.2.weight",
    "repr.2.bias",
    "dyn.0.weight",
    "dyn.0.bias",
    "dyn_state.weight",
    "dyn_state.bias",
    "dyn_reward.weight",
    "dyn_reward.bias",
    "pred.0.weight",
    "pred.0.bias",
    "pred_policy.weight",
    "pred_policy.bias",
    "pred_value.weight",
    "pred_value.bias",
)


def scale(x: Any) -> Any:
    """MuZero's h: compresses large values (floats and numpy arrays; core.muzero_model has
    the torch one)."""
    return np.sign(x) * (np.sqrt(np.abs(x) + 1.0) - 1.0) + EPS * x


@numba.njit(cache=True, nogil=True)
def unscale(y: float) -> float:
    """h^-1 (closed form, MuZero appendix)."""
    s = 1.0 if y > 0 else (-1.0 if y < 0 else 0.0)
    a = (math.sqrt(1.0 + 4.0 * EPS * (abs(y) + 1.0 + EPS)) - 1.0) / (2.0 * EPS)
    return s * (a * a - 1.0)


def state_dim(arch: dict[str, Any]) -> int:
    """The size of the state the search carries: the learned latent and the position."""
    return int(arch["latent"]) + POSITION_SLOTS


def muzero_shapes(obs_dim: int, arch: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """Every tensor of core.muzero_model.MuZeroNet of this architecture, with its shape."""
    lat, hid, n_act = int(arch["latent"]), int(arch["hidden"]), int(arch["n_actions"])
    k = 2 * int(arch["support"]) + 1
    st = lat + POSITION_SLOTS
    layers = {
        "repr.0": (obs_dim, hid),
        "repr.2": (hid, lat),
        "dyn.0": (st + n_act, hid),
        "dyn_state": (hid, lat),
        "dyn_reward": (hid, k),
        "pred.0": (st, hid),
        "pred_policy": (hid, n_act),
        "pred_value": (hid, k),
    }
    shapes: dict[str, tuple[int, ...]] = {}
    for name, (i, o) in layers.items():
        shapes[f"{name}.weight"], shapes[f"{name}.bias"] = (o, i), (o,)
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


@numba.njit(cache=True, fastmath=True, nogil=True)
def expected(logits: np.ndarray, tmp: np.ndarray, support: int) -> float:
    """Softmax expectation over the support points, unscaled (``tmp``: scratch of the
    logits' size and type; the exponentials first, then the two sums, which vectorise)."""
    m = logits.max()
    for i in range(logits.shape[0]):
        tmp[i] = math.exp(logits[i] - m)
    z = tmp.sum()
    y = 0.0
    for i in range(logits.shape[0]):
        y += tmp[i] * (i - support)
    return unscale(y / z)


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
def dynamics(
    w: tuple[np.ndarray, ...],
    s: np.ndarray,
    a: int,
    xin: np.ndarray,
    hid: np.ndarray,
    out_state: np.ndarray,
    reward_logits: np.ndarray,
) -> None:
    n = s.shape[0]
    for i in range(n):
        xin[i] = s[i]
    for i in range(n, xin.shape[0]):
        xin[i] = 0.0
    xin[n + a] = 1.0
    lat = w[7].shape[0]
    slot = 0
    for i in range(POSITION_SLOTS):
        if s[lat + i] > 0.5:
            slot = i
    _dense(w[4], w[5], xin, hid, True)
    _dense(w[6], w[7], hid, out_state[:lat], False)
    _minmax_inplace(out_state, lat)
    _set_position(out_state, lat, next_slot(slot, a))
    _dense(w[8], w[9], hid, reward_logits, False)


@numba.njit(cache=True, nogil=True)
def predict(
    w: tuple[np.ndarray, ...], s: np.ndarray, hid: np.ndarray, policy_logits: np.ndarray, value_logits: np.ndarray
) -> None:
    _dense(w[10], w[11], s, hid, True)
    _dense(w[12], w[13], hid, policy_logits, False)
    _dense(w[14], w[15], hid, value_logits, False)
