"""Issue 19.11: bounded HTTP connections, a recorder that fails quietly and visibly, backups
pruned by name, a read-only state directory named as such."""

from __future__ import annotations

import asyncio
import os
import socket
import urllib.request

import numpy as np
import pytest

from stairway.core.types import TICK_DTYPE
from stairway.daemon.app import Daemon
from stairway.daemon.recorder import TickRecorder
from tests.helpers import EURUSD, daemon_config, paced_config, tiny_checkpoint
from tests.integration.test_service import until

pytestmark = pytest.mark.usefixtures("no_blocking")


N = 400  # connections in the flood (the defect needed ~1,100 to exhaust 1,024 descriptors)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_connection_flood_cannot_take_the_daemons_file_descriptors(tmp_path, spec):
    """~1,100 local connections used to exhaust the daemon's descriptors (and then its tick
    recording). Now at most 32 stay open; the rest are closed on accept; the daemon trades on
    and answers again once the flood's idle connections have been closed."""
    tiny_checkpoint(tmp_path / "models", spec, seed=1)
    cfg, _ = paced_config(tmp_path, batch_ticks=4, speed=40_000)
    cfg = cfg.model_copy(update={"service": cfg.service.model_copy(update={"http_port": 0, "record_ticks": True})})

    def flood(port: int, n: int) -> list[socket.socket]:
        out = []
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            out.append(s)
        return out

    def get(port: int) -> int:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5) as r:
            return r.status

    async def go():
        d = Daemon(cfg)
        task = asyncio.create_task(d.run())
        await until(lambda: d.setup_done and d.http_port and d.slot.counters.decisions > 2)
        base = await asyncio.to_thread(open_fds)
        socks = await asyncio.to_thread(flood, d.http_port, N)
        await until(lambda: d.http_limits.accepted >= N)
        during = await asyncio.to_thread(open_fds)
        decisions = d.slot.counters.decisions
        await until(lambda: d.slot.counters.decisions > decisions + 5)  # still trading
        for s in socks:
            s.close()
        await until(lambda: d.http_limits.open == 0)
        status = await asyncio.to_thread(get, d.http_port)
        d.stop.set()
        res = await task
        return d, base, during, status, res

    d, base, during, status, res = asyncio.run(go())
    # the test's own 1,100 client sockets are in this process too: the daemon's side is bounded
    assert during - base <= N + 32 + 8, (base, during)
    assert d.http_limits.peak <= 32 and d.http_limits.refused >= N - 32 * 8 and status == 200
    assert d.parts.recorders["EUR_USD"].errors == 0 and res.counters["recorder_dropped_ticks"] == 0


def test_a_failing_recorder_logs_each_cause_once_counts_and_says_so_on_health(tmp_path, capsys):
    blocker = tmp_path / "ticks"
    blocker.write_text("not a directory")  # every write fails (ENOTDIR), for root too
    rec = TickRecorder(blocker, "EUR_USD", flush_secs=0.01, fsync=False)
    rec.start()
    ticks = np.zeros(10, dtype=TICK_DTYPE)
    ticks["ts_ns"] = np.arange(10) * 10**9 + 1_500_000_000 * 10**9
    ticks["bid"], ticks["ask"] = 1.1, 1.1001
    for _ in range(300):
        rec.enqueue(ticks)
    assert rec.stop(10)
    out = capsys.readouterr().out
    assert out.count("recorder_write_failed") == 1 and "Traceback" not in out
    assert rec.errors >= 1 and rec.dropped_ticks == 3000 and rec.failing.startswith("NotADirectoryError")
    blocker.unlink()  # fixed: the next write recovers and the reason goes
    rec2 = TickRecorder(blocker, "EUR_USD", flush_secs=0.01, fsync=False)
    rec2.failing = "earlier"
    rec2.start()
    rec2.enqueue(ticks)
    assert rec2.stop(10) and rec2.failing == "" and rec2.recorded_ticks == 10


def test_backups_are_pruned_by_name_and_the_one_just_written_is_kept(tmp_path):
    """With the clock behind the newest backup, each new backup was deleted right after it was
    written (it sorted first)."""
    import datetime as dt
    import sqlite3

    from stairway.core.sqlite_backup import backup_database

    db = tmp_path / "live.db"
    sqlite3.connect(db).execute("CREATE TABLE t (x)").connection.commit()
    for year in (2030, 2031, 2032):
        backup_database(db, tmp_path / "b", keep=2, now=dt.datetime(year, 1, 1, tzinfo=dt.UTC))
    names = lambda: sorted(p.name for p in (tmp_path / "b").glob("live-*.db"))  # noqa: E731
    assert names() == ["live-20310101T000000.db", "live-20320101T000000.db"]
    back = backup_database(db, tmp_path / "b", keep=2, now=dt.datetime(2026, 12, 3, tzinfo=dt.UTC))  # clock set back
    assert back.exists() and names() == ["live-20261203T000000.db", "live-20320101T000000.db"]


@pytest.fixture()
def read_only_mount(tmp_path):
    """A tmpfs that can be switched read-only (root can write through file modes, not a
    read-only mount); skipped where mounting is not allowed."""
    import subprocess

    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(mnt)], capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root in a mount namespace)")
    try:
        yield mnt, lambda: subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_a_read_only_state_dir_is_named_read_only(read_only_mount, tmp_path, spec):
    from stairway.core.errors import FatalError, StairwayError
    from stairway.daemon.store import Store

    mnt, make_ro = read_only_mount
    state = mnt / "state"
    (state / "control").mkdir(parents=True, mode=0o700)

    async def make_db():
        s = await Store.open(state / "live.db")
        await s.close()

    asyncio.run(make_db())
    make_ro()
    with pytest.raises(FatalError, match=r"live.db: the database or its directory is read-only") as e:
        asyncio.run(Store.open(state / "live.db"))
    assert "restore a backup" not in str(e.value)
    tiny_checkpoint(tmp_path / "models", spec, seed=1)
    cfg, _ = daemon_config(tmp_path, EURUSD, "2017-10-01", "2018-01-01")
    cfg = cfg.model_copy(update={"service": cfg.service.model_copy(update={"state_dir": state})})
    with pytest.raises(StairwayError, match=r"state directory .*: cannot create its lock file .* is read-only"):
        asyncio.run(Daemon(cfg).run())
