import gzip

import numpy as np
import pytest

from stairway.core.errors import DataError
from stairway.core.tick_files import TickFileWriter, day_path, read_tick_file, recorded_days
from stairway.core.types import NS_PER_DAY
from tests.helpers import usdthb_ticks


def test_writer_reader_round_trip_rotates_at_utc_midnight(tmp_path):
    ticks = usdthb_ticks()  # real quotes, crossed and out-of-order ones included
    w = TickFileWriter(tmp_path, "USD_THB", fsync=False)
    for s in range(0, len(ticks), 500):
        w.write(ticks[s : s + 500])
        w.flush()
    days = recorded_days(tmp_path, "USD_THB")
    assert len(days) == len(np.unique(ticks["ts_ns"] // NS_PER_DAY))
    back = np.concatenate([read_tick_file(day_path(tmp_path, "USD_THB", d))[0] for d in days])
    order = np.argsort(ticks["ts_ns"] // NS_PER_DAY, kind="stable")  # files group by day, keep arrival order
    assert np.array_equal(back, ticks[order])  # bit-exact, bad quotes kept for the bar builder


def test_reader_drops_truncated_last_member_and_reports_it(tmp_path):
    all_ticks = usdthb_ticks()
    days = all_ticks["ts_ns"] // NS_PER_DAY
    busiest = np.bincount(days - days.min()).argmax() + days.min()
    ticks = all_ticks[days == busiest][:100]
    assert len(ticks) == 100
    w = TickFileWriter(tmp_path, "X", fsync=False)
    w.write(ticks[:60])
    w.flush()
    w.write(ticks[60:])
    w.flush()
    path = day_path(tmp_path, "X", recorded_days(tmp_path, "X")[0])
    data = path.read_bytes()
    path.write_bytes(data[:-10])  # crash while writing the second member
    got, report = read_tick_file(path)
    assert np.array_equal(got, ticks[:60]) and report.truncated_bytes > 0


def test_reader_names_file_and_line_of_corruption(tmp_path):
    p = tmp_path / "2017-10-02.csv.gz"
    p.write_bytes(gzip.compress(b"1,1.1,1.2\n2,abc,1.2\n"))
    with pytest.raises(DataError, match=r"2017-10-02.csv.gz: line 2: '2,abc,1.2'"):
        read_tick_file(p)
    p.write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="corrupt gzip data at byte 0"):
        read_tick_file(p)
