"""Market-regime detector: three rolling z-scores and their weighted composite.

Signals, from bar closes c_t (r_t = log(c_t / c_{t-1})):

- **momentum** m_t = log(c_t / c_{t-k}): the log return over the last k bars
  (``momentum_minutes``);
- **volatility** v_t = |r_t|: the size of the latest one-bar move;
- **divergence** d_t = log(c_t / SMA_n(c)_t): how far price has run from its n-bar mean
  (``divergence_minutes``).

Each signal is z-scored against its own last W values (W = ``window_days`` of bars):
z = (x - mean_W) / std_W, clamped to [-3, 3]. The composite is 0.4·z_m + 0.3·z_v + 0.3·z_d (``weights``),
clamped to [-3, 3]. Everything is 0 (neutral) until ``warmup_days`` of signals exist; the
warm-up may not exceed the window (the seed's 50-day bootstrap on a 30-day buffer could
never warm up).

Updates are O(1): running sums over ring buffers, recomputed exactly every W updates so
floating-point drift cannot accumulate. Memory is bounded: 3·W + k + n floats.

Regime values shape the controller and risk only; they are never in the policy's
observation.
"""

from __future__ import annotations

import math

import numpy as np

from stairway.core.config import BarConfig, RegimeConfig

CLAMP = 3.0


class _RollingZ:
    """z-score of the newest value against the last ``n`` values (itself included)."""

    __slots__ = ("buf", "n", "i", "count", "s1", "s2", "since_refresh")

    def __init__(self, n: int) -> None:
        self.buf = np.zeros(n)
        self.n, self.i, self.count = n, 0, 0
        self.s1 = self.s2 = 0.0
        self.since_refresh = 0

    def push(self, x: float) -> float:
        old = self.buf[self.i]
        self.buf[self.i] = x
        self.i = (self.i + 1) % self.n
        if self.count < self.n:
            self.count += 1
            old = 0.0
        self.s1 += x - old
        self.s2 += x * x - old * old
        self.since_refresh += 1
        if self.since_refresh >= self.n:  # exact recomputation bounds the drift
            live = self.buf if self.count == self.n else self.buf[: self.count]
            self.s1, self.s2 = float(live.sum()), float((live * live).sum())
            self.since_refresh = 0
        m = self.s1 / self.count
        var = self.s2 / self.count - m * m
        if var <= 1e-24 * max(1.0, m * m):
            return 0.0
        z = (x - m) / math.sqrt(var)
        return -CLAMP if z < -CLAMP else (CLAMP if z > CLAMP else z)


class RegimeDetector:
    def __init__(self, cfg: RegimeConfig, bars: BarConfig) -> None:
        per_day = 1440 // bars.period_minutes if 1440 % bars.period_minutes == 0 else None
        if per_day is None:
            from stairway.core.errors import ConfigError

            raise ConfigError(f"bars.period_minutes = {bars.period_minutes} does not divide a day")
        self.window = cfg.window_days * per_day
        self.warmup = cfg.warmup_days * per_day
        self.k = bars.bars(cfg.momentum_minutes, "regime.momentum_minutes")
        self.n_div = bars.bars(cfg.divergence_minutes, "regime.divergence_minutes")
        self._z = [_RollingZ(self.window) for _ in range(3)]
        self._closes = np.zeros(max(self.k, self.n_div) + 1)
        self._ci = 0
        self._seen = 0
        self._div_sum = 0.0
        self._signals = 0
        self.weights = tuple(cfg.weights)
        self.z = (0.0, 0.0, 0.0)
        self.value = 0.0

    @property
    def warm(self) -> bool:
        return self._signals >= self.warmup

    def _close_back(self, lag: int) -> float:
        return float(self._closes[(self._ci - 1 - lag) % len(self._closes)])

    def update(self, close: float) -> float:
        """Feed one bar close; returns the composite regime (0 until warm)."""
        cap = len(self._closes)
        # rolling sum of the last n_div closes (exact refresh with the z-buffers' cadence)
        self._div_sum += close - (self._close_back(self.n_div - 1) if self._seen >= self.n_div else 0.0)
        self._closes[self._ci] = close
        self._ci = (self._ci + 1) % cap
        self._seen += 1
        if self._seen % cap == 0:
            self._div_sum = float(sum(self._close_back(j) for j in range(min(self.n_div, self._seen))))
        if self._seen <= max(self.k, self.n_div):
            return self.value
        prev = self._close_back(1)
        signals = (
            math.log(close / self._close_back(self.k)),
            abs(math.log(close / prev)),
            math.log(close / (self._div_sum / self.n_div)),
        )
        z0, z1, z2 = (float(zz.push(s)) for zz, s in zip(self._z, signals))
        zs = (z0, z1, z2)
        self._signals += 1
        if not self.warm:
            return self.value
        self.z = zs
        v = sum(w * z for w, z in zip(self.weights, zs))
        self.value = -CLAMP if v < -CLAMP else (CLAMP if v > CLAMP else v)
        return self.value

    def regime_vector(self) -> tuple[float, float, float]:
        """(momentum, volatility, divergence) z-scores; zeros until warm."""
        return self.z

    def series(self, closes: np.ndarray) -> np.ndarray:
        """Composite regime after each close (the trainer's batch use of the same code)."""
        return np.array([self.update(float(c)) for c in closes])
