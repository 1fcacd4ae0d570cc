import math

import pytest

from stairway.core.metrics import PerformanceTracker, format_summary
from stairway.core.types import NS_PER_DAY, Action

PIP, UNITS = 0.0001, 100_000.0  # 1 pip on one unit = 10 currency


def test_tracker_hand_computed_series():
    t = PerformanceTracker(100_000.0, PIP, UNITS)
    day = NS_PER_DAY
    # day 0: open long, equity 100_100; day 1: close with +20 pips (realised 200), then short;
    # day 2: short closed at -10 pips (realised 200 - 100 = 100), flat.
    seq = [
        (0 * day, 0.0, 0.0, 100_000.0, Action.BUY),
        (0 * day + 1, UNITS, 0.0, 100_100.0, Action.HOLD),
        (1 * day, 0.0, 200.0, 100_200.0, Action.SELL),
        (1 * day + 1, -UNITS, 200.0, 100_050.0, Action.HOLD),
        (2 * day, 0.0, 100.0, 100_100.0, Action.HOLD),
    ]
    for ts, units, realized, eq, a in seq:
        t.on_bar(ts, units, realized, eq)
        t.on_decision(a)
    s = t.summary()
    assert s["trades"] == 2
    assert s["pnl"] == pytest.approx(100.0) and s["pnl_pips"] == pytest.approx(10.0)
    assert s["pnl_pct"] == pytest.approx(0.1)
    assert s["max_drawdown_pct"] == pytest.approx(100 * 150 / 100_200)
    assert s["win_rate"] == 0.5 and s["profit_factor"] == pytest.approx(2.0)
    assert s["expectancy_pips"] == pytest.approx(5.0)
    assert s["sqn"] == pytest.approx(5.0 / math.sqrt(((20 - 5) ** 2 + (-10 - 5) ** 2) / 1) * math.sqrt(2))
    assert s["hold_rate"] == pytest.approx(3 / 5)
    assert s["long_pct"] == pytest.approx(20.0) and s["short_pct"] == pytest.approx(20.0)  # 1 of 5 bars each
    assert any(
        line.startswith("bars long (%)") and line.endswith(" 20.0") for line in format_summary({"x": s}).splitlines()
    )
    assert s["days"] == 3 and s["trades_per_day"] == pytest.approx(2 / 3)
    # daily close equities: 100_000 (start), 100_100, 100_050, 100_100 -> returns +0.1%, -0.05%, +0.05%
    r = [0.001, -0.0005, 0.0005]
    m = sum(r) / 3
    sd = math.sqrt(sum((x - m) ** 2 for x in r) / 3)
    assert s["sharpe"] == pytest.approx(m / sd * math.sqrt(252))
    assert s["sortino"] == pytest.approx(m / math.sqrt(0.0005**2 / 3) * math.sqrt(252))


def test_tracker_with_no_trades_reports_zeros_not_nan():
    t = PerformanceTracker(1000.0, PIP, UNITS)
    t.on_bar(0, 0.0, 0.0, 1000.0)
    s = t.summary()
    assert s["trades"] == 0 and s["sqn"] == 0.0 and s["profit_factor"] == 0.0 and s["sharpe"] == 0.0
    assert "trades (open one marked)" in format_summary({"x": s})


# -- issue 10.1: measurement biases ------------------------------------------------------


def test_trade_pnl_carries_both_commissions_and_open_trade_is_marked():
    comm = 0.2 * PIP  # per unit per side
    t = PerformanceTracker(100_000.0, PIP, UNITS, comm)
    c = comm * UNITS  # one side's commission on one lot: 2 currency = 0.2 pips
    day = NS_PER_DAY
    # open long (commission c), close +20 pips gross (c) and reverse short (c) in one fill,
    # then the short is open at the end, marked -5 pips gross
    t.on_bar(0, UNITS, -c, 100_000.0 - c)
    t.on_bar(day, -UNITS, 200.0 - 3 * c, 100_200.0 - 3 * c)
    t.on_bar(2 * day, -UNITS, 200.0 - 3 * c, 100_150.0 - 3 * c)
    s = t.summary()
    r = t.all_trade_pips()
    assert r[0] == pytest.approx(20.0 - 0.4)  # both of the long's commissions, not one or three
    assert r[1] == pytest.approx(-5.0 - 0.4)  # the short, marked, its closing commission included
    assert s["trades"] == 2 and s["open_trade_marked"] == 1
    assert sum(r) * PIP * UNITS == pytest.approx(s["pnl"] - c)  # trades add up to PnL less the closing cost
    assert s["calendar_days"] == 2.0 and s["days"] == 3


def test_quality_words_need_thirty_trades():
    t = PerformanceTracker(100_000.0, PIP, UNITS)
    t.on_bar(0, UNITS, 0.0, 100_000.0)
    t.on_bar(1, 0.0, 100.0, 100_100.0)
    text = format_summary({"policy": t.summary()})
    assert text.count("too few trades (1)") == 4  # SQN, win rate, profit factor, expectancy
    win = next(ln for ln in text.splitlines() if ln.startswith("win rate"))
    assert "100.0%" not in win and "inf" not in text
    many = dict(t.summary(), trades=30)
    assert "too few trades" not in format_summary({"policy": many})


def test_a_hold_is_a_decision_that_leaves_the_target_position_alone():
    """Issue 20: under target-position semantics a BUY while long is a hold; counting HOLD
    actions alone refused a mean-reversion policy that re-asserts its side every bar (4 %)."""
    from stairway.core.metrics import PerformanceTracker

    t = PerformanceTracker(100_000.0, 1e-4, 100_000.0, 0.0)
    lot = 100_000.0
    cases = [(0, 0.0, True), (1, 0.0, False), (1, lot, True), (2, lot, False), (2, -lot, True), (3, 0.0, True)]
    cases += [(3, lot, False), (1, 0.5 * lot, False)]  # a halved position topped up is an order
    assert [t.on_decision(a, u) for a, u, _ in cases] == [h for _, _, h in cases]
    assert t.summary()["hold_rate"] == 4 / 8
