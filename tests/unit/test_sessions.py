"""Issue 11 §4: session starts are indexed once; sessions with a gap longer than the limit or
crossing a weekend are rejected and counted; the env draws only indexed starts."""

import datetime as dt

import numpy as np
import pytest

from stairway.core.errors import ConfigError
from stairway.trainer.cycles import train_cycles
from stairway.trainer.env import VecTradingEnv
from stairway.trainer.prepared import prepare_data, session_index
from stairway.trainer.sessions import index_sessions, week_of
from tests.unit.test_muzero_trainer import cfg

H = 3_600 * 10**9


def ts(*stamps: str) -> np.ndarray:
    return np.array([int(dt.datetime.fromisoformat(s).replace(tzinfo=dt.UTC).timestamp()) * 10**9 for s in stamps])


def test_gap_and_weekend_rejection_on_a_known_calendar():
    # Fri 2017-01-06 19:00 .. 21:00, Sun 2017-01-08 22:00 .. 23:00, Mon 00:00, a missing 01:00, 02:00 .. 04:00
    bars = ts(
        "2017-01-06T19:00",
        "2017-01-06T20:00",
        "2017-01-06T21:00",
        "2017-01-08T22:00",
        "2017-01-08T23:00",
        "2017-01-09T00:00",
        "2017-01-09T02:00",
        "2017-01-09T03:00",
        "2017-01-09T04:00",
    )
    # sessions of 2 decisions span 3 bars: starts 0..6
    idx = index_sessions(bars, 0, 7, 2, H, max_gap_ns=10 * 60 * 10**9, reject_weekend=True)
    assert idx.candidates == 7
    # start 0: 19,20,21 ok; 1: 20,21,Sun22 -> gap (the weekend is a gap too: counted as gap)
    # 2: 21,Sun22,23 gap; 3: Sun22,23,00 ok; 4: 23,00,02 gap; 5: 00,02,03 gap; 6: 02,03,04 ok
    assert idx.starts.tolist() == [0, 3, 6]
    assert (idx.gap_rejected, idx.weekend_rejected) == (4, 0)
    # without the gap check the weekend check alone catches the sessions that span it
    idx = index_sessions(bars, 0, 7, 2, H, max_gap_ns=None, reject_weekend=True)
    assert idx.starts.tolist() == [0, 3, 4, 5, 6] and idx.weekend_rejected == 2 and idx.gap_rejected == 0
    # a gap limit that tolerates 2 missing hours keeps the Monday gap, never the weekend
    idx = index_sessions(bars, 0, 7, 2, H, max_gap_ns=2 * H, reject_weekend=False)
    assert idx.starts.tolist() == [0, 3, 4, 5, 6]
    assert "5 of 7 session starts kept (2 rejected for a gap" in idx.describe()
    # no checks: every start
    assert index_sessions(bars, 0, 7, 2, H).starts.tolist() == list(range(7))


def test_the_week_turns_on_saturday():
    fri, sat_am, sat_pm, sun = ts("2017-01-06T23:00", "2017-01-07T11:00", "2017-01-07T13:00", "2017-01-08T22:00")
    w = week_of(np.array([fri, sat_am, sat_pm, sun]))
    assert w[0] == w[1] and w[2] == w[3] and w[1] + 1 == w[2]


def test_real_eurusd_hours_sessions_and_the_env_draws_only_indexed_starts():
    c = cfg(
        STAIRWAY_TRAIN__SESSION_MINUTES="1440",
        STAIRWAY_TRAIN__MAX_GAP_MINUTES="10",
        STAIRWAY_TRAIN__REJECT_WEEKEND="true",
    )
    d = prepare_data(c)
    idx = session_index(c, d)
    ts_ = d.history.bars["ts_ns"]
    L = d.session_len
    assert L == 24 and idx.candidates > len(idx.starts) > 0
    assert idx.gap_rejected > 0 and idx.weekend_rejected == 0  # the weekend's 48 h are a gap, counted as one
    no_gap = session_index(cfg(STAIRWAY_TRAIN__SESSION_MINUTES="1440", STAIRWAY_TRAIN__REJECT_WEEKEND="true"), d)
    assert no_gap.weekend_rejected == idx.gap_rejected and no_gap.starts.tolist() == idx.starts.tolist()
    for s in idx.starts:  # every kept day is 25 bars an hour apart within one week
        assert np.all(np.diff(ts_[s : s + L + 1]) == H) and week_of(ts_[s]) == week_of(ts_[s + L])
    env = VecTradingEnv(
        d.history, d.spec, d.ex, 100_000.0, 64, L, seed=3, first_bar=0, last_bar=d.split - 2, session_starts=idx.starts
    )
    env.reset()
    seen = set(env.bar.tolist())
    for _ in range(3 * L):
        env.step(np.zeros(64, np.int64))
        seen |= {int(b) for b, s in zip(env.bar, env.steps) if s == 0}
    assert seen <= set(idx.starts.tolist()) and len(seen) > 64


def test_checks_that_leave_no_session_are_refused_with_the_counts():
    c = cfg(STAIRWAY_TRAIN__SESSION_MINUTES="10080", STAIRWAY_TRAIN__REJECT_WEEKEND="true")  # a week always spans one
    d = prepare_data(c)
    with pytest.raises(ConfigError, match=r"train.reject_weekend = True .* 0 of \d+ session starts kept"):
        train_cycles(c, d)
    with pytest.raises(ValueError, match="session starts must lie"):
        VecTradingEnv(
            d.history, d.spec, d.ex, 100_000.0, 2, 24, seed=0, last_bar=d.split - 2, session_starts=np.array([0])
        )


def test_the_shipped_muzero_config_trains_on_day_sessions_without_gaps():
    from stairway.core.config import load_config
    from stairway.trainer.config import TrainerConfig
    from tests.helpers import ROOT

    c = load_config(TrainerConfig, ROOT / "config/trainer-muzero.toml", environ={})
    assert c.train.algo == "muzero" and c.muzero.simulations == 15 and c.muzero.temperature == (1.0, 0.25)
    assert max(c.muzero.horizons) == 24 == c.train.session_minutes // 60  # the longest horizon: the session
    assert c.muzero.horizons == (2, 4, 8, 24) and c.muzero.demean
    d = prepare_data(c)
    idx = session_index(c, d)
    assert d.session_len == 24 and idx.gap_rejected >= 30 * 20 and len(idx.starts) > 3000
    ts_ = d.history.bars["ts_ns"]
    assert all(ts_[s + 24] - ts_[s] == 24 * H for s in idx.starts)
