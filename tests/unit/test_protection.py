"""core.protection: the stop's distance (fixed, from the range, capped by a maximum loss) and
the size from risk; the config's refusals of settings that cannot work together."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stairway.core.config import ExecutionConfig, InstrumentConfig
from stairway.core.execution import ExecutionModel
from stairway.core.features import FeatureBuffer, FeatureSpec
from stairway.core.protection import atr, atr_series, size_and_stop

H = np.array([1.10, 1.12, 1.11, 1.15, 1.13])
L = np.array([1.08, 1.10, 1.09, 1.11, 1.12])
C = np.array([1.09, 1.11, 1.10, 1.14, 1.125])


def test_atr_is_the_mean_true_range_widened_to_the_previous_close():
    # true ranges of bars 1..4: max(h-l, |h-pc|, |l-pc|)
    tr = [max(H[k] - L[k], abs(H[k] - C[k - 1]), abs(L[k] - C[k - 1])) for k in range(1, 5)]
    assert tr[2] == pytest.approx(0.05)  # bar 3 gapped above bar 2's close: h - pc (0.05) > h - l (0.04)
    assert atr(H, L, C, 4, 4) == pytest.approx(sum(tr) / 4, abs=1e-15)
    assert atr(H, L, C, 4, 2) == pytest.approx((tr[2] + tr[3]) / 2, abs=1e-15)
    assert math.isnan(atr(H, L, C, 3, 4))  # bar 0 has no close before it
    series = atr_series(H, L, C, 2)
    assert np.isnan(series[:2]).all() and series[4] == atr(H, L, C, 4, 2)


def call(action=1, units=0.0, trade=100_000.0, fixed=0.0, mult=0.0, a=0.001, max_loss=0.0, risk=0.0, balance=1e5):
    return size_and_stop(action, units, trade, 100_000.0, fixed, mult, a, max_loss, risk, 1.0, balance)


def test_distance_fixed_or_from_the_range_capped_by_the_maximum_loss():
    assert call(fixed=0.0008) == (100_000.0, 0.0008)
    assert call(mult=2.0, a=0.0011) == (100_000.0, pytest.approx(0.0022))
    # 100k units losing at most 150: the stop 0.0015 away at most
    assert call(mult=2.0, a=0.0011, max_loss=150.0) == (100_000.0, pytest.approx(0.0015))
    assert call(mult=2.0, a=0.0005, max_loss=150.0)[1] == pytest.approx(0.001)  # inside the cap: unchanged
    assert call() == (100_000.0, 0.0)  # no stop configured: none, the configured size


def test_no_entry_without_a_distance_for_its_stop():
    assert call(mult=2.0, a=math.nan)[0] == 0.0  # too few bars for a range
    assert call(mult=2.0, a=0.0)[0] == 0.0  # a market that did not move
    assert call(mult=2.0, a=math.nan, risk=0.01)[0] == 0.0


def test_size_from_the_balance_at_risk():
    # 0.5 % of 100k = 500 at risk over a 0.002 stop: 250k units, capped by the 1-lot limit
    assert call(fixed=0.002, risk=0.005) == (100_000.0, 0.002)
    # 0.1 % of 80k = 80 over 0.002: 40k units, whole units
    assert call(fixed=0.002, risk=0.001, balance=80_000.0) == (40_000.0, 0.002)
    assert call(fixed=0.003, risk=0.001, balance=80_000.0)[0] == math.floor(80 / 0.003)
    # a BUY while long (a SELL while short) keeps the position instead of resizing it
    assert call(fixed=0.002, risk=0.001, units=55_000.0)[0] == 55_000.0
    assert call(action=2, fixed=0.002, risk=0.001, units=-55_000.0)[0] == 55_000.0
    assert call(action=2, fixed=0.002, risk=0.001, units=55_000.0, balance=80_000.0)[0] == 40_000.0  # a reversal
    assert call(fixed=0.002, risk=0.001, balance=-5.0)[0] == 0.0  # nothing left to risk
    # the maximum loss caps the distance for the size risk gave
    size, d = call(mult=1.0, a=0.002, risk=0.001, max_loss=50.0)
    assert size == 50_000.0 and d == pytest.approx(0.001)


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"stop_pips": 10, "stop_atr_multiple": 2}, "stop_pips and stop_atr_multiple: set one"),
        ({"stop_max_loss": 100}, "stop_max_loss needs a stop"),
        ({"risk_per_trade_pct": 0.5}, "risk_per_trade_pct needs a stop"),
        ({"stop_atr_multiple": 2, "risk_per_trade_pct": 11}, "less than or equal to 10"),
        ({"stop_atr_multiple": -1}, "greater than 0"),
        ({"stop_atr_multiple": 2, "stop_atr_bars": 0}, "greater than or equal to 1"),
        ({"stop_atr_multiple": 2, "safe_f_sizing": True}, "safe_f_sizing scales risk_per_trade_pct: set it too"),
        ({"stop_atr_multiple": 2, "risk_per_trade_pct": 0.5, "safe_f_sizing": "yes"}, "valid boolean"),
    ],
)
def test_settings_that_cannot_work_are_refused(fields, message):
    with pytest.raises(ValueError, match=message):
        ExecutionConfig(**fields)


def test_safe_f_scales_the_risk_only_when_asked_and_never_up():
    inst = InstrumentConfig(symbol="EUR_USD", pip_size=0.0001, lot_units=100_000)
    base = {"stop_pips": 20.0, "risk_per_trade_pct": 0.1}
    on = ExecutionModel.from_config(ExecutionConfig(**base, safe_f_sizing=True), inst)
    off = ExecutionModel.from_config(ExecutionConfig(**base), inst)
    none = lambda n: math.nan  # noqa: E731 - a fixed stop reads no range
    # 0.1 % of 100k = 100 at risk over 20 pips: 50k units; at safe-f 0.4, 20k
    assert off.size_and_stop(1, 0.0, none, 100_000.0, 0.4) == (50_000.0, pytest.approx(0.002))
    assert on.size_and_stop(1, 0.0, none, 100_000.0, 0.4)[0] == 20_000.0
    assert on.size_and_stop(1, 0.0, none, 100_000.0, None)[0] == 50_000.0  # no safe-f measured (training)
    assert on.size_and_stop(1, 0.0, none, 100_000.0, 3.0)[0] == 50_000.0  # never more than the configured risk
    assert on.size_and_stop(1, 0.0, none, 100_000.0, 0.0)[0] == 0.0  # no evidence: no entries


def test_the_daemon_buffer_keeps_the_bars_its_range_needs(market_cfg):
    """FeatureBuffer.atr over the buffered bars equals the kernel over the whole series, also
    after the buffer has moved its bars to the front many times (keep: the range's bars)."""
    spec = FeatureSpec.from_config(market_cfg)
    n = spec.window + 40  # a range longer than the feature window
    rng = np.random.default_rng(3)
    c = 1.1 + np.cumsum(rng.normal(0, 1e-3, 6 * spec.window))
    h, lo = c + rng.uniform(0, 1e-3, len(c)), c - rng.uniform(0, 1e-3, len(c))
    buf = FeatureBuffer(spec, keep=n + 1)
    for i in range(len(c)):
        buf.push(i, c[i], h[i], lo[i], c[i])
        want = atr(h, lo, c, i, n)
        got = buf.atr(n)
        assert (math.isnan(want) and math.isnan(got)) or got == want, i


def test_a_missing_stop_goes_back_at_the_last_decisions_distance_else_the_ranges_now(market_cfg):
    """daemon.reconcile_runner.replacement_distance: where reconciliation puts a stop that is
    missing at the broker (the slot is a plain record here: the function reads three fields)."""
    from types import SimpleNamespace

    from stairway.core.execution import ExecutionModel
    from stairway.daemon.reconcile_runner import replacement_distance

    spec = FeatureSpec.from_config(market_cfg)
    atr_only = market_cfg.execution.model_copy(update={"stop_atr_multiple": 3.0, "stop_atr_bars": 12})
    capped = atr_only.model_copy(update={"stop_max_loss": 150.0})
    buf = FeatureBuffer(spec, keep=13)
    rng = np.random.default_rng(1)
    c = 1.1 + np.cumsum(rng.normal(0, 1e-3, 40))
    for i in range(40):
        buf.push(i, c[i], c[i] + 4e-4, c[i] - 4e-4, c[i])
    range_now = 3.0 * buf.atr(12)
    assert 0.0024 < range_now < 0.01

    def slot(cfg, last=0.0, features=buf):
        return SimpleNamespace(
            ex=ExecutionModel.from_config(cfg, market_cfg.instrument),
            orders=SimpleNamespace(stop_distance=last),
            features=features,
        )

    assert replacement_distance(slot(atr_only), 100_000.0) == range_now  # no decision since the start
    assert replacement_distance(slot(atr_only, last=0.0007), -100_000.0) == 0.0007  # the last decision's
    assert replacement_distance(slot(capped), 100_000.0) == pytest.approx(0.0015)  # 150 over 100k units
    assert replacement_distance(slot(capped), 300_000.0) == pytest.approx(0.0005)
    empty = FeatureBuffer(spec)
    assert replacement_distance(slot(capped, features=empty), 100_000.0) == pytest.approx(0.0015)  # the cap alone
    assert replacement_distance(slot(atr_only, features=empty), 100_000.0) == 0.0  # nothing known: refused, alerted


def test_the_loosest_stop_of_ours_follows_the_loss_cap_or_the_fixed_distance(market_cfg):
    """daemon.reconcile_runner.loosest_stop: beyond it a stop was moved by hand (reconciliation
    puts ours back); an ATR stop without a cap has no such limit (NaN: any stop is left)."""
    from types import SimpleNamespace

    from stairway.core.broker import TradeStop
    from stairway.core.execution import ExecutionModel
    from stairway.daemon.reconcile_runner import loosest_stop

    def slot(**fields):
        cfg = market_cfg.execution.model_copy(update={"price_bound_pips": 10.0, **fields})
        return SimpleNamespace(ex=ExecutionModel.from_config(cfg, market_cfg.instrument))

    long, short = TradeStop("1", "EUR_USD", 100_000.0, 1.1000, None), TradeStop("2", "EUR_USD", -50_000.0, 1.1000, None)
    capped = slot(stop_atr_multiple=3.0, stop_max_loss=150.0)
    assert loosest_stop(capped, long) == pytest.approx(1.1000 - 0.0015 - 0.0010 - 0.0002)  # cap, bound, spread
    assert loosest_stop(capped, short) == pytest.approx(
        1.1000 + 0.0030 + 0.0010 + 0.0002
    )  # half the size: twice the pips
    assert loosest_stop(slot(stop_pips=20.0), long) == pytest.approx(1.1000 - 0.0020 - 0.0012)
    assert math.isnan(loosest_stop(slot(stop_atr_multiple=3.0), long))
