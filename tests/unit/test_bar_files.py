import numpy as np
import pytest

from core.bar_files import load_bars, parse_timestamp_ns
from core.errors import DataError
from tests.helpers import EURUSD, write_bars_csv

HEADER = "Time,Open,High,Low,Close,Volume\n"
GOOD = ["02.01.2017 00:00:00.000,1.1,1.2,1.0,1.15,10\n", "02.01.2017 01:00:00.000,1.15,1.2,1.1,1.12,11\n"]


def write(tmp_path, text):
    p = tmp_path / "bars.csv"
    p.write_text(text)
    return p


def test_load_bars_real_eurusd_file_has_expected_shape_and_gaps():
    bars, report = load_bars(EURUSD)
    assert len(bars) == 6225 and report.rows == 6225
    assert report.period_minutes == 60
    assert report.weekend_gaps == 51
    assert report.other_gaps == 1  # Christmas 2017
    assert np.all(np.diff(bars["ts_ns"]) > 0)
    assert bars["ts_ns"][0] == parse_timestamp_ns("2017-01-01 22:00")
    assert bars["close"][0] == 1.05227


def test_parse_timestamp_day_first_and_iso_agree():
    assert parse_timestamp_ns("13.02.2017 05:00:00.250") == parse_timestamp_ns("2017-02-13T05:00:00.25Z")


@pytest.mark.parametrize(
    "rows, fragment",
    [
        ([GOOD[1], GOOD[0]], "line 3: timestamp '02.01.2017 00:00:00.000' is earlier"),
        ([GOOD[0], GOOD[0]], "line 3: duplicate timestamp"),
        (["02.01.2017 00:00:00.000,1.1,1.2,1.0,1.25,10\n"], "line 2: inconsistent OHLC"),
        (["02.01.2017 00:00:00.000,1.1,1.05,1.0,1.02,10\n"], "line 2: inconsistent OHLC"),
        (["02.01.2017 00:00:00.000,-1.1,1.2,1.0,1.15,10\n"], "line 2: open '-1.1' must be a positive finite price"),
        (["02.01.2017 00:00:00.000,1.1,nan,1.0,1.15,10\n"], "line 2: high 'nan' must be a positive finite price"),
        (["02.01.2017 00:00:00.000,1.1,1.2,abc,1.15,10\n"], "line 2: low 'abc' is not a number"),
        (["2017/01/02 00:00,1.1,1.2,1.0,1.15,10\n"], "line 2: timestamp '2017/01/02 00:00' is neither"),
        (["31.02.2017 00:00:00.000,1.1,1.2,1.0,1.15,10\n"], "not a valid date"),
        (["02.01.2017 00:00:00.000,1.1,1.2,1.0\n"], "line 2: expected 6 fields, found 4"),
        (["02.01.2017 00:00:00.000,1.1,1.2,1.0,1.15,-5\n"], "line 2: volume '-5'"),
    ],
)
def test_load_bars_bad_rows_rejected_with_file_line_and_problem(tmp_path, rows, fragment):
    p = write(tmp_path, HEADER + "".join(rows))
    with pytest.raises(DataError) as e:
        load_bars(p)
    assert str(p) in str(e.value)
    assert fragment in str(e.value)


def test_load_bars_missing_column_named(tmp_path):
    p = write(tmp_path, "Time,Open,High,Close,Volume\n02.01.2017 00:00:00.000,1.1,1.2,1.15,10\n")
    with pytest.raises(DataError, match=r"missing required column\(s\) \['low'\]"):
        load_bars(p)


@pytest.mark.parametrize("text, fragment", [("", "file is empty"), (HEADER, "no data rows")])
def test_load_bars_empty_files_rejected(tmp_path, text, fragment):
    with pytest.raises(DataError, match=fragment):
        load_bars(write(tmp_path, text))


def test_load_bars_missing_file_named(tmp_path):
    with pytest.raises(DataError, match="bar file not found"):
        load_bars(tmp_path / "nope.csv")


# -- issue 9.6 / 9.9: implausible prices and undecodable bytes refuse the file ------------

@pytest.mark.parametrize("spoil", ["x100", "1e300", "div100"])
def test_implausible_bar_refused_with_file_and_line(tmp_path, spoil):
    bars = load_bars(EURUSD)[0][:50].copy()
    row = bars[20]
    for f in ("open", "high", "low", "close"):
        row[f] = {"x100": row[f] * 100, "1e300": 1e300, "div100": row[f] / 100}[spoil]
    bars[20] = row
    path = write_bars_csv(tmp_path / "b.csv", bars)
    with pytest.raises(DataError) as e:
        load_bars(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}: line 22: ") and "max_jump_pct" in msg
    assert load_bars(path, max_jump=None)[0].shape == (50,)  # the check is what refused it


def test_bundled_year_passes_the_jump_check():
    bars, report = load_bars(EURUSD)
    assert report.rows == len(bars) > 6000


def test_non_utf8_byte_names_the_line(tmp_path):
    path = write_bars_csv(tmp_path / "b.csv", load_bars(EURUSD)[0][:10])
    lines = path.read_bytes().split(b"\n")
    lines[5] = lines[5].replace(b",", b"\xff,", 1)
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(DataError, match=r"line 6: bytes b'\\xff' are not UTF-8"):
        load_bars(path)
