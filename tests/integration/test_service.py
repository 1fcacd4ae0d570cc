"""The daemon as a service: hot-swap, control files, health, metrics, sd_notify, SIGHUP."""

import asyncio
import json
import os
import re
import signal
import socket
import sqlite3
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from stairway.core.bar_files import load_bars
from stairway.core.bar_ticks import bars_to_ticks
from stairway.core.errors import FatalError
from stairway.daemon.app import Daemon
from stairway.daemon.control import ctl
from tests.helpers import EURUSD, daemon_config, tiny_checkpoint, write_bars_csv

pytestmark = pytest.mark.usefixtures("no_blocking")  # fail on blocking calls in the event loop

HOUR = 3600 * 10**9


@pytest.fixture()
def bars():
    b = load_bars(EURUSD)[0]
    return b[b["ts_ns"] >= 1506816000 * 10**9][:300]


def gated(models, gate_db, spec, seed, **kw):
    """Gate record first, then published: the order the trainer keeps."""
    return tiny_checkpoint(models, spec, seed=seed, gate_db=gate_db, **kw)[0]


def get(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except (urllib.error.URLError, TimeoutError, ConnectionError):  # the daemon is stopping
        return None, ""


async def until(pred, timeout=20.0):
    t = time.monotonic()
    while not pred():
        if time.monotonic() - t > timeout:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(0.02)


def test_hot_swap_during_tick_burst_and_bad_checkpoints_refused(tmp_path, spec, bars):
    models, gate_db = tmp_path / "models", tmp_path / "state" / "gate.db"
    a = gated(models, gate_db, spec, seed=1)
    cfg, _ = daemon_config(
        tmp_path,
        write_bars_csv(tmp_path / "b.csv", bars),
        "2017-10-01",
        "2018-01-01",
        batch_ticks=16,
        speed=120_000,
        require_gate_record="true",
        model_poll_secs=0.05,
    )
    ticks = bars_to_ticks(bars, HOUR, "ask", 1e-4)

    async def scenario():
        d = Daemon(cfg)
        task = asyncio.create_task(d.run())
        await until(lambda: hasattr(d, "slot") and d.slot.counters.decisions > 20)
        b = await asyncio.to_thread(gated, models, gate_db, spec, seed=2)  # publishes b as current
        await until(lambda: d.slot.counters.swaps == 1)
        bad = []
        # corrupt: bytes changed under a content address
        c, _ = await asyncio.to_thread(tiny_checkpoint, models, spec, seed=3)
        raw = bytearray(c.path.read_bytes())
        raw[-1] ^= 1
        c.path.write_bytes(bytes(raw))
        bad.append("does not match its name")
        await until(lambda: d.watcher.stats.refused == 1)
        # incompatible: another feature spec
        await asyncio.to_thread(tiny_checkpoint, models, spec, seed=4, feature_hash="feedfacefeedface")
        bad.append("feature spec feedfacefeedface")
        await until(lambda: d.watcher.stats.refused == 2)
        # ungated: a valid checkpoint nobody promoted
        await asyncio.to_thread(tiny_checkpoint, models, spec, seed=5)
        bad.append("no passing gate record")
        await until(lambda: d.watcher.stats.refused == 3)
        # dangling: current points at a file that is gone
        os.symlink("registry/" + "0" * 64 + ".safetensors", models / ".x")
        os.replace(models / ".x", models / "current")
        bad.append("not found")
        await until(lambda: d.watcher.stats.refused == 4)
        res = await task
        return d, res, b, bad

    d, res, b, bad = asyncio.run(scenario())
    assert res.counters["ticks"] == len(ticks)  # nothing lost
    db = sqlite3.connect(res.db_path)
    shas = [r[0] for r in db.execute("SELECT model_sha FROM decisions ORDER BY bar_ts_ns")]
    assert len(shas) == res.counters["decisions"] and set(shas) == {a.sha, b.sha}
    switch = shas.index(b.sha)
    assert all(s == a.sha for s in shas[:switch]) and all(s == b.sha for s in shas[switch:])  # one swap, between bars
    swaps = db.execute("SELECT outcome, new_sha, reason FROM model_swaps ORDER BY id").fetchall()
    assert [s[0] for s in swaps].count("swapped") == 1
    refused = [s[2] for s in swaps if s[0] == "refused"]
    assert len(refused) == 4 and all(frag in r for frag, r in zip(bad, refused))
    assert res.model_sha == b.sha  # the good model kept trading through all refusals


def test_control_files_health_metrics_sighup_and_sd_notify(tmp_path, spec, bars, monkeypatch):
    sock_path = str(tmp_path / "notify.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    srv.bind(sock_path)
    srv.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", sock_path)
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    gated(tmp_path / "models", tmp_path / "state" / "gate.db", spec, seed=3)
    gap = bars.copy()
    gap["ts_ns"][200:] += 5 * 24 * HOUR  # five days without a quote mid-replay
    csv = write_bars_csv(tmp_path / "b.csv", gap)
    cfg, path = daemon_config(
        tmp_path,
        csv,
        "2017-10-01",
        "2018-01-01",
        batch_ticks=4,
        speed=150_000,
        require_gate_record="true",
        require_start_file="true",
        http_port="0",
        feed_stale_secs="0.5",
        control_poll_secs="0.05",
    )
    control = tmp_path / "state" / "control"
    health, metrics, msgs = [], [], []

    def drain():  # read like systemd does: the socket holds only ~10 datagrams
        while True:
            try:
                msgs.append(srv.recv(4096).decode())
            except BlockingIOError:
                return

    async def scenario():
        d = Daemon(cfg, config_path=path)
        task = asyncio.create_task(d.run())
        await until(lambda: d.http_port is not None and d.slot.counters.decisions > 5 and (drain() or True))
        assert d.slot.trading_enabled is False and d.slot.counters.orders == 0  # observe only
        metrics.append(await asyncio.to_thread(get, d.http_port, "/metrics"))
        health.append((await asyncio.to_thread(get, d.http_port, "/health"))[0])  # well before the gap
        await asyncio.to_thread(ctl, control, "start")
        await until(lambda: d.slot.counters.orders > 0, 5)
        os.utime(control / "START_TRADING")
        path.write_text(path.read_text().replace("max_trades_per_day = 50", "max_trades_per_day = 7"))
        drain()  # room for RELOADING=1 and READY=1 (the socket holds ~10 datagrams)
        os.kill(os.getpid(), signal.SIGHUP)
        await until(lambda: (drain() or True) and d.parts.risk.cfg.max_trades_per_day == 7, 5)
        drain()
        await asyncio.to_thread(ctl, control, "flatten")
        await until(lambda: not (control / "FLATTEN").exists(), 5)
        while not d.stop.is_set():  # while it runs; during shutdown the server goes away
            health.append((await asyncio.to_thread(get, d.http_port, "/health"))[0])
            drain()
            await asyncio.sleep(0.05)
        return d, await task

    d, res = asyncio.run(scenario())
    status, text = metrics[0]
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    assert status == 200
    assert fams["stairway_ticks"].samples[0].value > 0
    assert fams["stairway_trading_enabled"].samples[0].value == 0
    assert {s.labels["action"] for s in fams["stairway_decisions_by_action"].samples} == {
        "HOLD",
        "BUY",
        "SELL",
        "CLOSE",
    }
    assert fams["stairway_model_info"].samples[0].labels["sha"] == res.model_sha  # info metrics are exposed as *_info
    # issue 23 §2: one lifecycle state, on /metrics as a one-hot gauge, logged at each transition
    assert {s.labels["state"]: s.value for s in fams["stairway_daemon_state"].samples} == {
        "starting": 0.0,
        "warming": 0.0,
        "trading": 0.0,
        "halted": 0.0,
        "observe_only": 1.0,  # deciding; START_TRADING absent
        "stopping": 0.0,
    }
    states = [str(state) for _, state, _ in d.lifecycle.history]
    assert states[0] == "starting" and states[-1] == "stopping" and "halted" not in states
    assert states.index("warming") < states.index("observe_only") < states.index("trading")
    db = sqlite3.connect(res.db_path)
    kinds = {r[0] for r in db.execute("SELECT kind FROM risk_events")}
    assert {"observe_only", "flatten"} <= kinds
    # /health went 503 while no quote arrived for five (replayed) days, and back to 200
    first_bad = health.index(503)
    assert 200 in health[:first_bad] and 200 in health[first_bad:]
    drain()
    assert msgs[0].startswith("READY=1") and "WATCHDOG=1" in msgs and msgs[-1] == "STOPPING=1"
    [reload] = [m for m in msgs if m.startswith("RELOADING=1")]  # SIGHUP: reloading, then ready again
    assert "\nMONOTONIC_USEC=" in reload
    assert any(m.startswith("READY=1") and m.endswith("(reloaded)") for m in msgs[msgs.index(reload) :])
    status_file = json.loads((tmp_path / "state" / "status.json").read_text())
    assert status_file["ticks"] == res.counters["ticks"]
    assert status_file["state"] == "stopping" and status_file["state_reason"] == "end of data"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", status_file["state_since"])


def test_daemon_refuses_world_writable_control_dir(tmp_path, spec, bars):
    control = tmp_path / "state" / "control"
    control.mkdir(parents=True)
    control.chmod(0o777)
    tiny_checkpoint(tmp_path / "models", spec)
    cfg, _ = daemon_config(tmp_path, write_bars_csv(tmp_path / "b.csv", bars), "2017-10-01", "2018-01-01")
    with pytest.raises(FatalError, match="control directory is writable by group or others"):
        asyncio.run(Daemon(cfg).run())


def test_ungated_model_refused_at_start(tmp_path, spec, bars):
    tiny_checkpoint(tmp_path / "models", spec)
    cfg, _ = daemon_config(
        tmp_path, write_bars_csv(tmp_path / "b.csv", bars), "2017-10-01", "2018-01-01", require_gate_record="true"
    )
    from stairway.core.errors import CheckpointError

    with pytest.raises(CheckpointError, match="no passing gate record"):
        asyncio.run(Daemon(cfg).run())
