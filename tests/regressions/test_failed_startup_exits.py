"""Issue 9.2: a start-up that fails after the database was opened (a truncated, random or
newer-schema state DB; a policy that raises during warm-up; with a connected live broker)
closes everything it opened and exits with one clear error naming the file."""

import asyncio
import sqlite3
import subprocess
import sys
import threading

import numpy as np
import pytest

from stairway.core.bar_files import load_bars
from stairway.core.errors import CheckpointError, FatalError
from stairway.core.policy import NO_CARD
from stairway.daemon.app import Daemon
from stairway.daemon.brokers.factory import make_adapters
from tests.faults.harness import Rig, prices
from tests.helpers import EURUSD, ROOT, daemon_config, tiny_checkpoint, write_bars_csv


@pytest.fixture()
def bars():
    b = load_bars(EURUSD)[0]
    return b[b["ts_ns"] >= 1506816000 * 10**9][:300]


def _good_db(path):
    from stairway.daemon.store import Store

    async def make():
        s = await Store.open(path)
        await s.start_run("r", 1, "paper-replay", "x", "{}")
        await s.close()

    asyncio.run(make())


def _spoil(db, kind):
    db.parent.mkdir(parents=True, exist_ok=True)
    if kind == "random":
        db.write_bytes(np.random.default_rng(0).bytes(64 * 1024))
    elif kind == "truncated":
        _good_db(db)
        data = db.read_bytes()
        db.write_bytes(data[: len(data) // 3])  # a torn copy: header intact, pages missing
        for side in ("-wal", "-shm"):
            (db.parent / (db.name + side)).unlink(missing_ok=True)
    elif kind == "newer_schema":
        _good_db(db)
        with sqlite3.connect(db) as c:
            c.execute("PRAGMA user_version = 99")
    elif kind == "directory":
        db.mkdir()


@pytest.mark.parametrize("kind", ["random", "truncated", "newer_schema", "directory"])
def test_bad_state_database_exits_with_one_line_naming_it(tmp_path, spec, bars, kind):
    tiny_checkpoint(tmp_path / "models", spec, seed=1)
    cfg, path = daemon_config(tmp_path, write_bars_csv(tmp_path / "b.csv", bars), "2017-10-01", "2018-01-01")
    _spoil(cfg.service.db_path, kind)
    p = subprocess.run(
        [sys.executable, "-m", "stairway.cli", "daemon", "run", "--config", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
    )  # a hang fails here
    assert p.returncode == 2, (p.returncode, p.stderr[-2000:])
    last = [ln for ln in p.stderr.splitlines() if ln.strip()][-1]
    assert last.startswith("stairway: error:") and str(cfg.service.db_path) in last, p.stderr[-2000:]
    assert "Traceback" not in p.stderr
    if kind == "newer_schema":
        assert "newer" in last


class RaisingPolicy:
    sha = "f" * 64
    card = NO_CARD

    def act(self, obs):
        raise RuntimeError("boom in act")


def test_policy_raising_in_warm_up_closes_the_database_and_records_why(tmp_path, spec, bars):
    cfg, _ = daemon_config(tmp_path, write_bars_csv(tmp_path / "b.csv", bars), "2017-10-01", "2018-01-01")
    before = set(threading.enumerate())
    with pytest.raises(CheckpointError, match="warm-up inference"):
        asyncio.run(Daemon(cfg, policy=RaisingPolicy()).run())
    alive = [t for t in set(threading.enumerate()) - before if t.is_alive()]
    assert not alive, alive  # the aiosqlite worker thread is gone: the process can exit
    with sqlite3.connect(cfg.service.db_path) as c:
        (summary,) = c.execute("SELECT summary_json FROM runs").fetchone()
    assert "boom in act" in summary


def test_live_start_failing_on_a_bad_database_closes_the_broker_connection(tmp_path, spec):
    async def scenario():
        rig = Rig(tmp_path, spec)
        await rig.start()
        rig.emu.prices = prices(rig.cfg, 1)
        _spoil(rig.cfg.service.db_path, "random")
        made = []  # the adapter bundle set-up made (it never reaches the daemon's parts)

        def adapters(cfg, environ):
            made.append(make_adapters(cfg, environ))
            return made[-1]

        d = Daemon(rig.cfg, clock=rig.clock, environ=rig.env(), adapters=adapters)
        try:
            with pytest.raises(FatalError, match="not a usable Stairway database"):
                await asyncio.wait_for(d.run(), 30)
            assert not d.setup_done
            return made
        finally:
            await rig.close()

    before = set(threading.enumerate())
    (bundle,) = asyncio.run(scenario())
    assert bundle.broker.session is None  # closed, not leaked
    alive = [t for t in set(threading.enumerate()) - before if t.is_alive()]
    assert not alive, alive
