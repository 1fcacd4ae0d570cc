import numpy as np
import pytest

from stairway.core.bar_files import load_bars
from stairway.core.bar_formats import parse_timestamp_ns
from stairway.core.errors import DataError
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


# -- issue 10.6: files users bring -------------------------------------------------------


def _csv(path, header, rows, compress=None):
    text = header + "\n" + "\n".join(rows) + "\n"
    if compress == "gz":
        import gzip

        path.write_bytes(gzip.compress(text.encode()))
    elif compress == "bz2":
        import bz2

        path.write_bytes(bz2.compress(text.encode()))
    else:
        path.write_text(text)
    return path


ISO_ROWS = ["2017-01-02T00:00:00+00:00,1.1,1.2,1.0,1.15", "2017-01-02T03:00:00+02:00,1.15,1.2,1.1,1.12"]


def test_iso_offsets_and_z_are_converted_to_utc():
    assert parse_timestamp_ns("2017-01-02T03:00:00+02:00") == parse_timestamp_ns("2017-01-02 01:00:00")
    assert parse_timestamp_ns("2017-01-02T01:00:00Z") == parse_timestamp_ns("2017-01-02 01:00")
    assert parse_timestamp_ns("2017-01-01T20:00:00-0500") == parse_timestamp_ns("2017-01-02 01:00")
    assert parse_timestamp_ns("2017-01-02") == parse_timestamp_ns("2017-01-02 00:00")  # daily bars


@pytest.mark.parametrize("compress", [None, "gz", "bz2"])
@pytest.mark.parametrize(
    "header", ["Date,Open,High,Low,Close", "Datetime,open,high,low,close", "timestamp,OPEN,HIGH,LOW,CLOSE"]
)
def test_header_variants_and_compression_detected_not_assumed(tmp_path, header, compress):
    p = _csv(tmp_path / "bars.dat", header, ISO_ROWS, compress)  # the name says nothing
    bars, _ = load_bars(p)
    assert bars["ts_ns"].tolist() == [parse_timestamp_ns("2017-01-02 00:00"), parse_timestamp_ns("2017-01-02 01:00")]


def test_pandas_index_column_is_ignored_or_used_as_time(tmp_path):
    p = _csv(tmp_path / "a.csv", ",Date,Open,High,Low,Close", [f"{k},{r}" for k, r in enumerate(ISO_ROWS)])
    assert len(load_bars(p)[0]) == 2
    p = _csv(tmp_path / "b.csv", ",Open,High,Low,Close", [r for r in ISO_ROWS])  # the index holds the time
    assert len(load_bars(p)[0]) == 2


def test_symbol_column_filtered_and_mixed_file_without_filter_refused(tmp_path):
    rows = [f"EUR/USD,{ISO_ROWS[0]}", f"GBPUSD,{ISO_ROWS[0]}", f"EUR_USD,{ISO_ROWS[1]}"]
    p = _csv(tmp_path / "m.csv", "Symbol,Time,Open,High,Low,Close", rows)
    assert len(load_bars(p, symbol="EUR_USD")[0]) == 2
    with pytest.raises(DataError, match=r"line 3: several symbols \(EURUSD, GBPUSD\)"):
        load_bars(p)
    with pytest.raises(DataError, match="no rows for symbol USD_JPY"):
        load_bars(p, symbol="USD_JPY")


@pytest.mark.parametrize(
    "header,fragment",
    [
        ("Date,Close", "close-only series"),
        ("Date,Price", "close-only series"),
        ("Open,High,Low,Close", "no time column"),
    ],
)
def test_close_only_and_timeless_files_get_a_clear_error(tmp_path, header, fragment):
    p = _csv(tmp_path / "c.csv", header, ["2017-01-02,1.1", "2017-01-03,1.2"])
    with pytest.raises(DataError, match=fragment):
        load_bars(p)


@pytest.mark.parametrize(
    "content,fragment",
    [
        (b"\x00\x01\x02binary\x00data\n" * 20, "not a text CSV file"),
        (b"\x1f\x8b\x08\x00garbage", "compressed file"),
        (b"\x1f\x8b\x08\x00junkjunk", "corrupt compressed file"),  # zlib.error, not an OSError
        (b"BZhxxxx", "corrupt compressed file"),
    ],
)
def test_binary_and_corrupt_compressed_files_name_the_file(tmp_path, content, fragment):
    p = tmp_path / "x.csv"
    p.write_bytes(content)
    with pytest.raises(DataError, match=fragment) as e:
        load_bars(p)
    assert str(p) in str(e.value)


def test_range_shorter_than_the_warm_up_names_range_span_and_warm_up(tmp_path):
    from stairway.core.bar_files import select_warm_range

    bars = load_bars(EURUSD)[0]
    with pytest.raises(DataError) as e:
        select_warm_range(
            EURUSD,
            bars,
            parse_timestamp_ns("2019-01-01 00:00"),
            parse_timestamp_ns("2019-02-01 00:00"),
            97,
            "replay.range",
        )
    msg = str(e.value)
    assert "replay.range 2019-01-01 .. 2019-02-01 holds 0 bars" in msg and "97 to warm up" in msg
    assert "2017-01-01 22:00 .. 2017-12-29 21:00 UTC" in msg


def test_readme_bar_file_example_loads(tmp_path):
    from tests.helpers import ROOT

    text = (ROOT / "README.md").read_text()
    block = text.split("## Bar files", 1)[1].split("```", 2)[1].strip()
    p = tmp_path / "example.csv"
    p.write_text(block + "\n")
    bars, report = load_bars(p)
    assert len(bars) == 3 and report.period_minutes == 60


def test_daemon_replay_range_shorter_than_warm_up_is_one_clear_error(tmp_path, spec):
    import asyncio

    from stairway.daemon.app import run_daemon
    from tests.helpers import daemon_config, tiny_checkpoint

    tiny_checkpoint(tmp_path / "models", spec)
    cfg, _ = daemon_config(tmp_path, EURUSD, "2017-10-02", "2017-10-04")
    with pytest.raises(
        DataError,
        match=r"replay.range 2017-10-02 .. 2017-10-04 holds 48 bars; the features need "
        rf"{spec.window} to warm up",
    ):
        asyncio.run(run_daemon(cfg))
