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

from core.config import BarConfig, MarketConfig  # noqa: E402
from core.types import TICK_DTYPE  # noqa: E402

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


def minute_market() -> MarketConfig:
    return MarketConfig(bars=BarConfig(period_minutes=1, price="mid"))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def report(name: str, figures: dict) -> None:
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures))


def trading_net(seed: int = 0):
    """An untrained PPO actor-critic for the 1-minute spec, with output weights scaled so
    that it actually trades (the benchmarks need orders and fills, not skill)."""
    import torch

    from core.features import FeatureSpec
    from core.policy import ActorCritic

    torch.manual_seed(seed)
    net = ActorCritic(FeatureSpec.from_config(minute_market()).obs_dim)
    with torch.no_grad():
        net.actor[-1].weight.mul_(300.0)
    return net


def bench_policy(kind: str, seed: int = 0):
    """A fresh policy of ``kind`` for the 1-minute spec: PPO (trading_net) or MuZero (an
    untrained network of the shipped sizes, 15-simulation search)."""
    net = trading_net(seed)
    if kind == "ppo":
        from core.policy import PPOPolicy

        return PPOPolicy(net, "bench")
    import torch

    from core.muzero_net import MuZeroNet
    from core.muzero_policy import MuZeroPolicy

    torch.manual_seed(seed)
    mz = MuZeroNet(net.obs_dim, 4)
    return MuZeroPolicy(mz.state_dict(), net.obs_dim, mz.arch() | {"inference": {}}, "bench-muzero")
