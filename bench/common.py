"""Shared benchmark helpers: the reference workload's quote generator, configs, reporting.

Workload (issue #2, the one NautilusTrader 1.221 was measured on): seeded random walk of
EUR/USD quotes from 1.10, exponential inter-arrival with mean 0.25 s, 0.3-pip per-quote
volatility, spread uniform in 0.1-1.0 pip, prices rounded to 5 decimals; 1-minute mid bars.
"""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stairway.core.config import BarConfig, MarketConfig  # noqa: E402
from stairway.core.types import TICK_DTYPE  # noqa: E402

START_NS = 1_506_902_400 * 10**9  # Monday 2017-10-02 00:00 UTC


def synthetic_quotes(n: int, seed: int = 42, chunk: int = 65_536) -> np.ndarray:
    """Generated in chunks so the generator's temporaries stay small next to the result."""
    rng = np.random.default_rng(seed)
    ticks = np.empty(n, dtype=TICK_DTYPE)
    t, mid = float(START_NS), 1.10
    for s in range(0, n, chunk):
        k = min(chunk, n - s)
        ts = t + np.cumsum(rng.exponential(0.25e9, k))
        mids = mid + np.cumsum(rng.normal(0.0, 0.3e-4, k))
        spread = rng.uniform(0.1e-4, 1.0e-4, k)
        ticks["ts_ns"][s : s + k] = ts.astype(np.int64)
        ticks["bid"][s : s + k] = np.round(mids - spread / 2, 5)
        ticks["ask"][s : s + k] = np.round(mids + spread / 2, 5)
        t, mid = float(ts[-1]), float(mids[-1])
    return ticks


def bench_service(state: Path):
    """A paper replay that trades (no START_TRADING file needed), with SQLite persistence; the
    tick recorder and HTTP are off (bench/soak.py runs with both)."""
    from stairway.daemon.config import ServiceConfig

    return ServiceConfig(
        state_dir=state,
        models_dir=state / "models",
        require_start_file=False,
        require_gate_record=False,
        record_ticks=False,
        http_port=None,
    )


def minute_market() -> MarketConfig:
    return MarketConfig(bars=BarConfig(period_minutes=1, price="mid"))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def rss_anon_mb() -> float:
    """Anonymous resident memory now (the process's own heap and arrays), MB. Peak RSS also
    counts shared-library pages, which vary with the page cache (a freshly installed venv
    maps ~30 MB more of numba's and numpy's libraries for the same code)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def report(name: str, figures: dict) -> None:
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures))


_MAKE_WEIGHTS = """
import sys, torch
from safetensors.torch import save_file
kind, seed, obs_dim, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
torch.manual_seed(seed)
if kind == "ppo":
    from stairway.core.ppo_net import ActorCritic
    net = ActorCritic(obs_dim)
    with torch.no_grad():
        net.actor[-1].weight.mul_(300.0)
else:
    from stairway.core.muzero_model import MuZeroNet
    net = MuZeroNet(obs_dim, 4)
save_file({k: v.contiguous() for k, v in net.state_dict().items()}, out)
"""


def bench_weights(kind: str, seed: int = 0) -> dict[str, np.ndarray]:
    """Weights of an untrained network for the 1-minute spec, as numpy arrays: PPO's
    actor-critic with output weights scaled so that it trades (the benchmarks need orders and
    fills, not skill), or MuZero's networks at the shipped sizes. They are made by torch in a
    subprocess and cached in bench/.weights, so a benchmark's own process, like the daemon's,
    never imports torch and its peak RSS is the daemon's."""
    import subprocess

    from safetensors.numpy import load_file

    from stairway.core.features import FeatureSpec

    obs_dim = FeatureSpec.from_config(minute_market()).obs_dim
    path = ROOT / "bench" / ".weights" / f"{kind}-{seed}-{obs_dim}.safetensors"
    if not path.exists():
        path.parent.mkdir(exist_ok=True)
        tmp = path.with_suffix(".tmp")
        subprocess.run(
            [sys.executable, "-c", _MAKE_WEIGHTS, kind, str(seed), str(obs_dim), str(tmp)], cwd=ROOT, check=True
        )
        tmp.replace(path)
    return load_file(path)


def bench_policy(kind: str, seed: int = 0):
    """A fresh policy of ``kind`` for the 1-minute spec on bench_weights: PPO, or MuZero with
    the 15-simulation search."""
    from stairway.core.features import FeatureSpec

    w = bench_weights(kind, seed)
    if kind == "ppo":
        from stairway.core.policy import PPOPolicy

        return PPOPolicy(w, "bench")
    from stairway.core.muzero_policy import MuZeroPolicy

    arch = {"kind": "muzero", "latent": 32, "hidden": 64, "layout": 2, "n_actions": 4, "inference": {}}
    return MuZeroPolicy(w, FeatureSpec.from_config(minute_market()).obs_dim, arch, "bench-muzero")
