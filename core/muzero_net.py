"""MuZero's three networks (issue 11 §2), defined once: a torch module the trainer optimises
and numba kernels the search runs on the same weights (read from the safetensors tensors).

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

import numba
import numpy as np
import torch
from torch import nn

EPS = 0.001
TENSOR_NAMES = ("repr.0.weight", "repr.0.bias", "repr.2.weight", "repr.2.bias",
                "dyn.0.weight", "dyn.0.bias", "dyn_state.weight", "dyn_state.bias", "dyn_reward.weight",
                "dyn_reward.bias", "pred.0.weight", "pred.0.bias", "pred_policy.weight", "pred_policy.bias",
                "pred_value.weight", "pred_value.bias")


def scale(x):
    """MuZero's h: compresses large values (works on floats, numpy arrays and tensors)."""
    if isinstance(x, torch.Tensor):
        return torch.sign(x) * (torch.sqrt(torch.abs(x) + 1.0) - 1.0) + EPS * x
    return np.sign(x) * (np.sqrt(np.abs(x) + 1.0) - 1.0) + EPS * x


@numba.njit(cache=True)
def unscale(y: float) -> float:
    """h^-1 (closed form, MuZero appendix)."""
    s = 1.0 if y > 0 else (-1.0 if y < 0 else 0.0)
    a = (math.sqrt(1.0 + 4.0 * EPS * (abs(y) + 1.0 + EPS)) - 1.0) / (2.0 * EPS)
    return s * (a * a - 1.0)


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
        self.obs_dim, self.n_actions, self.latent, self.hidden, self.support = obs_dim, n_actions, latent, hidden, support
        k = 2 * support + 1
        self.repr = nn.Sequential(nn.Linear(obs_dim, hidden), nn.ReLU(), nn.Linear(hidden, latent))
        self.dyn = nn.Sequential(nn.Linear(latent + n_actions, hidden), nn.ReLU())
        self.dyn_state = nn.Linear(hidden, latent)
        self.dyn_reward = nn.Linear(hidden, k)
        self.pred = nn.Sequential(nn.Linear(latent, hidden), nn.ReLU())
        self.pred_policy = nn.Linear(hidden, n_actions)
        self.pred_value = nn.Linear(hidden, k)

    def represent(self, obs: torch.Tensor) -> torch.Tensor:
        return _minmax(self.repr(obs))

    def dynamics(self, s: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.dyn(torch.cat([s, nn.functional.one_hot(a, self.n_actions).float()], -1))
        return _minmax(self.dyn_state(x)), self.dyn_reward(x)

    def predict(self, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.pred(s)
        return self.pred_policy(y), self.pred_value(y)

    def arch(self) -> dict:
        return {"kind": "muzero", "latent": self.latent, "hidden": self.hidden, "support": self.support,
                "n_actions": self.n_actions}


def muzero_from_tensors(tensors: dict[str, torch.Tensor], obs_dim: int, arch: dict) -> MuZeroNet:
    net = MuZeroNet(obs_dim, int(arch["n_actions"]), int(arch["latent"]), int(arch["hidden"]), int(arch["support"]))
    net.load_state_dict(tensors, strict=True)
    return net


def numpy_weights(tensors: dict, dtype=np.float32) -> tuple[np.ndarray, ...]:
    """The weights (torch tensors or numpy arrays) for the kernels, in TENSOR_NAMES order:
    contiguous arrays of ``dtype`` (float32 for inference: the precision the network was
    trained in, twice the SIMD width of float64), each matrix transposed to (in, out) so a
    layer is a sum of the input's columns scaled, vectorised over the outputs."""
    def arr(x):
        x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
        return x.T if x.ndim == 2 else x

    return tuple(np.ascontiguousarray(arr(tensors[n]), dtype=dtype) for n in TENSOR_NAMES)


# -- numba inference ------------------------------------------------------------------------
@numba.njit(cache=True, fastmath=True)
def _dense(wt, b, x, out, relu):
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


@numba.njit(cache=True)
def _minmax_inplace(s):
    lo, hi = s[0], s[0]
    for v in s:
        lo = min(lo, v)
        hi = max(hi, v)
    d = max(hi - lo, 1e-5)
    for i in range(s.shape[0]):
        s[i] = (s[i] - lo) / d


@numba.njit(cache=True, fastmath=True)
def expected(logits, tmp, support):
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


@numba.njit(cache=True)
def represent(w, obs, hid, out):
    _dense(w[0], w[1], obs, hid, True)
    _dense(w[2], w[3], hid, out, False)
    _minmax_inplace(out)


@numba.njit(cache=True)
def dynamics(w, s, a, xin, hid, out_state, reward_logits):
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


@numba.njit(cache=True)
def predict(w, s, hid, policy_logits, value_logits):
    _dense(w[10], w[11], s, hid, True)
    _dense(w[12], w[13], hid, policy_logits, False)
    _dense(w[14], w[15], hid, value_logits, False)
