"""Issue 13 §5: the live guard's rolling metrics and its breach rule."""

import math

from stairway.daemon.live_guard import LiveGuard
from stairway.daemon.sessions import SessionStats


def session(pnl, decisions=24, holds=20, orders=2, day=0):
    s = SessionStats(day, 100_000.0, decisions=decisions, holds=holds, orders=orders)
    s.equity_close = 100_000.0 + pnl
    return s


def test_rolling_metrics_over_the_window():
    g = LiveGuard(100_000.0, window_days=4, min_days=2)
    for pnl in (100, -50, 200, 0, 300):  # the window keeps the last 4
        g.on_session(session(pnl))
    r = [-0.0005, 0.002, 0.0, 0.003]
    m = sum(r) / 4
    sd = math.sqrt(sum((x - m) ** 2 for x in r) / 3)
    assert math.isclose(g.sharpe, m / sd * math.sqrt(252))
    assert g.hold_rate == 80 / 96 and g.orders_per_session == 2.0
    assert g.on_session(session(0, decisions=0)).breached is False and len(g.returns) == 4  # no decisions: skipped


def test_breach_after_n_sessions_below_once_per_breach():
    g = LiveGuard(100_000.0, window_days=30, min_sharpe=0.5, breach_days=3, min_days=5)
    verdicts = [g.on_session(session(pnl)) for pnl in (10, -20, 15, -30, -5, -10, -40, -5, -5)]
    hits = [k for k, v in enumerate(verdicts) if v.breached]
    # judged from the 5th session on; below 0.5 from then on; the 3rd in a row (the 7th) breaches, once
    assert hits == [6] and "below 0.5 for 3 sessions in a row" in verdicts[6].detail
    for pnl in (500, 800, 900, 700, 600, 900, 1000, 800):  # recovers: the count resets
        g.on_session(session(pnl))
    assert g.days_below == 0 and g.breaches == 1


def test_pnl_below_the_validation_expectation_is_reported_once_per_run_of_sessions():
    from stairway.daemon.live_guard import expectation

    validation = {"pnl_pct": 10.0, "calendar_days": 365.25, "sharpe": 2.0}  # 0.0397 %/day, sd 0.315 %/day
    m, sd = expectation(validation)
    assert math.isclose(m, 0.10 / 252) and math.isclose(sd, m * math.sqrt(252) / 2.0)
    for promise in (None, {}, {"pnl_pct": 5.0, "calendar_days": 90, "sharpe": -0.3}, {"pnl_pct": "x"}):
        assert expectation(promise) is None  # no positive promise: nothing to fall short of
    g = LiveGuard(100_000.0, window_days=30, min_sharpe=-99.0, min_days=5, pnl_z_limit=2.0)
    g.set_expectation(validation)
    # losing 0.4 %/day for 10 days: z ~ -(0.44 %)/(0.315 %/sqrt(n)) -> below -2 from the 5th session
    verdicts = [g.on_session(session(-400)) for _ in range(10)]
    notes = [k for k, v in enumerate(verdicts) if v.below_expectation]
    assert notes == [4] and "standard errors below the validation's +0.040 %/day" in verdicts[4].below_expectation
    assert g.pnl_z < -2.0 and g.below_expected_days == 6
    g.set_expectation(None)  # a swap to a model that promises nothing
    assert g.pnl_z == 0.0 and not g.on_session(session(-400)).below_expectation
    # earning what was promised never trips it
    ok = LiveGuard(100_000.0, window_days=30, min_sharpe=-99.0, min_days=5)
    ok.set_expectation(validation)
    assert not any(ok.on_session(session(40 + (k % 3 - 1) * 300)).below_expectation for k in range(20))
