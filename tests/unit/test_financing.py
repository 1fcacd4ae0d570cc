"""Holding costs (core.execution): which daily rolls a span of time crosses and what they charge."""

import datetime as dt

import pytest

from stairway.core.config import ExecutionConfig, InstrumentConfig
from stairway.core.execution import ExecutionModel, financing_charge, financing_days

H = 3_600_000_000_000
ROLL = 21 * H


def t(y, m, d, hh=0, mm=0) -> int:
    return int(dt.datetime(y, m, d, hh, mm, tzinfo=dt.UTC).timestamp()) * 10**9


def test_a_week_of_rolls_charges_seven_days_with_wednesday_carrying_the_weekend():
    mon = t(2017, 10, 2)  # a Monday
    per_day = [financing_days(mon + k * 24 * H, mon + (k + 1) * 24 * H, ROLL, 2) for k in range(7)]
    assert per_day == [1.0, 1.0, 3.0, 1.0, 1.0, 0.0, 0.0]
    assert financing_days(mon, mon + 7 * 24 * H, ROLL, 2) == 7.0
    assert financing_days(mon, mon + 7 * 24 * H, ROLL, 4) == 7.0  # Friday carries it instead
    assert financing_days(mon, mon + 24 * H, ROLL, 0) == 3.0
    # bounds: a roll exactly at the end is in, exactly at the start is out; hours around it none
    assert financing_days(mon + 20 * H, mon + 21 * H, ROLL, 2) == 1.0
    assert financing_days(mon + 21 * H, mon + 22 * H, ROLL, 2) == 0.0
    assert financing_days(mon + 22 * H, mon + 24 * H + 20 * H, ROLL, 2) == 0.0
    assert financing_days(mon + 5 * H, mon + 5 * H, ROLL, 2) == 0.0
    assert financing_days(mon + 5 * H, mon, ROLL, 2) == 0.0  # time never runs back
    # Friday's last hour to Sunday's first: Friday's roll only
    assert financing_days(t(2017, 10, 6, 20), t(2017, 10, 8, 22), ROLL, 2) == 1.0


def test_the_charge_is_notional_times_the_sides_rate_per_365_days():
    assert financing_charge(100_000.0, 1.1, 1.1002, 0.03, -0.01, 1.0) == pytest.approx(100_000 * 1.1001 * 0.03 / 365)
    assert financing_charge(-100_000.0, 1.1, 1.1002, 0.03, -0.01, 3.0) == pytest.approx(
        -100_000 * 1.1001 * 0.01 * 3 / 365
    )  # a credit: negative
    assert financing_charge(0.0, 1.1, 1.1002, 0.03, 0.03, 1.0) == 0.0
    assert financing_charge(100_000.0, 1.1, 1.1002, 0.03, 0.03, 0.0) == 0.0


def test_config_converts_rates_and_refuses_nonsense():
    ex = ExecutionModel.from_config(
        ExecutionConfig(financing_long_pct_per_year=2.5, financing_roll_hour_utc=22, financing_triple_weekday="friday"),
        InstrumentConfig(),
    )
    assert (ex.financing_long, ex.financing_short, ex.roll_offset_ns, ex.triple_weekday) == (0.025, 0.0, 22 * H, 4)
    assert ex.finances and not ExecutionModel.from_config(ExecutionConfig(), InstrumentConfig()).finances
    for bad in (
        {"financing_long_pct_per_year": 250},
        {"financing_roll_hour_utc": 24},
        {"financing_triple_weekday": "sat"},
    ):
        with pytest.raises(ValueError):
            ExecutionConfig(**bad)
