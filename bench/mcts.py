"""One MuZero decision (15 simulations, batch 1) with the shipped network sizes (latent 32,
hidden 64, 601-point supports): the numba search (core.mcts via MuZeroPolicy.act) next to a
plain-Python pUCT on the torch module, same weights, same observations, one run.

    python bench/mcts.py [--quick]
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch
from common import report

from core.muzero_net import MuZeroNet, from_support  # noqa: E402
from core.muzero_policy import MuZeroPolicy  # noqa: E402

OBS, A, SIMS = 31, 4, 15


def python_search(net: MuZeroNet, obs: np.ndarray, sims: int, c_puct: float = 1.25, gamma: float = 0.997) -> list:
    sup = net.support
    with torch.inference_mode():
        def expand(s):
            pl, vl = net.predict(s)
            return torch.softmax(pl[0], 0).tolist(), float(from_support(vl, sup)[0])

        root = {"s": net.represent(torch.as_tensor(obs, dtype=torch.float32)[None]), "N": 0, "W": 0.0, "r": 0.0,
                "kids": {}}
        root["P"], _ = expand(root["s"])
        qmin, qmax = math.inf, -math.inf
        for _ in range(sims):
            node, path = root, [root]
            while True:
                sq = math.sqrt(max(node["N"], 1))
                best, best_a = -math.inf, 0
                for a in range(A):
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
                    s2, rl = net.dynamics(node["s"], torch.tensor([best_a]))
                    kid = {"s": s2, "N": 0, "W": 0.0, "r": float(from_support(rl, sup)[0]), "kids": {}}
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
        return [root["kids"][a]["N"] if a in root["kids"] else 0 for a in range(A)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    n = 300 if ap.parse_args().quick else 3000
    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = MuZeroNet(OBS, A)
    policy = MuZeroPolicy(net.state_dict(), OBS, net.arch() | {"inference": {"simulations": SIMS}})
    obs = np.random.default_rng(0).normal(size=(n, OBS))
    policy.act(obs[0])  # compile
    same = all(policy.visits(o).tolist() == python_search(net, o, SIMS) for o in obs[:20])
    fast, slow = [], []
    for k in range(n):
        t = time.perf_counter_ns()
        policy.act(obs[k])
        fast.append(time.perf_counter_ns() - t)
        if k < n // 10:
            t = time.perf_counter_ns()
            python_search(net, obs[k], SIMS)
            slow.append(time.perf_counter_ns() - t)
    f50, f99 = (float(np.percentile(fast, q)) / 1e6 for q in (50, 99))
    s50, s99 = (float(np.percentile(slow, q)) / 1e6 for q in (50, 99))
    report("mcts", {"simulations": SIMS, "latent": net.latent, "hidden": net.hidden, "support_points": 2 * net.support + 1,
                    "decisions": n, "numba_p50_ms": round(f50, 3), "numba_p99_ms": round(f99, 3),
                    "python_p50_ms": round(s50, 3), "python_p99_ms": round(s99, 3),
                    "speedup_p50": round(s50 / f50, 1), "same_visits_as_python_float32": same})


if __name__ == "__main__":
    main()
