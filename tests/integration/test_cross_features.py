"""Issue 20 §3: the other instruments' recent returns as features (core.cross_features),
aligned causally at bar closes: the daemon's slots (two instruments on one merged replay
feed) and the trainer's env give identical observations; nothing after a bar's end is read;
a missing instrument or bar file is refused in one line."""

import asyncio
import math

import numpy as np
import pytest

from stairway.core.bar_builder import BarBuilder
from stairway.core.bar_files import load_bars
from stairway.core.bar_ticks import bars_to_ticks
from stairway.core.config import load_config
from stairway.core.cross_features import batch_cross
from stairway.core.errors import ConfigError
from stairway.core.execution import ExecutionModel
from stairway.core.features import FeatureSpec, _ret_std
from stairway.core.policy import ScriptedPolicy
from stairway.daemon.account import Account
from stairway.daemon.cross_view import wire
from stairway.daemon.feeds.replay import ReplayFeed
from stairway.daemon.paper_broker import PaperBroker
from stairway.daemon.risk import RiskEngine
from stairway.daemon.slot import Slot
from stairway.daemon.store import Store
from stairway.trainer.config import TrainerConfig
from stairway.trainer.history import history_from_bars
from tests.helpers import EURUSD, ROOT, write_bars_csv
from tests.integration.test_parity import NO_TIERS, run_env

N_BARS = 420
HOUR = 3600 * 10**9


def _pair(tmp_path):
    """EUR/USD's first bars (A) and, on the same hours, 420 later real bars as GBP/USD (B),
    with six hours missing from B (B did not trade: its row ages)."""
    bars = load_bars(EURUSD)[0]
    a = bars[:N_BARS].copy()
    b = bars[2000 : 2000 + N_BARS].copy()
    b["ts_ns"] = a["ts_ns"]
    b = np.delete(b, np.arange(200, 206))
    return (
        a,
        b,
        write_bars_csv(tmp_path / "FOREX_EURUSD_1H_ASK.csv", a),
        write_bars_csv(tmp_path / "FOREX_GBPUSD_1H_ASK.csv", b),
    )


def _cfg(symbol, own, other_symbol, other):
    env = {
        "STAIRWAY_INSTRUMENT__SYMBOL": symbol,
        "STAIRWAY_DATA__BARS_CSV": str(own),
        "STAIRWAY_FEATURES__CROSS_INSTRUMENTS": '["EUR_USD", "GBP_USD"]',
        "STAIRWAY_DATA__CROSS_BARS_CSV": f'{{"{other_symbol}": "{other}"}}',
    }
    return load_config(TrainerConfig, ROOT / "config" / "trainer.toml", environ=env)


def test_two_slots_on_a_merged_feed_see_what_the_trainer_sees(tmp_path):
    a, b, fa, fb = _pair(tmp_path)
    cfg_a, cfg_b = _cfg("EUR_USD", fa, "GBP_USD", fb), _cfg("GBP_USD", fb, "EUR_USD", fa)
    spec = FeatureSpec.from_config(cfg_a)
    assert FeatureSpec.from_config(cfg_b).hash == spec.hash  # one spec for every leg
    assert spec.names[spec.n_market - 8 : spec.n_market] == (
        "x_EUR_USD_ret_1", "x_EUR_USD_ret_2", "x_EUR_USD_ret_3", "x_EUR_USD_age",
        "x_GBP_USD_ret_1", "x_GBP_USD_ret_2", "x_GBP_USD_ret_3", "x_GBP_USD_age",
    )  # fmt: skip
    ex = ExecutionModel.from_config(cfg_a.execution, cfg_a.instrument)
    rng = np.random.default_rng(5)
    acts = {s: rng.integers(0, 4, size=N_BARS).tolist() for s in ("EUR_USD", "GBP_USD")}
    policies = {s: ScriptedPolicy(acts[s]) for s in acts}
    ticks = {
        s: bars_to_ticks(x, cfg_a.bars.period_ns, "ask", cfg_a.data.modelled_spread_pips * 1e-4)
        for s, x in (("EUR_USD", a), ("GBP_USD", b))
    }

    async def go():
        store = await Store.open(tmp_path / "x.db")
        slots = {
            s: Slot(
                "r",
                s,
                spec,
                BarBuilder(cfg_a.bars.period_ns, "ask"),
                ex,
                policies[s],
                PaperBroker(ex),
                store,
                Account(RiskEngine(NO_TIERS, 100_000, 60), 100_000.0),
            )  # fmt: skip
            for s in ticks
        }
        wire(slots)
        feed = ReplayFeed(ticks, batch_ticks=7, period_ns=cfg_a.bars.period_ns)
        async for sym, part in feed.batches():
            slots[sym].on_ticks(part)
        await store.close()

    asyncio.run(go())
    for s, cfg, bars in (("EUR_USD", cfg_a, a), ("GBP_USD", cfg_b, b)):
        _, env_obs, _ = run_env(cfg, spec, ex, bars, acts[s])
        daemon = np.array(policies[s].observations)
        assert len(daemon) == len(env_obs) > 250
        assert np.array_equal(daemon, np.array(env_obs)), s
    obs = np.array(policies["EUR_USD"].observations)
    assert obs[:, spec.names.index("x_GBP_USD_ret_1")].std() > 0.3  # the other's returns are there
    # A's own returns seen again through the cross columns: its ret_1, exactly
    assert np.array_equal(obs[:, spec.names.index("x_EUR_USD_ret_1")], obs[:, spec.names.index("ret_1")])
    age = obs[:, spec.names.index("x_GBP_USD_age")]
    assert (age == 0).mean() > 0.9 and age.max() > 0.5  # fresh, except where B's hours are missing


def test_a_row_reads_the_other_instruments_bars_ending_by_its_own_end_and_nothing_later():
    bars = load_bars(EURUSD)[0][:300]
    a_ts = bars["ts_ns"].copy()
    b = bars.copy()
    b["close"] *= np.exp(np.random.default_rng(1).normal(0, 1e-3, len(b)).cumsum())
    lags, v = (1, 4), 24
    x = batch_cross(a_ts, b, HOUR, v, lags, 30)
    # A's bar i ends at a_ts[i] + 1 h, with B's bar i: its return over 4 bars, vol-normalised
    i = 150
    c = np.ascontiguousarray(b["close"])
    want = math.log(c[i] / c[i - 4]) / (_ret_std(c, i, v) * 2.0)
    assert x[i, 1] == pytest.approx(max(-5.0, min(5.0, want)), rel=1e-12) and x[i, 2] == 0.0
    # B's later bars moved: no row up to i changes
    moved = b.copy()
    moved["close"][i + 1 :] *= 1.05
    y = batch_cross(a_ts, moved, HOUR, v, lags, 30)
    assert np.array_equal(x[: i + 1], y[: i + 1], equal_nan=True) and not np.array_equal(x[i + 1 :], y[i + 1 :])
    # B did not trade in A's bar i: A's row i reads B's bar i-1, one bar old
    z = batch_cross(a_ts, np.delete(b, i), HOUR, v, lags, 30)
    assert np.array_equal(z[i, :2], x[i - 1, :2]) and z[i - 1, 2] == 0.0
    assert z[i, 2] == pytest.approx(2 / math.pi * math.atan(1 / 4))
    # not enough of B before T: zero returns, the age at its top
    assert np.array_equal(batch_cross(a_ts, b[200:], HOUR, v, lags, 30)[150], [0.0, 0.0, 1.0])


def test_missing_bars_and_instruments_are_refused_in_one_line(tmp_path):
    a, b, fa, fb = _pair(tmp_path)
    env = {"STAIRWAY_FEATURES__CROSS_INSTRUMENTS": '["GBP_USD"]', "STAIRWAY_DATA__BARS_CSV": str(fa)}
    cfg = load_config(TrainerConfig, ROOT / "config" / "trainer.toml", environ=env)
    spec = FeatureSpec.from_config(cfg)
    with pytest.raises(ConfigError, match=r"lists GBP_USD: data.cross_bars_csv has no bar file for it"):
        history_from_bars(a, cfg, spec)
    env["STAIRWAY_DATA__CROSS_BARS_CSV"] = f'{{"GBP_USD": "{tmp_path / "nope.csv"}"}}'
    cfg = load_config(TrainerConfig, ROOT / "config" / "trainer.toml", environ=env)
    with pytest.raises(ConfigError, match=r"data.cross_bars_csv.GBP_USD = .*nope.csv: No such file"):
        history_from_bars(a, cfg, spec)
    for bad in ('["GBP_USD", "GBP_USD"]', '["gbp usd"]'):
        with pytest.raises(ConfigError, match=r"cross_instruments = .*not broker symbols, or a duplicate"):
            load_config(
                TrainerConfig, ROOT / "config" / "trainer.toml", environ={"STAIRWAY_FEATURES__CROSS_INSTRUMENTS": bad}
            )
    # the daemon reads the other's bars from its own feed: it must trade it
    from stairway.daemon.config import DaemonConfig

    with pytest.raises(
        ConfigError, match=r"features.cross_instruments \['GBP_USD'\]: .*each must be an instrument it trades \(EUR_USD"
    ):
        load_config(
            DaemonConfig,
            ROOT / "config" / "paper.toml",
            environ={"STAIRWAY_FEATURES__CROSS_INSTRUMENTS": '["GBP_USD"]'},
        )


def test_the_shadow_gate_replays_the_other_instrument_beside_the_candidate(tmp_path):
    from stairway.core.errors import DataError
    from stairway.trainer.gates import shadow_replay, shadow_ticks
    from stairway.trainer.shadow_cross import cross_quotes

    a, b, fa, fb = _pair(tmp_path)
    env = {"STAIRWAY_GATES__TICKS_DIR": str(tmp_path / "ticks"), "STAIRWAY_GATES__SHADOW_DAYS": "3"}
    cfg = _cfg("EUR_USD", fa, "GBP_USD", fb).model_copy(
        update={"gates": load_config(TrainerConfig, ROOT / "config/trainer.toml", environ=env).gates}
    )
    spec = FeatureSpec.from_config(cfg)
    ticks, judged, source = shadow_ticks(cfg, spec, cfg.gates, end_ns=1 << 62)
    policy = ScriptedPolicy(np.random.default_rng(3).integers(0, 4, size=200).tolist())
    res = shadow_replay(policy, cfg, spec, cfg.gates, ticks, judged, source, cycle=0)
    assert len(res.days) == 3 and all(d.decisions > 0 for d in res.days)
    # what the candidate saw is what the trainer computes on those bars
    hist = history_from_bars(a, cfg, spec)
    n = len(policy.observations)
    want = hist.features[len(a) - 1 - n : len(a) - 1]
    assert np.array_equal(np.array(policy.observations)[:, : spec.n_market], want)
    assert np.abs(want[:, spec.names.index("x_GBP_USD_ret_1")]).max() > 0.5
    # replaying recordings, the other instrument's recorded days must be there too
    with pytest.raises(DataError, match=r"GBP_USD.*the shadow gate needs GBP_USD's recorded ticks"):
        cross_quotes(cfg, spec, cfg.gates, ticks, "recorded ticks")


def test_training_a_portfolio_fills_in_the_other_instruments_files(tmp_path):
    from stairway.trainer.instruments import per_instrument

    _, _, fa, fb = _pair(tmp_path)
    env = {"STAIRWAY_FEATURES__CROSS_INSTRUMENTS": '["GBP_USD"]'}
    cfg = load_config(TrainerConfig, ROOT / "config/trainer.toml", environ=env)
    got = dict(per_instrument(cfg, [f"EUR_USD={fa}", f"GBP_USD={fb}"]))
    assert got["EUR_USD"].data.cross_bars_csv == {"GBP_USD": fb}
    assert got["GBP_USD"].data.cross_bars_csv == {}  # its own bars are its data.bars_csv


def test_a_portfolio_daemon_trades_models_that_read_each_others_returns(tmp_path):
    """End to end from the shipped paper config: two instruments, each model trained on a spec
    with both instruments' returns; every bar decided, no policy error, orders on both."""
    from stairway.daemon.app import run_daemon
    from tests.helpers import daemon_config, portfolio_bars, portfolio_config, tiny_checkpoint

    files = portfolio_bars(tmp_path)
    files = {s: files[s] for s in ("EUR_USD", "GBP_USD")}
    cfg, _ = daemon_config(tmp_path, files["EUR_USD"], "2017-10-01", "2017-10-28")
    cfg = portfolio_config(cfg, files)
    feats = cfg.features.model_copy(update={"cross_instruments": ("EUR_USD", "GBP_USD")})
    cfg = cfg.model_copy(update={"features": feats})
    spec = FeatureSpec.from_config(cfg)
    assert "x_GBP_USD_ret_1" in spec.names
    for k, sym in enumerate(files):
        tiny_checkpoint(tmp_path / "models" / sym, spec, seed=3 + k)
    res = asyncio.run(run_daemon(cfg))
    for sym in files:
        c = res.instruments[sym]["counters"]
        assert c["decisions"] > 300 and c["policy_errors"] == 0 and c["orders"] > 3, (sym, c)
