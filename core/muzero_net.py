"""MuZero's three networks (issue 11 §2) as the search runs them: numba kernels over the
weights read from the safetensors file, no torch. The same networks as a torch module, which
the trainer optimises, are core.muzero_model.MuZeroNet (one tensor layout: TENSOR_NAMES).

- representation h: observation -> latent (obs -> hidden -> latent, ReLU), min-max scaled
  to [0, 1] per latent vector as in MuZero. The observation is Stairway's feature vector
  (lagged returns, volatility, trend and position features), which already summarises the
  recent window, so the representation is an MLP, not the seed's temporal conv net.
- dynamics g: (latent, one-hot action) -> hidden -> next latent (min-max scaled) and a
  reward distribution;
- prediction f: latent -> hidden -> policy logits and a value distribution.

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


def muzero_shapes(obs_dim: int, arch: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """Every tensor of core.muzero_model.MuZeroNet of this architecture, with its shape."""
    lat, hid, n_act = int(arch["latent"]), int(arch["hidden"]), int(arch["n_actions"])
    k = 2 * int(arch["support"]) + 1
    layers = {
        "repr.0": (obs_dim, hid),
        "repr.2": (hid, lat),
        "dyn.0": (lat + n_act, hid),
        "dyn_state": (hid, lat),
        "dyn_reward": (hid, k),
        "pred.0": (lat, hid),
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
def _minmax_inplace(s: np.ndarray) -> None:
    lo, hi = s[0], s[0]
    for v in s:
        lo = min(lo, v)
        hi = max(hi, v)
    d = max(hi - lo, 1e-5)
    for i in range(s.shape[0]):
        s[i] = (s[i] - lo) / d


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
    _dense(w[0], w[1], obs, hid, True)
    _dense(w[2], w[3], hid, out, False)
    _minmax_inplace(out)


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
    _dense(w[4], w[5], xin, hid, True)
    _dense(w[6], w[7], hid, out_state, False)
    _minmax_inplace(out_state)
    _dense(w[8], w[9], hid, reward_logits, False)


@numba.njit(cache=True, nogil=True)
def predict(
    w: tuple[np.ndarray, ...], s: np.ndarray, hid: np.ndarray, policy_logits: np.ndarray, value_logits: np.ndarray
) -> None:
    _dense(w[10], w[11], s, hid, True)
    _dense(w[12], w[13], hid, policy_logits, False)
    _dense(w[14], w[15], hid, value_logits, False)
