import numpy as np
import pytest

from stairway.core.robustness import monte_carlo, sqn_class, walk_forward_efficiency


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
