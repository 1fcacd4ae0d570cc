"""Issue 23 §2: the control supervisor is its own object, given what it reads (the control
directory, the risk engine, the slots, the alerter); each poll is driven here directly, with
no daemon, feed or clock behind it."""

import asyncio
import os

from stairway.core.config import RiskConfig
from stairway.daemon.alerts import Alerter
from stairway.daemon.config import ServiceConfig
from stairway.daemon.control import START, ControlFiles
from stairway.daemon.risk import RiskEngine
from stairway.daemon.supervisor import ControlSupervisor


def supervisor(tmp_path, require_start_file=True):
    control = ControlFiles(tmp_path / "control")
    risk = RiskEngine(RiskConfig(), 100_000)
    alerter = Alerter(["json://127.0.0.1:9/"])  # never started: what it accepted is counted
    polls = []
    sup = ControlSupervisor(
        ServiceConfig(state_dir=tmp_path / "state", require_start_file=require_start_file),
        False,
        control,
        risk,
        {},
        lambda: (),
        alerter,
        asyncio.Event(),
        lambda: 0,
        lambda: polls.append(1),
    )
    return sup, control, risk, alerter, polls


def test_start_file_halt_and_operator_resume_one_poll_at_a_time(tmp_path, capsys):
    sup, control, risk, alerter, polls = supervisor(tmp_path)
    poll = lambda: asyncio.run(sup.poll())  # noqa: E731
    poll()
    assert not risk.permission.control_allows and risk.permission.control_reason == "START_TRADING absent: observe only"
    (control.dir / START).write_text("")
    poll()
    assert risk.permission.control_allows
    risk.halt("three over-fills")  # an operator's halt: only START_TRADING lifts it
    poll()
    assert not (control.dir / START).exists()  # removed: the operator must start again
    assert alerter.stats.critical == 1  # the halt itself blocks entries (daemon.risk); the next poll sees no file
    poll()
    assert not risk.permission.control_allows
    poll()
    assert alerter.stats.critical == 1 and risk.state.halted  # alerted once, still halted
    start = control.dir / START
    start.write_text("")  # a file from before the halt (restored from a backup, say) lifts nothing
    os.utime(start, ns=(sup._halt_ns - 10**9, sup._halt_ns - 10**9))
    poll()
    assert risk.state.halted
    start.write_text("")  # an operator, a second after the halt (file times are coarser than time_ns)
    os.utime(start, ns=(sup._halt_ns + 10**9, sup._halt_ns + 10**9))
    poll()
    assert not risk.state.halted and risk.permission.control_allows
    assert alerter.stats.accepted == 2  # halted, then halted_resolved
    assert len(polls) == 7  # the daemon's after-poll ran after each
    out = capsys.readouterr().out
    assert out.count("trading_halted") == 1 and "trading_resumed_by_operator" in out


def test_a_session_ends_a_resumable_halt_and_says_so(tmp_path):
    sup, control, risk, alerter, _ = supervisor(tmp_path, require_start_file=False)
    risk.halt("flatten tier", resumable=True)
    asyncio.run(sup.poll())
    assert (control.dir / START).exists() is False and alerter.stats.critical == 1
    assert risk.new_day(1) == "flatten tier"
    asyncio.run(sup.poll())
    assert risk.permission.control_allows and alerter.stats.accepted == 2


def test_unknown_names_once_each_and_an_unsafe_directory_stops_new_positions(tmp_path, capsys):
    sup, control, risk, _, _ = supervisor(tmp_path, require_start_file=False)
    (control.dir / "STOP").write_text("")
    (control.dir / "FLATEN").write_text("")
    for _ in range(3):
        asyncio.run(sup.poll())
    assert sup.unknown == ("FLATEN", "STOP")
    assert capsys.readouterr().out.count("control_file_ignored") == 2
    control.dir.chmod(0o777)
    sup.check_dir()
    asyncio.run(sup.poll())
    assert sup.unsafe and not risk.permission.control_allows
    assert risk.permission.control_reason == "control directory unsafe: no new positions"
    control.dir.chmod(0o700)
    sup.check_dir()
    asyncio.run(sup.poll())
    assert sup.unsafe == "" and risk.permission.control_allows
