"""Issue 9.12: leftovers of killed publishes are cleaned, a killed forced promotion is marked
incomplete, killed runs get a crash marker, and model_swaps uses one clock."""

import asyncio
import json
import os
import re
import sqlite3
import subprocess
import time

from stairway.core.bar_files import load_bars
from stairway.core.checkpoint import clean_leftovers, publish
from stairway.daemon.app import Daemon
from stairway.daemon.store import Store
from stairway.trainer import registry_ops as ops
from stairway.trainer.gatedb import GateDB
from tests.helpers import EURUSD, daemon_config, tiny_checkpoint, write_bars_csv
from tests.integration.test_service import until


def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_killed_publish_leftovers_are_removed_at_next_publish_but_live_ones_kept(tmp_path, spec):
    models = tmp_path / "models"
    ck, _ = tiny_checkpoint(models, spec, seed=1)
    dead = _dead_pid()
    left = [models / f".current.{dead}.tmp", models / "registry" / f".{ck.sha}.{dead}.tmp"]
    os.symlink(f"registry/{ck.sha}.safetensors", left[0])
    left[1].write_bytes(b"half a checkpoint")
    alive = models / f".current.{os.getppid()}.tmp"  # a publisher that is still running
    os.symlink(f"registry/{ck.sha}.safetensors", alive)
    publish(models, ck.sha)
    assert not any(p.is_symlink() or p.exists() for p in left)
    assert alive.is_symlink()
    assert clean_leftovers(models) == []


def test_forced_promotion_killed_after_its_record_is_shown_incomplete(tmp_path, spec, monkeypatch):
    models = tmp_path / "models"
    a, _ = tiny_checkpoint(models, spec, seed=1)
    b, _ = tiny_checkpoint(models, spec, seed=2)
    publish(models, a.sha)
    gdb = GateDB(tmp_path / "gate.db")
    for ck in (a, b):
        gdb.add_model(ck.sha, ck.meta, 1, "r", 0)

    def killed(*args):
        raise KeyboardInterrupt("kill -9 stand-in: the process dies inside publish()")

    monkeypatch.setattr(ops, "publish", killed)
    try:
        ops.promote(models, gdb, b.sha[:12], force=True, reason="paper test")
    except KeyboardInterrupt:
        pass
    monkeypatch.undo()
    listing = ops.list_models(models, gdb)
    assert f"INCOMPLETE promote_forced {b.sha[:12]}" in listing and "never took effect" in listing
    assert os.readlink(models / "current").endswith(f"{a.sha}.safetensors")
    rows = {r["sha"]: r for r in ops.model_rows(models, gdb)}  # `models list --json`
    assert set(rows) == {a.sha, b.sha} and rows[a.sha]["links"] == ["current"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", rows[a.sha]["created"])
    ops.promote(models, gdb, b.sha[:12], force=True, reason="again")  # a completed one is not listed
    assert [x["action"] for x in gdb.incomplete_actions()] == ["promote_forced"]
    assert "done after all" in ops.list_models(models, gdb)
    gdb.close()


def test_killed_runs_get_a_crash_marker_at_the_next_start(tmp_path):
    async def go():
        s = await Store.open(tmp_path / "live.db")
        await s.start_run("done-1", 1, "paper-replay", "x", "{}")
        await s.end_run("done-1", 2, {"trades": 0})
        await s.start_run("killed-2", 3, "paper-replay", "x", "{}")  # never ended
        await s.close()
        s = await Store.open(tmp_path / "live.db")
        crashed = await s.start_run("next-3", 4, "paper-replay", "x", "{}")
        await s.close()
        return crashed

    assert asyncio.run(go()) == ["killed-2"]
    rows = dict(sqlite3.connect(tmp_path / "live.db").execute("SELECT run_id, summary_json FROM runs"))
    assert "crashed" in json.loads(rows["killed-2"]) and json.loads(rows["done-1"]) == {"trades": 0}
    assert rows["next-3"] is None
    gdb = GateDB(tmp_path / "gate.db")
    gdb.start_run("t-1")
    assert gdb.start_run("t-2") == ["t-1"]
    gdb.close()


def test_model_swaps_rows_use_one_clock(tmp_path, spec):
    b = load_bars(EURUSD)[0]
    bars = b[b["ts_ns"] >= 1506816000 * 10**9][:300]
    models = tmp_path / "models"
    tiny_checkpoint(models, spec, seed=1)
    cfg, _ = daemon_config(
        tmp_path,
        write_bars_csv(tmp_path / "b.csv", bars),
        "2017-10-01",
        "2018-01-01",
        batch_ticks=16,
        speed=120_000,
        model_poll_secs=0.05,
    )
    t0 = time.time_ns()

    async def scenario():
        d = Daemon(cfg)
        task = asyncio.create_task(d.run())
        await until(lambda: hasattr(d, "slot") and d.slot.counters.decisions > 5)
        tiny_checkpoint(models, spec, seed=2)
        await until(lambda: d.slot.counters.swaps == 1)
        os.symlink("registry/" + "0" * 64 + ".safetensors", models / ".x")
        os.replace(models / ".x", models / "current")
        await until(lambda: d.watcher.stats.refused == 1)
        return await task

    res = asyncio.run(scenario())
    rows = sqlite3.connect(res.db_path).execute("SELECT outcome, ts_ns FROM model_swaps ORDER BY id").fetchall()
    assert [r[0] for r in rows] == ["swapped", "refused"]
    assert all(t0 <= r[1] <= time.time_ns() for r in rows)  # both wall-clock, in order
    assert rows[0][1] <= rows[1][1]
