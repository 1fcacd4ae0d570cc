"""Issue 9.10 (and the ctl status part of 9.12): unknown control-file names are reported, the
control directory's owner and parent chain are checked at start and while running, and
`ctl status` says when the daemon behind a snapshot is gone."""

import asyncio
import json
import os
import subprocess

import pytest

from stairway.core.bar_files import load_bars
from stairway.core.errors import FatalError
from stairway.daemon.app import Daemon
from stairway.daemon.control import ControlFiles, check_private, ctl
from tests.helpers import EURUSD, daemon_config, tiny_checkpoint, write_bars_csv
from tests.integration.test_service import until

pytestmark = pytest.mark.usefixtures("no_blocking")  # fail on blocking calls in the event loop


def test_control_dir_owned_by_another_user_refused(tmp_path):
    d = tmp_path / "control"
    d.mkdir(mode=0o700)
    check_private(d)
    if os.geteuid() != 0:
        pytest.skip("chown to another user needs root")
    os.chown(d, 65534, 65534)
    with pytest.raises(FatalError, match=r"owned by uid 65534, not by this user"):
        check_private(d)


@pytest.mark.parametrize("mode,ok", [(0o777, False), (0o775, False), (0o1777, True), (0o755, True)])
def test_parent_chain_writable_by_others_refused_unless_sticky(tmp_path, mode, ok):
    parent = tmp_path / "state"
    d = parent / "control"
    d.mkdir(parents=True, mode=0o700)
    parent.chmod(mode)
    if ok:
        check_private(d)
    else:
        with pytest.raises(FatalError, match=f"parent directory {parent} is writable by group or others"):
            check_private(d)


def test_unknown_names_warned_once_shown_in_status_and_unsafe_dir_stops_entries(tmp_path, spec, capsys):
    b = load_bars(EURUSD)[0]
    bars = b[b["ts_ns"] >= 1506816000 * 10**9][:600]
    tiny_checkpoint(tmp_path / "models", spec, seed=1)
    cfg, path = daemon_config(
        tmp_path,
        write_bars_csv(tmp_path / "b.csv", bars),
        "2017-10-01",
        "2018-01-01",
        batch_ticks=4,
        speed=40_000,
        control_poll_secs="0.05",
        control_check_secs="0.1",
    )
    control = cfg.service.control_dir

    async def scenario():
        d = Daemon(cfg)
        task = asyncio.create_task(d.run())
        await until(lambda: hasattr(d, "slot") and d.slot.counters.decisions > 3)
        for name in ("FLATEN", "STOP", "start_trading"):
            (control / name).write_text("")
        await until(lambda: len(d.control_unknown) == 3)
        await asyncio.sleep(0.3)  # several more polls: still one warning per name
        status = json.loads(await asyncio.to_thread(ctl, control, "status", cfg.service.status_file))
        assert d.slot.trading_enabled
        control.chmod(0o777)  # someone opened it up while the daemon runs
        await until(lambda: not d.slot.trading_enabled, 5)
        unsafe_health = d.health()
        control.chmod(0o700)
        await until(lambda: d.slot.trading_enabled, 5)
        d.stop.set()
        await task
        return status, unsafe_health

    status, unsafe_health = asyncio.run(scenario())
    out = capsys.readouterr().out
    assert out.count("control_file_ignored") == 3
    assert status["ignored_files"] == [
        "FLATEN (did you mean FLATTEN?)",
        "STOP",
        "start_trading (did you mean START_TRADING?)",
    ]
    assert any("control directory unsafe" in h for h in unsafe_health)
    assert "control_directory_unsafe" in out and "control_directory_safe_again" in out


def test_ctl_status_says_when_the_daemon_is_gone(tmp_path):
    control = tmp_path / "control"
    ControlFiles(control)
    status_file = tmp_path / "status.json"
    assert json.loads(ctl(control, "status", status_file))["daemon_running"] is False
    dead = subprocess.Popen(["true"])
    dead.wait()
    snap = {"health": [], "pid": dead.pid, "written_at": __import__("time").time(), "stopped": False}
    status_file.write_text(json.dumps(snap))
    out = json.loads(ctl(control, "status", status_file))
    assert out["daemon_running"] is False and "NOT RUNNING" in out["daemon_state"] and out["daemon"] == snap
    status_file.write_text(json.dumps(dict(snap, pid=os.getpid())))
    assert json.loads(ctl(control, "status", status_file))["daemon_running"] is True
    status_file.write_text(json.dumps(dict(snap, pid=os.getpid(), written_at=0.0)))
    assert "NOT RESPONDING" in json.loads(ctl(control, "status", status_file))["daemon_state"]
    status_file.write_text(json.dumps(dict(snap, stopped=True)))
    assert json.loads(ctl(control, "status", status_file))["daemon_state"] == "stopped cleanly"


def test_a_killed_but_unreaped_daemon_counts_as_gone(tmp_path):
    """kill -9 leaves a zombie until its parent reaps it: ctl status must already say it is gone."""
    import signal
    import time

    from stairway.core.pids import pid_alive

    p = subprocess.Popen(["sleep", "30"])
    try:
        assert pid_alive(p.pid)
        os.kill(p.pid, signal.SIGKILL)
        time.sleep(0.2)  # not reaped: no wait() yet, the process is a zombie
        assert not pid_alive(p.pid)
    finally:
        p.wait()
