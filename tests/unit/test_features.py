import numpy as np
import pytest

from stairway.core.bar_files import load_bars
from stairway.core.config import BarConfig, FeatureConfig, MarketConfig
from stairway.core.errors import ConfigError
from stairway.core.features import FeatureBuffer, FeatureSpec, batch_market_features
from tests.helpers import EURUSD


@pytest.fixture(scope="module")
def bars():
    return load_bars(EURUSD)[0][:1500]


def incremental(bars, spec):
    buf = FeatureBuffer(spec)
    out = np.full((len(bars), spec.n_market), np.nan)
    for k, r in enumerate(bars):
        buf.push(int(r["ts_ns"]), r["open"], r["high"], r["low"], r["close"])
        buf.compute(out[k])
    return out


def test_features_batched_and_incremental_identical(bars, spec):
    batch = batch_market_features(bars, spec)
    inc = incremental(bars, spec)
    w = spec.window
    assert np.isnan(batch[: w - 1]).all() and np.isnan(inc[: w - 1]).all()
    assert np.isfinite(batch[w - 1 :]).all()
    assert np.max(np.abs(batch[w - 1 :] - inc[w - 1 :])) <= 1e-12


def test_feature_buffer_memory_is_bounded(bars, spec):
    buf = FeatureBuffer(spec)
    for r in bars:
        buf.push(int(r["ts_ns"]), r["open"], r["high"], r["low"], r["close"])
    assert len(buf._ts) == 2 * spec.window and buf._n <= 2 * spec.window
    assert buf.bars_seen == len(bars)


def test_features_are_bounded(bars, spec):
    f = batch_market_features(bars, spec)[spec.window - 1 :]
    assert np.all(np.abs(f) <= 5.0)
    names = spec.market_names
    for bounded in ("rsi", "range_pos", "body", "tod_sin", "dow_cos", "vol_level", "range_vol"):
        assert np.all(np.abs(f[:, names.index(bounded)]) <= 1.0)


def test_features_no_look_ahead(bars, spec):
    base = batch_market_features(bars, spec)
    t = 700
    changed = bars.copy()
    rng = np.random.default_rng(3)
    scale = rng.uniform(0.9, 1.1, len(bars) - t - 1)
    for f in ("open", "high", "low", "close"):
        changed[f][t + 1 :] *= scale
    after = batch_market_features(changed, spec)
    assert np.array_equal(base[: t + 1], after[: t + 1], equal_nan=True)
    assert not np.allclose(base[t + 1 :], after[t + 1 :])


def test_feature_spec_hash_pins_windows_and_period(market_cfg, spec):
    other = MarketConfig(
        bars=market_cfg.bars, features=market_cfg.features.model_copy(update={"vol_window_minutes": 2880})
    )
    assert FeatureSpec.from_config(other).hash != spec.hash
    assert FeatureSpec.from_config(market_cfg).hash == spec.hash
    assert spec.obs_dim == len(spec.names) == spec.n_market + 9


def test_feature_windows_converted_with_bar_period():
    minute = FeatureSpec.from_config(MarketConfig(bars=BarConfig(period_minutes=1), features=FeatureConfig()))
    assert minute.vol_window == 30 and minute.return_lags[-1] == 64
    five = MarketConfig(
        bars=BarConfig(period_minutes=5),
        features=FeatureConfig(
            return_lags_minutes=(5, 10),
            vol_window_minutes=60,
            short_window_minutes=30,
            long_window_minutes=120,
            rsi_window_minutes=70,
        ),
    )
    s5 = FeatureSpec.from_config(five)
    assert (s5.vol_window, s5.short_window, s5.long_window, s5.rsi_window, s5.return_lags) == (12, 6, 24, 14, (1, 2))
    with pytest.raises(
        ConfigError, match="features.return_lags_minutes = 1 minutes is not a whole number of 60-minute bars"
    ):
        FeatureSpec.from_config(MarketConfig(bars=BarConfig(period_minutes=60), features=FeatureConfig()))


def test_feature_selection_by_name_same_in_both_paths(bars, market_cfg):
    cfg = market_cfg.model_copy(
        update={"features": market_cfg.features.model_copy(update={"include": ("rsi", "ret_24", "tod_sin")})}
    )
    spec = FeatureSpec.from_config(cfg)
    full = FeatureSpec.from_config(market_cfg)
    assert spec.market_names == ("rsi", "ret_24", "tod_sin") and spec.obs_dim == 3 + 9
    assert spec.hash != full.hash
    batch, inc = batch_market_features(bars, spec), incremental(bars, spec)
    ref = batch_market_features(bars, full)[:, [full.market_names.index(n) for n in spec.market_names]]
    w = spec.window
    assert np.array_equal(batch[w - 1 :], ref[w - 1 :]) and np.max(np.abs(batch[w - 1 :] - inc[w - 1 :])) <= 1e-12


def test_config_naming_an_unknown_feature_is_refused(market_cfg):
    cfg = market_cfg.model_copy(
        update={"features": market_cfg.features.model_copy(update={"include": ("rsi", "macd")})}
    )
    with pytest.raises(
        ConfigError,
        match=r"features.include = \['rsi', 'macd'\]: unknown feature\(s\) \['macd'\].*known market features: ret_1",
    ):
        FeatureSpec.from_config(cfg)
