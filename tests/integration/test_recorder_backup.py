"""Tick recorder round trip and kill -9 mid-write; SQLite online backup restores."""

import asyncio
import datetime as dt
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest

from stairway.core.tick_files import day_path, read_tick_file, recorded_days
from stairway.core.types import NS_PER_DAY
from stairway.daemon.jobs import backup_database
from stairway.daemon.recorder import TickRecorder
from stairway.daemon.rows import RiskEventRow
from stairway.daemon.store import Store
from tests.helpers import ROOT, usdthb_ticks


def read_all(root, inst):
    return np.concatenate([read_tick_file(day_path(root, inst, d))[0] for d in recorded_days(root, inst)])


def test_recorder_round_trip_and_retention(tmp_path):
    ticks = usdthb_ticks()
    rec = TickRecorder(tmp_path, "USD_THB", flush_secs=0.05, fsync=False)
    rec.start()
    for s in range(0, len(ticks), 37):
        assert rec.enqueue(ticks[s : s + 37])
    assert rec.stop(10)
    order = np.argsort(ticks["ts_ns"] // NS_PER_DAY, kind="stable")
    assert np.array_equal(read_all(tmp_path, "USD_THB"), ticks[order])
    assert rec.recorded_ticks == len(ticks) and rec.dropped_ticks == 0
    days = recorded_days(tmp_path, "USD_THB")
    removed = rec.prune(today=days[-1] + dt.timedelta(days=30))
    assert removed == sum((days[-1] - d).days > 0 for d in days)  # only the last day is within 30 days
    assert recorded_days(tmp_path, "USD_THB") == [days[-1]]


def test_recorder_full_queue_drops_and_counts(tmp_path):
    rec = TickRecorder(tmp_path, "X", queue_batches=2, fsync=False)  # thread not started: nothing drains
    t = usdthb_ticks()[:10]
    assert rec.enqueue(t) and rec.enqueue(t)
    assert not rec.enqueue(t) and rec.dropped_ticks == 10


CHILD = r"""
import sys, time
import numpy as np
import pytest
from stairway.daemon.recorder import TickRecorder
from stairway.core.types import TICK_DTYPE
rec = TickRecorder(sys.argv[1], "EUR_USD", flush_secs=0.1, fsync=True)
rec.start()
t0 = 1_506_902_400 * 10**9
n = 0
while True:
    batch = np.zeros(50, dtype=TICK_DTYPE)
    batch["ts_ns"] = t0 + (n + np.arange(50)) * 10**6
    batch["bid"], batch["ask"] = 1.1, 1.1001
    rec.enqueue(batch)
    n += 50
    print("flushed", rec.recorded_ticks, flush=True)
    time.sleep(0.01)
"""


def test_recorder_kill9_loses_at_most_the_last_flush_interval(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    flushed = 0
    deadline = time.monotonic() + 60
    while flushed < 2000 and time.monotonic() < deadline:
        flushed = int(proc.stdout.readline().split()[1])
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    got = read_all(tmp_path, "EUR_USD")  # the file stays readable
    assert len(got) >= flushed >= 2000  # everything reported flushed survived
    assert np.all(np.diff(got["ts_ns"]) > 0) and np.all(got["bid"] == 1.1)


def test_backup_restores_and_keeps_seven(tmp_path):
    async def fill():
        s = await Store.open(tmp_path / "live.db")
        for k in range(500):
            s.add(RiskEventRow("r", k, "EUR_USD", "e", "", 0.0, 0.0))
        await s.flush()
        return s

    async def go():
        s = await fill()
        path = await asyncio.to_thread(backup_database, tmp_path / "live.db", tmp_path / "b", 7)
        s.add(RiskEventRow("r", 999, "EUR_USD", "after", "", 0.0, 0.0))  # the live database keeps moving
        await s.close()
        for k in range(8):
            await asyncio.to_thread(
                backup_database,
                tmp_path / "live.db",
                tmp_path / "b",
                7,
                dt.datetime(2030, 1, 1, 0, 0, k, tzinfo=dt.UTC),
            )
        return path

    first = asyncio.run(go())
    backups = sorted((tmp_path / "b").glob("live-*.db"))
    assert len(backups) == 7 and first not in backups  # the oldest were pruned
    with sqlite3.connect(backups[-1]) as c:
        assert c.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert c.execute("SELECT count(*) FROM risk_events").fetchone() == (501,)
    # restoring is copying a backup into place: the daemon's store opens it as it was
    restored = tmp_path / "restored.db"
    restored.write_bytes(backups[-1].read_bytes())

    async def reopen():
        s = await Store.open(restored)
        n = await (await s.db.execute("SELECT max(ts_ns) FROM risk_events")).fetchone()
        await s.close()
        return n[0]

    assert asyncio.run(reopen()) == 999


def test_a_corrupt_database_backup_is_one_error_naming_it(tmp_path):
    from stairway.core.errors import FatalError
    from stairway.core.sqlite_backup import backup_database

    bad = tmp_path / "gate.db"
    bad.write_bytes(b"not a database, " * 400)
    with pytest.raises(
        FatalError, match=r"backup failed integrity_check: cannot back up .*gate.db: file is not a database"
    ):
        backup_database(bad, tmp_path / "backups", 7)
    assert not list((tmp_path / "backups").glob("*"))  # nothing half-written left behind
