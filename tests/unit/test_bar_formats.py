"""Issue 22 §4: the bar files users bring from MetaTrader and Dukascopy, US dates with an explicit
format, and a file clock that is not UTC (core.bar_formats). Each layout below is what the
platform writes (MT4's History Center export, MT5's "Export bars", Dukascopy's historical data
feed CSV); each must give the same UTC bars as the ISO file of the same prices."""

from __future__ import annotations

import pytest

from stairway.cli import main as cli_main
from stairway.core.bar_files import load_bars
from stairway.core.bar_formats import TimeFormat, parse_timestamp_ns, parse_utc_offset
from stairway.core.errors import DataError
from tests.helpers import shipped_text

PRICES = [  # open, high, low, close, volume of three hourly EUR/USD bars, 2 Jan 2017 00:00-02:00 UTC
    ("1.05155", "1.05213", "1.05140", "1.05190", "355"),
    ("1.05190", "1.05320", "1.05170", "1.05300", "412"),
    ("1.05300", "1.05330", "1.05220", "1.05240", "390"),
]
UTC_HOURS = ["2017-01-02 00:00", "2017-01-02 01:00", "2017-01-02 02:00"]


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def iso_file(tmp_path):
    rows = "".join(f"{t},{','.join(p)}\n" for t, p in zip(UTC_HOURS, PRICES, strict=True))
    return write(tmp_path, "iso.csv", "time,open,high,low,close,volume\n" + rows)


def same_bars(a, b) -> bool:
    return a.tolist() == b.tolist()


def test_metatrader_4_headerless_export(tmp_path):
    rows = "".join(f"2017.01.02,{h:02d}:00,{','.join(p)}\n" for h, p in enumerate(PRICES))
    bars, report = load_bars(write(tmp_path, "EURUSD60.csv", rows))
    assert same_bars(bars, load_bars(iso_file(tmp_path))[0]) and report.rows == 3
    # a bad price on MT4's first line (no header) is line 1
    spoiled = rows.replace("1.05155", "x", 1)
    with pytest.raises(DataError, match=r"EURUSD60\.csv: line 1: open 'x' is not a number"):
        load_bars(write(tmp_path, "EURUSD60.csv", spoiled))


def test_metatrader_5_tab_separated_export_with_date_and_time_columns(tmp_path):
    head = "<DATE>\t<TIME>\t<OPEN>\t<HIGH>\t<LOW>\t<CLOSE>\t<TICKVOL>\t<VOL>\t<SPREAD>\n"
    rows = "".join(f"2017.01.02\t{h:02d}:00:00\t{chr(9).join(p)}\t0\t12\n" for h, p in enumerate(PRICES))
    bars, _ = load_bars(write(tmp_path, "EURUSD_H1.csv", head + rows))
    assert same_bars(bars, load_bars(iso_file(tmp_path))[0])  # TICKVOL is the volume
    # Date and Time as plain comma-separated columns, times without seconds
    plain = "Date,Time,Open,High,Low,Close,Volume\n" + "".join(
        f"2017.01.02,{h:02d}:00,{','.join(p)}\n" for h, p in enumerate(PRICES)
    )
    assert same_bars(load_bars(write(tmp_path, "mt.csv", plain))[0], bars)


def test_metatrader_server_clock_is_moved_to_utc_by_the_offset_given(tmp_path):
    # the broker's server at GMT+2: its 02:00 is 00:00 UTC
    rows = "".join(f"2017.01.02,{h + 2:02d}:00,{','.join(p)}\n" for h, p in enumerate(PRICES))
    path = write(tmp_path, "EURUSD60.csv", rows)
    bars, _ = load_bars(path, times=TimeFormat(utc_offset_minutes=parse_utc_offset("+02:00")))
    assert same_bars(bars, load_bars(iso_file(tmp_path))[0])
    assert load_bars(path)[0]["ts_ns"][0] - bars["ts_ns"][0] == 2 * 3600 * 10**9  # read as UTC without it


def test_dukascopy_gmt_and_local_time_exports(tmp_path):
    gmt = "Gmt time,Open,High,Low,Close,Volume\n" + "".join(
        f"02.01.2017 {h:02d}:00:00.000,{','.join(p)}\n" for h, p in enumerate(PRICES)
    )
    local = "Local time,Open,High,Low,Close,Volume\n" + "".join(
        f"02.01.2017 {h + 1:02d}:00:00.000 GMT+0100,{','.join(p)}\n" for h, p in enumerate(PRICES)
    )
    want = load_bars(iso_file(tmp_path))[0]
    assert same_bars(load_bars(write(tmp_path, "EURUSD_Candlestick_1_Hour_BID.csv", gmt))[0], want)
    assert same_bars(load_bars(write(tmp_path, "local.csv", local))[0], want)


def test_us_dates_need_an_explicit_format_and_rows_that_miss_it_are_named(tmp_path):
    us = "Date,Open,High,Low,Close\n" + "".join(f"1/2/2017 {h}:00,{','.join(p[:4])}\n" for h, p in enumerate(PRICES))
    path = write(tmp_path, "us.csv", us)
    with pytest.raises(DataError, match=r"us\.csv: line 2: .*'1/2/2017 0:00'.*--date-format '%m/%d/%Y %H:%M'"):
        load_bars(path)
    bars, _ = load_bars(path, times=TimeFormat("%m/%d/%Y %H:%M"))
    assert bars["ts_ns"].tolist() == [parse_timestamp_ns(t) for t in UTC_HOURS]
    # the same text read day-first is another day: the format decides, nothing is guessed
    assert load_bars(path, times=TimeFormat("%d/%m/%Y %H:%M"))[0]["ts_ns"][0] == parse_timestamp_ns("2017-02-01")
    spoiled = write(tmp_path, "us2.csv", us.replace("1/2/2017 2:00", "2017-01-02 02:00"))
    with pytest.raises(DataError, match=r"us2\.csv: line 4: timestamp '2017-01-02 02:00' does not match .*%m/%d/%Y"):
        load_bars(spoiled, times=TimeFormat("%m/%d/%Y %H:%M"))


def test_time_format_and_offset_refusals_name_the_value():
    with pytest.raises(ValueError, match="'mm/dd/yyyy' has no strptime directive"):
        TimeFormat("mm/dd/yyyy")
    with pytest.raises(ValueError, match="UTC offset 'GMT\\+2' is not like"):
        parse_utc_offset("GMT+2")
    with pytest.raises(ValueError, match="beyond"):
        TimeFormat(utc_offset_minutes=parse_utc_offset("+15:00"))
    assert [parse_utc_offset(t) for t in ("+2", "-0530", "0", "+02:00")] == [120, -330, 0, 120]


def test_data_import_command_takes_the_format_and_stores_utc(tmp_path, capsys):
    cfg = write(
        tmp_path,
        "trainer.toml",
        shipped_text("trainer.toml").replace('gate_db = "state/gate.db"', 'gate_db = "g.db"'),
    )
    base = ["data", "--config", str(cfg), "--store", str(tmp_path / "store"), "import"]
    rows = "".join(f"2017.01.02,{h + 2:02d}:00,{','.join(PRICES[h % 3])}\n" for h in range(20))  # GMT+2
    mt4 = write(tmp_path, "EURUSD60.csv", rows)
    assert cli_main([*base, str(mt4), "--utc-offset", "+02:00"]) == 0
    assert "imported 20 bars of EUR_USD" in capsys.readouterr().out
    stored = load_bars(tmp_path / "store" / "EUR_USD" / "imported" / "EURUSD60.csv")[0]
    assert stored["ts_ns"][0] == parse_timestamp_ns("2017-01-02 00:00")
    # bad options: one line each, naming the value
    for opt, fragment in ((["--date-format", "mm/dd"], "'mm/dd' has no strptime"), (["--utc-offset", "x"], "'x'")):
        assert cli_main([*base, str(mt4), *opt]) == 2
        err = capsys.readouterr().err.strip()
        assert fragment in err and err.count("\n") == 0, err
