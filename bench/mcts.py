"""One MuZero decision (15 simulations, batch 1) with the shipped network sizes (latent 32,
hidden 64, 601-point supports): the numba search (core.mcts via MuZeroPolicy.act) next to a
plain-Python pUCT on the torch module, same weights, same observations, one run.

    python bench/mcts.py [--quick]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from common import report

from core.mcts import python_search  # noqa: E402
from core.muzero_net import MuZeroNet  # noqa: E402
from core.muzero_policy import MuZeroPolicy  # noqa: E402

OBS, A, SIMS = 31, 4, 15


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
    same = all(policy.visits(o).tolist() == python_search(net, o, SIMS).tolist() for o in obs[:20])
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
