import numpy as np
import pytest

from stairway.core.robustness import monte_carlo, safe_f, sqn_class, walk_forward_efficiency


def test_monte_carlo_constant_trades_has_no_spread():
    mc = monte_carlo(np.full(50, 0.01), years=1.0, resamples=200)
    assert mc.car25_pct == pytest.approx((1.01**50 - 1) * 100)
    assert mc.dd95_pct == 0.0 and len(mc.car_pct) == 200


def test_monte_carlo_percentiles_ordered_and_drawdown_found():
    r = np.random.default_rng(0).normal(0.001, 0.01, 300)
    mc = monte_carlo(r, years=0.5, resamples=2000, seed=1)
    assert mc.car25_pct < mc.car50_pct
    assert 0.0 < mc.dd95_pct < 100.0
    # a sequence with one certain 10 % loss has at least a 10 % drawdown in every resample
    mc2 = monte_carlo(np.array([-0.1]), years=1.0, resamples=10)
    assert mc2.dd95_pct == pytest.approx(10.0)


def test_monte_carlo_rejects_total_loss():
    with pytest.raises(ValueError, match="-100 %"):
        monte_carlo(np.array([0.1, -1.0]), 1.0)


def test_wfe_and_sqn_classes():
    assert walk_forward_efficiency([10.0, 20.0], [5.0, 10.0]) == pytest.approx(0.5)
    assert walk_forward_efficiency([-1.0], [5.0]) == 0.0
    assert [sqn_class(x, 30) for x in (0.5, 1.7, 2.2, 2.7, 4.0, 6.0, 8.0)] == [
        "poor",
        "below average",
        "average",
        "good",
        "excellent",
        "superb",
        "holy grail",
    ]
    assert sqn_class(4.53, 2) == "too few trades (2)"  # no quality word for a handful of trades


def test_safe_f_is_the_fraction_whose_dd95_meets_the_tolerance():
    """Bandy's safe-f: at the fraction found, the Monte Carlo's DD95 over the horizon equals
    the tolerance (to the bisection's precision); a riskier trade list gets a smaller one."""
    rng = np.random.default_rng(3)
    r = rng.normal(0.002, 0.02, 200)
    f = safe_f(r, trades_per_year=100, max_dd_pct=10.0, resamples=500, seed=1)
    assert 0.0 < f < 1.0

    def dd95(frac):  # the same draws safe_f makes
        draws = r[np.random.default_rng(1).integers(0, len(r), size=(500, 200))]
        g = np.cumprod(1.0 + frac * draws, axis=1)
        peak = np.maximum(np.maximum.accumulate(g, axis=1), 1.0)
        return float(np.percentile(((peak - g) / peak).max(axis=1), 95)) * 100.0

    assert dd95(f) == pytest.approx(10.0, abs=0.01)
    assert dd95(f * 1.05) > 10.0
    assert safe_f(r * 2.0, 100, 10.0, resamples=500, seed=1) == pytest.approx(f / 2.0, rel=0.02)
    # a tolerance the full size already meets: 1 (never more than the configured risk)
    assert safe_f(r, 100, 99.0, resamples=500, seed=1) == 1.0


def test_safe_f_is_zero_without_evidence():
    r = np.full(9, 0.01)
    assert safe_f(r, 50, 10.0, min_trades=10) == 0.0  # fewer trades than asked for
    assert safe_f(np.full(10, 0.01), 50, 10.0, min_trades=10) == 1.0  # no loss ever: the full size
    assert safe_f(np.full(40, 0.01), 0.0, 10.0) == 0.0  # no rate
    with pytest.raises(ValueError, match="-100 %"):
        safe_f(np.concatenate([np.full(40, 0.01), [-1.0]]), 50, 10.0)
