"""Issue 19.1: one process per state directory, models directory, gate database and data store.

A second daemon on a running daemon's state directory used to mark the first one's run crashed
and then trade the same account. Now each of these is held under an flock that the kernel drops
on any exit (kill -9 included); a second process refuses in one line naming the holder's pid.
"""

from __future__ import annotations

import os
import selectors
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from stairway.core.bar_files import load_bars
from stairway.core.locks import LockHeld, file_lock, state_lock
from tests.helpers import EURUSD, ROOT, daemon_config, tiny_checkpoint, write_bars_csv

ENV = dict(os.environ, PYTHONUNBUFFERED="1")
HOLDER = """
import sys
from pathlib import Path
from stairway.core.locks import ExclusiveLock
lock = ExclusiveLock(Path(sys.argv[1]), "test").acquire()
print("held", flush=True)
sys.stdin.read()  # until the test closes stdin (or kills us)
"""


def wait_for_line(proc: subprocess.Popen, fragment: str, timeout: float = 120.0) -> list[str]:
    """Read the process's output until a line holds ``fragment`` (no polling sleep: select
    blocks until output comes); every line read, or AssertionError with them."""
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not sel.select(timeout=max(0.0, deadline - time.monotonic())):
            break
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if fragment in line:
            return lines
    raise AssertionError(f"{fragment!r} not seen; rc {proc.poll()}; output:\n{''.join(lines[-30:])}")


def holder(path) -> subprocess.Popen:
    p = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    wait_for_line(p, "held", 60)
    return p


def daemon(path, **env) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "stairway.cli", "daemon", "run", "--config", str(path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=dict(ENV, **env),
    )


def runs(db) -> list[tuple]:
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT run_id, ended_ns, summary_json FROM runs ORDER BY started_ns").fetchall()
    finally:
        con.close()


@pytest.mark.slow
def test_second_daemon_on_one_state_dir_refuses_and_never_marks_the_first_crashed(tmp_path, spec):
    bars = load_bars(EURUSD)[0]
    csv = write_bars_csv(tmp_path / "b.csv", bars[bars["ts_ns"] >= 1506816000 * 10**9][:400])
    tiny_checkpoint(tmp_path / "models", spec, seed=3)
    _, path = daemon_config(tmp_path, csv, "2017-10-01", "2018-01-01", batch_ticks=4, speed=360)  # ~10 s a bar
    first = daemon(path)
    try:
        wait_for_line(first, '"daemon_started"')
        # the defect's form: another HTTP port, same state directory
        second = subprocess.run(
            [sys.executable, "-m", "stairway.cli", "daemon", "run", "--config", str(path)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            env=dict(ENV, STAIRWAY_SERVICE__HTTP_PORT="0"),
        )
        assert second.returncode == 2, second.stdout + second.stderr
        err = second.stderr.strip().splitlines()
        assert len(err) == 1 and "Traceback" not in second.stderr, second.stderr
        assert f"pid {first.pid}" in err[0] and "state directory" in err[0] and "in use" in err[0]
        assert '"daemon_started"' not in second.stdout  # it never reached the feed
        db = tmp_path / "state" / "paper-replay.db"
        (only,) = runs(db)
        assert only[1] is None and only[2] is None  # the running daemon's run is not marked crashed
        first.send_signal(signal.SIGKILL)
        first.wait(30)
        # the kernel dropped the lock with the process: a third daemon starts and marks it crashed
        third = daemon(path)
        try:
            wait_for_line(third, '"daemon_started"')
            rows = runs(db)
            assert len(rows) == 2 and "crashed" in (rows[0][2] or "")
        finally:
            third.send_signal(signal.SIGTERM)
            out, _ = third.communicate(timeout=60)
        assert third.returncode == 0, out
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(30)


def test_train_run_refuses_while_another_process_holds_the_models_or_gate_lock(tmp_path):
    from stairway.core.config import load_config
    from stairway.trainer.config import TrainerConfig
    from stairway.trainer.cycles import run_cycles

    cfg = load_config(
        TrainerConfig,
        ROOT / "config" / "trainer.toml",
        environ={
            "STAIRWAY_TRAIN__MODELS_DIR": str(tmp_path / "models"),
            "STAIRWAY_TRAIN__GATE_DB": str(tmp_path / "state" / "gate.db"),
            "STAIRWAY_TRAIN__REPORTS_DIR": str(tmp_path / "runs"),
            "STAIRWAY_DATA__BARS_CSV": str(EURUSD),
        },
    )
    for lock_path, what in (
        (tmp_path / "models" / ".train.lock", "models directory"),
        (tmp_path / "state" / "gate.db.lock", "gate database"),
    ):
        h = holder(lock_path)
        try:
            with pytest.raises(LockHeld, match=rf"{what} .* is in use by pid {h.pid}"):
                run_cycles(cfg, progress=False)
        finally:
            h.kill()
            h.wait(30)
        assert not (tmp_path / "state" / "gate.db").exists()  # refused before the database was opened


def test_data_import_refuses_while_the_store_is_locked_and_runs_once_it_is_free(tmp_path):
    from stairway.cli import main

    store = tmp_path / "store"
    bars = load_bars(EURUSD)[0][:400]
    f = write_bars_csv(tmp_path / "EURUSD_1H.csv", bars)
    args = ["data", "--config", str(ROOT / "config" / "trainer.toml"), "--store", str(store), "import", str(f)]
    h = holder(store / ".store.lock")
    try:
        r = subprocess.run([sys.executable, "-m", "stairway.cli", *args], cwd=ROOT, capture_output=True, text=True)
        assert r.returncode == 2 and f"data store {store} is in use by pid {h.pid}" in r.stderr, r.stderr
        assert not (store / "EUR_USD").exists()
    finally:
        h.send_signal(signal.SIGKILL)  # kill -9: the kernel frees the lock
        h.wait(30)
    assert main(args) == 0
    assert any((store / "EUR_USD" / "imported").glob("*.csv"))


def test_lock_refuses_a_second_holder_in_the_same_process_and_frees_on_release(tmp_path):
    a = state_lock(tmp_path / "state").acquire()
    with pytest.raises(LockHeld, match=f"pid {os.getpid()}"):
        state_lock(tmp_path / "state").acquire()  # a second descriptor in the same process is refused too
    a.release()
    assert state_lock(tmp_path / "state").acquire().held
    g = file_lock(tmp_path / "gate.db", "gate database")
    assert g.path.name == "gate.db.lock"
