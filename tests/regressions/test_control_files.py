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
from tests.helpers import EURUSD, daemon_config, paced_config, tiny_checkpoint, write_bars_csv
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
        await until(lambda: len(d.parts.supervisor.unknown) == 3)
        await asyncio.sleep(0.3)  # several more polls: still one warning per name
        status = json.loads(await asyncio.to_thread(ctl, control, "status", cfg.service.status_file))
        assert d.slot.trading_enabled
        control.chmod(0o777)  # someone opened it up while the daemon runs
        await until(lambda: not d.slot.trading_enabled, 5)
        unsafe_health = d.view.health()
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
    # the snapshot's time for people: UTC ISO 8601 (issue 22 §1), its age in seconds
    assert out["status_written"].endswith("+00:00") and out["status_written"][:4].isdigit()
    assert 0.0 <= out["status_age_s"] < 60.0
    status_file.write_text(json.dumps(dict(snap, pid=os.getpid())))
    assert json.loads(ctl(control, "status", status_file))["daemon_running"] is True
    halted = dict(snap, pid=os.getpid(), state="halted", state_reason="intraday drawdown 2.6 % >= 2.5 %")
    status_file.write_text(json.dumps(halted))  # the daemon's lifecycle state (issue 23 §2) beside its pid
    running = json.loads(ctl(control, "status", status_file))["daemon_state"]
    assert running == f"running as pid {os.getpid()}: halted (intraday drawdown 2.6 % >= 2.5 %)"
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


def test_odd_control_entries_are_never_fatal_and_flatten_still_flattens(tmp_path, spec, capsys):
    """Issue 19.6: `mkdir FLATTEN` killed a running daemon (IsADirectoryError), and every restart
    after it; a dangling FLATTEN symlink was ignored without a word. Now each flattens, once,
    is removed when it can be, is logged once and is listed by `ctl status`; a START_TRADING
    that is not a regular file is not honoured."""
    tiny_checkpoint(tmp_path / "models", spec, seed=1)
    cfg, _ = paced_config(
        tmp_path, 600, batch_ticks=4, speed=40_000, control_poll_secs="0.05", require_start_file="true"
    )
    control = cfg.service.control_dir
    flattens = lambda d: d.slot.counters.risk_events.get("flatten", 0)  # noqa: E731
    holding = lambda d: d.slot.position[0] != 0.0  # noqa: E731

    async def scenario():
        d = Daemon(cfg)
        task = asyncio.create_task(d.run())
        await until(lambda: d.setup_done)
        await asyncio.to_thread(ctl, control, "start")
        await until(lambda: holding(d))
        (control / "FLATTEN").mkdir()  # the defect: a directory instead of a file
        await until(lambda: flattens(d) == 1 and not (control / "FLATTEN").exists())
        await until(lambda: holding(d))
        os.symlink(tmp_path / "nowhere", control / "FLATTEN")  # dangling
        await until(lambda: flattens(d) == 2 and not os.path.lexists(control / "FLATTEN"))
        await until(lambda: holding(d))
        (control / "FLATTEN").mkdir()
        (control / "FLATTEN" / "x").write_text("")  # cannot be removed: flattened once, left, reported
        await until(lambda: flattens(d) == 3)
        bars = d.slot.counters.bars
        await until(lambda: d.slot.counters.bars >= bars + 4)  # ~0.35 s, several polls: not flattened again
        n = flattens(d)
        status = json.loads(await asyncio.to_thread(ctl, control, "status", cfg.service.status_file))
        (control / "START_TRADING").unlink()
        (control / "START_TRADING").mkdir()  # not a regular file: observe only
        await until(lambda: not d.parts.risk.permission.control_allows)
        d.stop.set()
        await task
        return n, status, task

    n, status, task = asyncio.run(scenario())
    out = capsys.readouterr().out
    assert n == 3 and task.exception() is None
    assert status["not_regular_files"] == [
        "FLATTEN: a directory, not a regular file (flattened once; cannot be a command)"
    ]
    assert out.count("flatten_file_not_removed") == 1 and out.count("control_entry_not_a_file") >= 2
    assert "START_TRADING: a directory, not a regular file (ignored: observe only)" in out


def test_a_symlinked_control_dir_in_a_world_writable_state_dir_is_refused(tmp_path):
    """The ownership check looked at the link target's parents only: a `control` symlink inside
    a 0777 state/ (anyone can replace the link) passed."""
    real = tmp_path / "private" / "control"
    real.mkdir(parents=True, mode=0o700)
    state = tmp_path / "state"
    state.mkdir()
    os.symlink(real, state / "control")
    check_private(state / "control")
    state.chmod(0o777)
    with pytest.raises(FatalError, match=f"parent directory {state} is writable by group or others"):
        check_private(state / "control")
