"""Robustness statistics for validation: Monte Carlo bootstrap, walk-forward efficiency, SQN.

- Monte Carlo: resample the trade returns (fractions of equity) with replacement R times,
  compound each sequence; CAR25 is the 25th percentile of the compound annual return over
  the resamples, DD95 the 95th percentile of their maximum drawdowns (Bandy's CAR25).
- Walk-forward efficiency: annualised out-of-sample return divided by annualised in-sample
  return over consecutive windows (Pardo); > 0.5 is usually taken as robust.
- Safe-f: the largest fraction f (at most 1) of the configured risk at which the DD95 of the
  Monte Carlo over ``horizon_years`` of trades (at the measured trade rate, each trade's
  return scaled by f) stays within a tolerance (Bandy's safe-f); it scales the size of a
  model's entries when ``execution.safe_f_sizing`` is on (issue 21 §5).
- SQN classes (Van Tharp): < 1.6 poor, 1.6-1.99 below average, 2.0-2.49 average,
  2.5-2.99 good, 3.0-5.09 excellent, 5.1-6.99 superb, >= 7 holy grail.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stairway.core.metrics import MIN_TRADES_FOR_QUALITY


@dataclass(frozen=True)
class MonteCarlo:
    resamples: int
    trades: int
    car25_pct: float
    car50_pct: float
    dd95_pct: float
    car_pct: np.ndarray  # one compound annual return per resample (for plots)


def monte_carlo(trade_returns: np.ndarray, years: float, resamples: int = 1000, seed: int = 0) -> MonteCarlo:
    r = np.asarray(trade_returns, dtype=np.float64)
    if len(r) == 0 or years <= 0:
        z = np.zeros(resamples)
        return MonteCarlo(resamples, len(r), 0.0, 0.0, 0.0, z)
    if np.any(r <= -1.0):
        raise ValueError("a trade return of -100 % or worse cannot be compounded")
    idx = np.random.default_rng(seed).integers(0, len(r), size=(resamples, len(r)))
    growth = np.cumprod(1.0 + r[idx], axis=1)
    final = growth[:, -1]
    car = (final ** (1.0 / years) - 1.0) * 100.0
    peak = np.maximum(np.maximum.accumulate(growth, axis=1), 1.0)
    dd = ((peak - growth) / peak).max(axis=1) * 100.0
    return MonteCarlo(
        resamples,
        len(r),
        float(np.percentile(car, 25)),
        float(np.percentile(car, 50)),
        float(np.percentile(dd, 95)),
        car,
    )


def walk_forward_efficiency(in_sample: list[float], out_of_sample: list[float]) -> float:
    """Mean OOS annualised return / mean IS annualised return; 0 when IS is not positive."""
    is_mean, oos_mean = float(np.mean(in_sample)), float(np.mean(out_of_sample))
    return oos_mean / is_mean if is_mean > 0 else 0.0


def sqn_class(sqn: float, trades: int) -> str:
    """Van Tharp's class, or "too few trades (n)" below MIN_TRADES_FOR_QUALITY trades."""
    if trades < MIN_TRADES_FOR_QUALITY:
        return f"too few trades ({trades})"
    for bound, name in (
        (1.6, "poor"),
        (2.0, "below average"),
        (2.5, "average"),
        (3.0, "good"),
        (5.1, "excellent"),
        (7.0, "superb"),
    ):
        if sqn < bound:
            return name
    return "holy grail"


def safe_f(
    trade_returns: np.ndarray,
    trades_per_year: float,
    max_dd_pct: float,
    horizon_years: float = 2.0,
    min_trades: int = MIN_TRADES_FOR_QUALITY,
    resamples: int = 1000,
    seed: int = 0,
) -> float:
    """Bandy's safe-f in [0, 1]: the largest fraction of the trades' size whose 95th
    percentile maximum drawdown over ``horizon_years`` of resampled trades is at most
    ``max_dd_pct``. 0 with fewer than ``min_trades`` trades (no evidence, no size);
    the same resamples at every fraction, so the drawdown grows with f and 20 bisection
    steps find it to 1e-6."""
    r = np.asarray(trade_returns, dtype=np.float64)
    if len(r) < max(1, min_trades) or trades_per_year <= 0 or max_dd_pct <= 0:
        return 0.0
    if np.any(r <= -1.0):
        raise ValueError("a trade return of -100 % or worse cannot be compounded")
    n = max(1, int(round(trades_per_year * horizon_years)))
    draws = r[np.random.default_rng(seed).integers(0, len(r), size=(resamples, n))]

    def dd95(f: float) -> float:
        growth = np.cumprod(1.0 + f * draws, axis=1)
        peak = np.maximum(np.maximum.accumulate(growth, axis=1), 1.0)
        return float(np.percentile(((peak - growth) / peak).max(axis=1), 95)) * 100.0

    if dd95(1.0) <= max_dd_pct:
        return 1.0
    lo, hi = 0.0, 1.0
    for _ in range(20):
        mid = 0.5 * (lo + hi)
        if dd95(mid) <= max_dd_pct:
            lo = mid
        else:
            hi = mid
    return lo
