import datetime as dt

import pytest

from stairway.core.calendar import market_open
from stairway.core.policy import ModelCard
from stairway.daemon.risk import RiskConfig, RiskEngine

LOT = 100_000.0


def engine(**kw):
    return RiskEngine(RiskConfig(**kw), LOT, period_minutes=1)


def ns(y, mo, d, h, mi=0):
    return int(dt.datetime(y, mo, d, h, mi, tzinfo=dt.UTC).timestamp()) * 10**9


def test_drawdown_tiers_in_order_and_flatten_latches():
    r = engine()
    seq = [(100_000, 0), (98_600, 0), (98_500, 1), (98_200, 2), (98_000, 3), (97_500, 4), (99_900, 0)]
    for eq, tier in seq:
        r.on_equity(eq, 100_000.0)
        assert r.state.tier == tier
    assert r.state.halted  # recovered equity does not lift the halt
    assert r.check("X", 0.0, LOT).units == 0.0 and r.check("X", 0.0, LOT).kind == "halted"
    r.resume()
    assert r.check("X", 0.0, LOT).units == LOT


def test_halve_size_and_stop_opening_allow_closing():
    r = engine()
    r.on_equity(98_200, 100_000)
    assert r.size_factor == 0.5
    r.on_equity(97_900, 100_000)
    d = r.check("X", LOT, -2 * LOT)  # a reversal is cut down to a close
    assert d.units == -LOT and d.kind == "stop_opening"
    assert r.check("X", LOT, -LOT).units == -LOT  # closing always allowed


def test_position_limits_order_cap_and_overall_limit():
    r = engine(max_total_lots=1.5, max_order_lots=1.0)
    assert r.check("A", 0.0, 3 * LOT).units == LOT
    r.on_position("B", LOT)
    d = r.check("A", 0.0, LOT)
    assert d.units == 0.5 * LOT and d.kind == "position_limit"
    d = engine(max_order_lots=1.0).check("A", -LOT, 2 * LOT)  # a reversal bigger than the cap
    assert d.units == LOT and "order cap" in d.note


def test_daily_trade_cap_and_observe_only_and_market_and_stale():
    r = engine(max_trades_per_day=2)
    r.new_day(1)
    r.on_order("A")
    r.on_order("A")
    assert r.check("A", 0.0, LOT).kind == "trade_cap"
    r.new_day(2)
    assert r.check("A", 0.0, LOT).units == LOT
    assert r.check("A", 0.0, LOT, market_is_open=False).kind == "market_closed"
    assert r.check("A", 0.0, LOT, quote_gap_secs=500).kind == "stale_data"
    assert r.check("A", LOT, -LOT, quote_gap_secs=500).units == -LOT  # exits still allowed
    r.permission.control(False)  # START_TRADING removed: the control files' one switch
    assert r.check("A", 0.0, LOT).kind == "observe_only"
    assert r.check("A", -LOT, 2 * LOT).units == LOT  # a blocked reversal only closes
    assert r.check("A", 0.5 * LOT, 0.5 * LOT).units == 0.0  # a blocked add does nothing
    r.permission.control(True)
    r.permission.set_stale("A", True)  # the feed: no price for A lately
    d = r.check("A", 0.0, LOT)
    assert d.kind == "stale_data" and "no price lately" in d.note
    assert r.check("B", 0.0, LOT).units == LOT  # per instrument
    r.permission.set_stale("A", False)
    r.permission.reconciled("A", False)  # the reconciler: A's book not confirmed yet
    assert r.check("A", LOT, -LOT).kind == "not_reconciled"  # not even a reduction
    assert r.check("B", 0.0, LOT).units == LOT


def test_overfill_refused_excess_and_three_violations_halt():
    r = engine()
    assert r.check_fill(LOT, 1.1 * LOT) == 0.0  # exactly 10 % over is tolerated
    assert r.check_fill(LOT, 1.5 * LOT) == pytest.approx(0.5 * LOT)
    assert r.check_fill(-LOT, -2 * LOT) == pytest.approx(-LOT)
    assert not r.state.halted
    r.check_fill(LOT, 3 * LOT)
    assert r.state.halted and "3 over-fill violations" in r.state.halted_reason


def test_sessions_out_of_band_alert_after_three():
    r = engine()
    assert [r.on_session_closed(t) for t in (2, 30, 1)] == [False, False, True]
    assert r.on_session_closed(10) is False and r.state.sessions_out_of_band == 0


def test_market_hours():
    assert market_open(ns(2017, 10, 4, 12), "fx")  # Wednesday
    assert not market_open(ns(2017, 10, 7, 12), "fx")  # Saturday
    assert not market_open(ns(2017, 10, 6, 21, 30), "fx")  # Friday 17:30 New York (EDT)
    assert market_open(ns(2017, 10, 8, 21, 30), "fx")  # Sunday 17:30 New York
    assert market_open(ns(2017, 10, 4, 14), "us_equity")  # 10:00 New York
    assert not market_open(ns(2017, 10, 4, 13), "us_equity")  # 09:00 New York
    assert not market_open(ns(2017, 10, 4, 20, 30), "us_equity")  # 16:30 New York
    assert not market_open(ns(2017, 12, 25, 15), "us_equity", (dt.date(2017, 12, 25),))


@pytest.mark.parametrize("action", ["alert", "stop_opening"])
def test_an_expired_model_stops_opening_only_when_configured(action):
    """Issue 22 §4 (FreqAI's expiry): with service.expired_model_action = "stop_opening" an
    instrument whose model is older than max_model_age_days opens nothing (a reversal only
    closes), closing goes on, other instruments trade; a newer model lifts it. "alert" leaves
    trading alone (/health says so)."""
    from types import SimpleNamespace

    from stairway.daemon.risk import expire_models

    def slot(days_old: float):
        made = dt.datetime.now(dt.UTC) - dt.timedelta(days=days_old)
        return SimpleNamespace(policy=SimpleNamespace(card=ModelCard(created_at=made.isoformat()), sha="f" * 64))

    r = engine()
    slots = {"A": slot(31.0), "B": slot(2.0)}
    expire_models(slots, 30.0, action, r.permission)
    blocked = action == "stop_opening"
    assert (r.check("A", 0.0, LOT).kind == "model_expired") is blocked
    assert r.check("A", -LOT, 2 * LOT).units == (LOT if blocked else 2 * LOT)  # a blocked reversal only closes
    assert r.check("A", LOT, -LOT).units == -LOT  # closing goes on
    assert r.check("B", 0.0, LOT).units == LOT
    slots["A"] = slot(0.5)  # a newer model swapped in
    expire_models(slots, 30.0, action, r.permission)
    assert r.check("A", 0.0, LOT).units == LOT
