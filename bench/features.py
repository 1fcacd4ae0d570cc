"""Feature pipeline speed: bars/s batched over a history (trainer) and µs per bar through
the bounded rolling buffer (daemon), 1-minute spec, on bars built from the reference quotes.

    python bench/features.py [--quick]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from common import minute_market, report
from stairway.core.features import FeatureBuffer, FeatureSpec, batch_market_features  # noqa: E402
from stairway.core.types import BAR_DTYPE  # noqa: E402


def random_bars(n: int) -> np.ndarray:
    rng = np.random.default_rng(1)
    close = 1.10 + np.cumsum(rng.normal(0, 5e-4, n))
    bars = np.empty(n, dtype=BAR_DTYPE)
    bars["ts_ns"] = 1_506_902_400 * 10**9 + np.arange(n, dtype=np.int64) * 60 * 10**9
    bars["open"] = np.concatenate([[1.10], close[:-1]])
    bars["close"] = close
    wig = np.abs(rng.normal(0, 2e-4, (2, n)))
    bars["high"] = np.maximum(bars["open"], close) + wig[0]
    bars["low"] = np.minimum(bars["open"], close) - wig[1]
    bars["volume"] = 1.0
    return bars


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    n_batch, n_inc = (100_000, 20_000) if a.quick else (1_000_000, 200_000)
    spec = FeatureSpec.from_config(minute_market())
    bars = random_bars(n_batch)
    batch_market_features(bars[:1000], spec)  # compile / load the cache
    t0 = time.perf_counter()
    batch_market_features(bars, spec)
    batched = n_batch / (time.perf_counter() - t0)
    buf = FeatureBuffer(spec)
    out = np.zeros(spec.n_market)
    cols = [bars[f][:n_inc].tolist() for f in ("ts_ns", "open", "high", "low", "close")]
    for k in range(1000):
        buf.push(cols[0][k], cols[1][k], cols[2][k], cols[3][k], cols[4][k])
        buf.compute(out)
    per_bar = []
    for k in range(1000, n_inc):
        t = time.perf_counter_ns()
        buf.push(cols[0][k], cols[1][k], cols[2][k], cols[3][k], cols[4][k])
        buf.compute(out)
        per_bar.append(time.perf_counter_ns() - t)
    us = np.array(per_bar) / 1000.0
    report(
        "features",
        {
            "batched_bars": n_batch,
            "batched_bars_per_s": round(batched),
            "incremental_bars": len(us),
            "incremental_us_per_bar_p50": round(float(np.median(us)), 2),
            "incremental_us_per_bar_p99": round(float(np.percentile(us, 99)), 2),
            "window_bars": spec.window,
            "market_features": spec.n_market,
        },
    )


if __name__ == "__main__":
    main()
