"""Issue 20 §3: a user's features in the one pipeline. A plug-in is computed by the trainer on
a whole history and by the daemon's rolling buffer on each closed bar; both must agree, it
must not look ahead, and the spec hash pins it (a checkpoint trained with it is refused where
it is absent or changed, naming it)."""

import textwrap

import numpy as np
import pytest

from stairway.core import feature_plugins
from stairway.core.bar_files import load_bars
from stairway.core.checkpoint import CheckpointMeta, check_compatible
from stairway.core.config import load_config
from stairway.core.errors import CheckpointMismatch, ConfigError
from stairway.core.features import FeatureBuffer, FeatureSpec, batch_market_features
from stairway.core.policy import ACTION_NAMES
from stairway.trainer.config import TrainerConfig
from tests.helpers import EURUSD, ROOT

EXAMPLE = str(ROOT / "examples" / "features" / "gap_and_range.py")


def spec_with(**features) -> FeatureSpec:
    env = {f"STAIRWAY_FEATURES__{k.upper()}": v for k, v in features.items()}
    cfg = load_config(TrainerConfig, ROOT / "config" / "trainer.toml", environ=env)
    return FeatureSpec.from_config(cfg)


@pytest.fixture()
def registry():
    """Plug-in files written by a test register into a registry restored afterwards."""
    feature_plugins._builtin()  # the built-in families registered first: restored with the rest
    saved = dict(feature_plugins.REGISTRY)
    checked = set(feature_plugins._CHECKED)
    yield tmp_plugin
    feature_plugins.REGISTRY.clear()
    feature_plugins.REGISTRY.update(saved)
    feature_plugins._CHECKED.clear()
    feature_plugins._CHECKED.update(checked)


def tmp_plugin(path, body: str) -> str:
    path.write_text("import numpy as np\nfrom stairway.core.feature_plugins import feature\n\n" + textwrap.dedent(body))
    return str(path)


def live_values(spec: FeatureSpec, bars: np.ndarray) -> np.ndarray:
    fb = FeatureBuffer(spec)
    out = np.full((len(bars), spec.n_market), np.nan)
    row = np.zeros(spec.n_market)
    for i, (ts, o, h, lo, c, _) in enumerate(bars.tolist()):
        fb.push(ts, o, h, lo, c)
        if fb.compute(row):
            out[i] = row
    return out


def test_builtin_families_and_a_plugin_file_match_bar_for_bar_between_trainer_and_daemon():
    spec = spec_with(plugins=f'["{EXAMPLE}"]', extra='["mtf", "tod_harmonics", "gap", "range_z"]')
    base = spec_with()
    assert spec.market_names[: base.n_market] == base.market_names
    added = spec.market_names[base.n_market :]
    assert added[:4] == ("h4_prev_ret", "h4_prev_range", "h4_ret", "h4_pos") and added[-2:] == ("gap", "range_z")
    assert spec.obs_dim == base.obs_dim + 14 and spec.hash != base.hash
    assert spec.window == max(base.window, 2 * 24 + 1)  # the daily candles need 2 days of bars
    bars = load_bars(EURUSD)[0][:1500]
    batch = batch_market_features(bars, spec)
    live = live_values(spec, bars)
    assert np.array_equal(batch, live, equal_nan=True)  # identical, not close
    w = spec.window
    assert np.isnan(batch[: w - 1]).all() and np.isfinite(batch[w - 1 :]).all()
    # the values mean what the docs say: d1_pos in [-1, 1], the day's return to date's sign matches
    d1 = list(spec.market_names).index("d1_pos")
    assert batch[w:, d1].min() >= -1.0 and batch[w:, d1].max() <= 1.0
    assert batch[w:, d1].std() > 0.3


def test_parameters_are_in_the_hash_and_bad_ones_are_named():
    a = spec_with(extra='["mtf"]')
    b = spec_with(extra='["mtf"]', params='{"mtf": {"horizons_minutes": [1440]}}')
    assert a.hash != b.hash and b.market_names[-4:] == ("d1_prev_ret", "d1_prev_range", "d1_ret", "d1_pos")
    assert a.n_market == b.n_market + 4
    with pytest.raises(ConfigError, match=r"features.params.mtf: unknown parameter\(s\) \['horizon'\]"):
        spec_with(extra='["mtf"]', params='{"mtf": {"horizon": [1440]}}')
    with pytest.raises(ConfigError, match=r"features.params.mtf.horizons_minutes = '240': expected a value like"):
        spec_with(extra='["mtf"]', params='{"mtf": {"horizons_minutes": "240"}}')
    with pytest.raises(ConfigError, match=r"horizons_minutes = \[240.5\]: expected a value like its default"):
        spec_with(extra='["mtf"]', params='{"mtf": {"horizons_minutes": [240.5]}}')
    with pytest.raises(ConfigError, match=r"horizons_minutes = \[\] must be distinct and non-empty"):
        spec_with(extra='["mtf"]', params='{"mtf": {"horizons_minutes": []}}')
    with pytest.raises(ConfigError, match="horizon 90 minutes must be"):
        spec_with(extra='["mtf"]', params='{"mtf": {"horizons_minutes": [90]}}')
    with pytest.raises(ConfigError, match=r"unknown feature 'mft'; registered: .*mtf"):
        spec_with(extra='["mft"]')
    with pytest.raises(ConfigError, match="features.params: \\['tod_harmonics'\\] not listed"):
        spec_with(extra='["mtf"]', params='{"tod_harmonics": {"harmonics": [2]}}')
    with pytest.raises(ConfigError, match="gap_and_rnge.py: no such file"):
        spec_with(plugins=f'["{EXAMPLE.replace("range", "rnge")}"]', extra='["gap"]')


def test_a_plugin_that_looks_ahead_is_refused_by_name(tmp_path, registry):
    path = registry(
        tmp_path / "peek.py",
        """
        @feature("peek", warmup_bars=2)
        def peek(bars):
            return np.log(np.roll(bars.close, -1) / bars.close)   # tomorrow's return
        """,
    )
    with pytest.raises(ConfigError, match="feature plug-in 'peek' looks ahead"):
        spec_with(plugins=f'["{path}"]', extra='["peek"]')
    path = registry(
        tmp_path / "zscore.py",
        """
        @feature("zfull", warmup_bars=2)
        def zfull(bars):
            return (bars.close - bars.close.mean()) / bars.close.std()   # normalised by the whole series
        """,
    )
    with pytest.raises(ConfigError, match="'zfull' looks ahead"):
        spec_with(plugins=f'["{path}"]', extra='["zfull"]')


def test_a_plugin_reading_more_history_than_declared_is_refused(tmp_path, registry):
    path = registry(
        tmp_path / "cum.py",
        """
        @feature("since_start", warmup_bars=5)
        def since_start(bars):
            return np.log(bars.close / bars.close[0])   # depends on where the history starts
        """,
    )
    with pytest.raises(ConfigError, match=r"'since_start': the daemon's value at bar \d+ .* reads more history"):
        spec_with(plugins=f'["{path}"]', extra='["since_start"]')


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("return np.zeros((len(bars), 2))", r"returned shape \(\d+, 2\) .* expected \(\d+,\) or \(\d+, 1\)"),
        ("return np.where(bars.close > 1.1, np.nan, 0.0)", "not finite at bar"),
        ("return bars.volume", "failed on a test history: AttributeError"),
    ],
)
def test_broken_plugins_are_refused_with_one_reason(tmp_path, registry, body, message):
    path = registry(tmp_path / "bad.py", f'@feature("bad", warmup_bars=1)\ndef bad(bars):\n    {body}\n')
    with pytest.raises(ConfigError, match=f"feature plug-in 'bad'.*{message}"):
        spec_with(plugins=f'["{path}"]', extra='["bad"]')


def test_an_unloadable_plugin_file_is_named(tmp_path):
    bad = tmp_path / "syntax.py"
    bad.write_text("def broken(:\n")
    with pytest.raises(ConfigError, match=f"features.plugins: {bad}: could not be loaded: SyntaxError"):
        spec_with(plugins=f'["{bad}"]', extra='["x"]')
    with pytest.raises(ConfigError, match="features.plugins: no_such_module_xyz: could not be loaded"):
        spec_with(plugins='["no_such_module_xyz"]', extra='["x"]')
    with pytest.raises(ConfigError, match="features.extra lists no feature"):
        spec_with(plugins=f'["{EXAMPLE}"]')


def _meta(spec: FeatureSpec) -> CheckpointMeta:
    return CheckpointMeta("ppo", spec.hash, spec.to_json(), (spec.obs_dim,), ACTION_NAMES, 16)


def _check(meta: CheckpointMeta, spec: FeatureSpec) -> None:
    check_compatible(
        meta,
        "ck",
        feature_spec_hash=spec.hash,
        feature_spec=spec.to_json(),
        obs_shape=(spec.obs_dim,),
        action_space=ACTION_NAMES,
    )


def test_a_checkpoint_trained_with_a_plugin_is_refused_where_it_is_absent_or_changed(tmp_path, registry):
    v1 = registry(
        tmp_path / "v1.py",
        """
        @feature("body_share", warmup_bars=1)
        def body_share(bars):
            return (bars.close - bars.open) / np.maximum(bars.high - bars.low, 1e-12)
        """,
    )
    trained = spec_with(plugins=f'["{v1}"]', extra='["body_share"]')
    _check(_meta(trained), trained)  # the same spec: accepted
    with pytest.raises(CheckpointMismatch, match="feature 'body_share' is absent here"):
        _check(_meta(trained), spec_with())
    del feature_plugins.REGISTRY["body_share"]
    v2 = registry(
        tmp_path / "v2.py",
        """
        @feature("body_share", warmup_bars=1)
        def body_share(bars):
            return np.clip((bars.close - bars.open) / np.maximum(bars.high - bars.low, 1e-12), -0.5, 0.5)
        """,
    )
    changed = spec_with(plugins=f'["{v2}"]', extra='["body_share"]')
    assert changed.obs_dim == trained.obs_dim and changed.hash != trained.hash
    with pytest.raises(CheckpointMismatch, match=r"feature 'body_share' changed \(its code\)"):
        _check(_meta(trained), changed)
    with pytest.raises(CheckpointMismatch, match=r"feature 'mtf' is not in the checkpoint"):
        _check(_meta(spec_with()), spec_with(extra='["mtf"]'))


def test_a_plugin_that_fails_on_the_training_history_is_named(tmp_path, registry):
    """It passed the check on the test history (near 1.10); EUR/USD's 2017 bars reach 1.2."""
    path = registry(
        tmp_path / "fragile.py",
        """
        @feature("fragile", warmup_bars=1)
        def fragile(bars):
            if (bars.close > 1.19).any():
                raise ValueError("never saw 1.19")
            return np.where(bars.close > 1.17, np.nan, 0.0)
        """,
    )
    spec = spec_with(plugins=f'["{path}"]', extra='["fragile"]')
    bars = load_bars(EURUSD)[0]
    with pytest.raises(ConfigError, match="feature plug-in 'fragile' failed on the history: ValueError: never saw"):
        batch_market_features(bars, spec)
    calm = bars[bars["close"] < 1.185]  # no 1.19: no exception; above 1.17 the NaNs
    with pytest.raises(ConfigError, match=r"'fragile' is not finite on \d+ bar\(s\) of the history"):
        batch_market_features(calm, spec)


def test_a_plugin_that_does_not_return_is_refused_at_start_and_not_called_again_live(tmp_path, registry, monkeypatch):
    """A plug-in stuck in a wait (here on an event the test releases at the end) is refused by
    the start-up check at its time limit; one that gets stuck live costs that bar (the daemon
    holds: a policy error) and is not called again, so the event loop is never held longer."""
    import threading

    release = threading.Event()
    monkeypatch.setattr(feature_plugins, "RELEASE", release, raising=False)  # the plug-ins below wait on it
    monkeypatch.setattr(feature_plugins, "HANG", False, raising=False)
    stuck = registry(
        tmp_path / "stuck.py",
        """
        from stairway.core import feature_plugins

        @feature("stuck", warmup_bars=1)
        def stuck(bars):
            feature_plugins.RELEASE.wait()
            return np.zeros(len(bars))
        """,
    )
    monkeypatch.setattr(feature_plugins, "CHECK_SECS", 0.3)
    monkeypatch.setattr(feature_plugins, "LIVE_SECS", 0.2)
    try:
        with pytest.raises(
            ConfigError, match=r"feature plug-in 'stuck', checked on a test history, did not return within 0.3 s"
        ):
            spec_with(plugins=f'["{stuck}"]', extra='["stuck"]')
        later = registry(
            tmp_path / "later.py",
            """
            from stairway.core import feature_plugins

            @feature("later", warmup_bars=1)
            def later(bars):
                if getattr(feature_plugins, "HANG", False):
                    feature_plugins.RELEASE.wait()
                return np.zeros(len(bars))
            """,
        )
        spec = spec_with(plugins=f'["{later}"]', extra='["later"]')
        fb = FeatureBuffer(spec)
        for ts, o, h, lo, c, _ in load_bars(EURUSD)[0][: spec.window].tolist():
            fb.push(ts, o, h, lo, c)
        row = np.zeros(spec.n_market)
        assert fb.compute(row)
        feature_plugins.HANG = True
        with pytest.raises(ConfigError, match=r"feature plug-in 'later' did not return within 0.2 s"):
            fb.compute(row)
        calls = threading.active_count()
        with pytest.raises(ValueError, match=r"'later' timed out on an earlier bar: not called again"):
            fb.compute(row)
        assert threading.active_count() == calls  # no new thread left waiting
    finally:
        release.set()
