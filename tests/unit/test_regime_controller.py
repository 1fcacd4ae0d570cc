import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stairway.core.config import BarConfig, RegimeConfig
from stairway.core.controller import DualLaneController
from stairway.core.regime import RegimeDetector

HOURLY = BarConfig(period_minutes=60)
CFG = RegimeConfig(window_days=3, warmup_days=1, momentum_minutes=180, divergence_minutes=300)


def walk(n, seed=0, vol=1e-3):
    return 1.1 * np.exp(np.cumsum(np.random.default_rng(seed).normal(0, vol, n)))


def brute_force(closes, k, n_div, w, t):
    """z-scores at bar t computed from scratch with numpy (the oracle)."""

    def signals(i):
        r = math.log(closes[i] / closes[i - 1])
        return (
            math.log(closes[i] / closes[i - k]),
            abs(r),
            math.log(closes[i] / np.mean(closes[i - n_div + 1 : i + 1])),
        )

    first = max(k, n_div)
    hist = np.array([signals(i) for i in range(max(first, t - w + 1), t + 1)])
    m, s = hist.mean(0), hist.std(0)
    return np.clip((hist[-1] - m) / s, -3, 3)


def test_regime_z_scores_match_brute_force_over_many_windows():
    closes = walk(900)
    d = RegimeDetector(CFG, HOURLY)
    for t, c in enumerate(closes):
        d.update(c)
        if t >= 100 and t % 37 == 0:
            assert np.allclose(d.regime_vector(), brute_force(closes, d.k, d.n_div, d.window, t), atol=1e-9)
    z = np.array(d.regime_vector())
    assert d.value == pytest.approx(float(np.clip(0.4 * z[0] + 0.3 * z[1] + 0.3 * z[2], -3, 3)))


def test_regime_neutral_until_warm_then_not():
    d = RegimeDetector(CFG, HOURLY)
    closes = walk(200, seed=2)
    values = d.series(closes)
    first_signal = max(d.k, d.n_div)  # signals start after this many bars
    assert np.all(values[: first_signal + d.warmup - 1] == 0.0)
    assert d.warm and np.count_nonzero(values[first_signal + d.warmup :]) > 50


def test_regime_memory_is_bounded():
    d = RegimeDetector(CFG, HOURLY)
    d.series(walk(5000, seed=3))
    assert all(len(z.buf) == d.window for z in d._z)
    assert len(d._closes) == max(d.k, d.n_div) + 1


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-0.05, 0.05), min_size=50, max_size=400), st.integers(0, 399))
def test_regime_clamped_even_with_spikes(returns, spike_at):
    r = np.array(returns)
    r[spike_at % len(r)] = 0.5  # a 65 % jump
    d = RegimeDetector(CFG, HOURLY)
    vals = d.series(1.1 * np.exp(np.cumsum(r)))
    assert np.all(np.abs(vals) <= 3.0) and all(abs(z) <= 3.0 for z in d.regime_vector())


def test_regime_warmup_longer_than_window_refused():
    with pytest.raises(ValueError, match="warmup_days \\(50\\) must not exceed window_days \\(30\\)"):
        RegimeConfig(window_days=30, warmup_days=50)


def test_controller_oscillating_error_with_sinusoidal_regime_stays_in_bounds():
    c = DualLaneController()
    out = [c.step(0.6 if k % 2 == 0 else -0.6, 3.0 * math.sin(k / 5.0)) for k in range(100)]
    assert all(isinstance(x, float) for x in out)
    assert all(0.0 <= x <= 2 * c.base for x in out)
    assert len(set(out)) > 10


def test_controller_sign_reversal():
    up, down = DualLaneController(), DualLaneController()
    assert up.step(0.4) > up.base > down.step(-0.4)
    for _ in range(1000):  # a persistent error saturates at the clip bounds
        hi, lo = up.step(1.0, 3.0), down.step(-1.0, 3.0)
    assert hi == 2 * up.base and lo == 0.0


def test_controller_slow_lane_changes_only_every_25_steps():
    c = DualLaneController()
    seen = []
    for _ in range(1, 101):
        c.step(0.5)
        seen.append(c.slow)
    changes = [k for k in range(1, 100) if seen[k] != seen[k - 1]]
    assert [k + 1 for k in changes] == [25, 50, 75, 100]
    assert seen[24] != 0.0 and all(v == seen[24] for v in seen[24:49])
