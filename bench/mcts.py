"""One MuZero decision (15 simulations, batch 1) with the shipped network sizes (latent 32,
hidden 64, layout 2: no value supports), same weights, same observations, one run:

- ours: the numba search (core.mcts via MuZeroPolicy.act, float32 kernels);
- the plain-Python pUCT reference on the torch module (core.mcts.python_search);
- LightZero 0.2.0's C++ tree (lzero.mcts.ctree.ctree_muzero, its MuZero tree) driven the way
  its MuZeroMCTSCtree.search drives it at evaluation (prepare_no_noise, then per simulation
  batch_traverse, the torch model's recurrent inference, batch_backpropagate) on our torch
  module. The wheel is installed with --no-deps into bench/.lightzero (its Python package
  needs DI-engine; only the compiled tree is loaded, by path). Skipped, and said so, if it
  cannot be installed.

    python bench/mcts.py [--quick]
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import time

import numpy as np
import torch

from common import ROOT, report
from stairway.core.mcts import python_search  # noqa: E402
from stairway.core.muzero_model import MuZeroNet  # noqa: E402
from stairway.core.muzero_policy import MuZeroPolicy  # noqa: E402

OBS, A, SIMS = 31, 4, 15
LIGHTZERO = "LightZero==0.2.0"
TARGET = ROOT / "bench" / ".lightzero"


def lightzero_tree():
    """LightZero's compiled MuZero tree module, or None (with the reason printed)."""
    so = next(TARGET.glob("lzero/mcts/ctree/ctree_muzero/mz_tree*.so"), None)
    if so is None:
        r = subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(TARGET), LIGHTZERO],
            capture_output=True,
            text=True,
        )
        so = next(TARGET.glob("lzero/mcts/ctree/ctree_muzero/mz_tree*.so"), None)
        if so is None:
            print(f"LightZero not measured: {LIGHTZERO} did not install ({r.stderr.strip()[-200:]})")
            return None
    spec = importlib.util.spec_from_file_location("mz_tree", so)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def lightzero_decision(tree, net, obs: np.ndarray) -> list:
    """One decision as LightZero's MuZeroMCTSCtree.search makes it (eval: no root noise),
    pb_c_base 19652, pb_c_init 1.25, discount 0.997, value_delta_max 0.01 (its defaults)."""
    with torch.no_grad():
        s0 = net.represent(torch.as_tensor(obs, dtype=torch.float32)[None])
        pl, _ = net.predict(s0)
        roots = tree.Roots(1, [list(range(A))])
        roots.prepare_no_noise([0.0], pl.numpy().tolist(), [-1])
        stats = tree.MinMaxStatsList(1)
        stats.set_delta(0.01)
        states = [s0.numpy()]
        for k in range(SIMS):
            results = tree.ResultsWrapper(num=1)
            ix, iy, last, vtp = tree.batch_traverse(roots, 19652, 1.25, 0.997, stats, results, [-1])
            s = torch.from_numpy(np.asarray([states[x][y] for x, y in zip(ix, iy)]))
            s2, r = net.dynamics(s, torch.from_numpy(np.asarray(last)).long())
            pl, v = net.predict(s2)
            states.append(s2.numpy())
            tree.batch_backpropagate(
                k + 1,
                0.997,
                r.reshape(-1).tolist(),
                v.reshape(-1).tolist(),
                pl.numpy().tolist(),
                stats,
                results,
                vtp,
            )
        return roots.get_distributions()[0]


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
    tree = lightzero_tree()
    if tree is not None:
        assert sum(lightzero_decision(tree, net, obs[0])) == SIMS
    fast, slow, lz = [], [], []
    for k in range(n):
        t = time.perf_counter_ns()
        policy.act(obs[k])
        fast.append(time.perf_counter_ns() - t)
        if k < n // 10:
            t = time.perf_counter_ns()
            python_search(net, obs[k], SIMS)
            slow.append(time.perf_counter_ns() - t)
            if tree is not None:
                t = time.perf_counter_ns()
                lightzero_decision(tree, net, obs[k])
                lz.append(time.perf_counter_ns() - t)

    def ms(xs, q):
        return round(float(np.percentile(xs, q)) / 1e6, 3)

    out = {
        "simulations": SIMS,
        "latent": net.latent,
        "hidden": net.hidden,
        "decisions": n,
        "numba_p50_ms": ms(fast, 50),
        "numba_p99_ms": ms(fast, 99),
        "python_p50_ms": ms(slow, 50),
        "python_p99_ms": ms(slow, 99),
        "speedup_vs_python_p50": round(ms(slow, 50) / ms(fast, 50), 1),
        "same_visits_as_python_float32": same,
    }
    if lz:
        out |= {
            "lightzero_ctree_p50_ms": ms(lz, 50),
            "lightzero_ctree_p99_ms": ms(lz, 99),
            "speedup_vs_lightzero_p50": round(ms(lz, 50) / ms(fast, 50), 1),
        }
    report("mcts", out)


if __name__ == "__main__":
    main()
