"""Issue 23 §2: the daemon is composed. One function (daemon.build.build) makes every component
into a typed container (daemon.parts.Parts); the status view, the supervisor and the model
events receive the parts they read, and run without a Daemon object."""

import asyncio
import contextlib
import dataclasses
import time
import typing

import pytest

from stairway.core.bar_files import load_bars
from stairway.daemon import parts as parts_module
from stairway.daemon.app import Daemon
from stairway.daemon.build import build
from stairway.daemon.lifecycle import Lifecycle, State, derive
from stairway.daemon.parts import Given, Parts
from stairway.daemon.status import StatusView, Vitals
from stairway.daemon.supervisor import LoopLag
from tests.helpers import EURUSD, daemon_config, tiny_checkpoint, write_bars_csv

pytestmark = pytest.mark.usefixtures("no_blocking")


def test_parts_are_built_by_one_function_and_read_by_the_view_without_a_daemon(tmp_path, spec):
    bars = load_bars(EURUSD)[0]
    csv = write_bars_csv(tmp_path / "bars.csv", bars[(bars["ts_ns"] >= 1506816000 * 10**9)][:200])
    cfg, _ = daemon_config(tmp_path, csv, "2017-10-01", "2018-01-01", warm_start="false")
    ck, _ = tiny_checkpoint(tmp_path / "models", spec, seed=3)
    polls = []

    async def scenario():
        stop, lifecycle = asyncio.Event(), Lifecycle()
        async with contextlib.AsyncExitStack() as stack:
            p = await build(cfg, spec, Given(), stop, lifecycle, lambda: polls.append(1), stack)
            view = StatusView(cfg, p, lifecycle, LoopLag(), Vitals(), stop, time.time_ns)
            out = {
                "parts": p,
                "snapshot": view.snapshot(),
                "health": view.health(),
                "state": derive(p.slots, p.risk, False),
            }
            # the halt is a health reason, but not an alert condition (it is alerted at once)
            p.risk.state.halted, p.risk.state.halted_reason = True, "intraday drawdown 2.6 % >= 2.5 %"
            p.risk.state.tier = 4
            out["halted_health"], out["conditions"] = view.health(), view.conditions()
            out["halted_state"] = derive(p.slots, p.risk, False)
        try:
            await p.store.db.execute("SELECT 1")
        except ValueError as e:  # aiosqlite: "no active connection"
            out["closed"] = str(e)
        return out

    out = asyncio.run(scenario())
    p = out["parts"]
    assert isinstance(p, Parts) and list(p.slots) == ["EUR_USD"] == list(p.watchers)
    assert p.models.slots is p.slots and p.supervisor.slots is p.slots  # they read the same slots, not copies
    assert p.slots["EUR_USD"].policy.sha == ck.sha and p.mode == "paper-replay"
    assert p.router is None and p.reconciler is None and p.adapter is None  # paper: no broker connection
    snap = out["snapshot"]
    assert snap["run_id"] == p.run_id and snap["instrument"] == "EUR_USD" and snap["model_sha"] == ck.sha
    assert snap["state"] == "starting" and snap["health"] == [] == out["health"]
    assert out["state"] == (State.WARMING, "features warming up: EUR_USD")  # no quote has been seen
    assert out["halted_health"] == ["halted: intraday drawdown 2.6 % >= 2.5 %"]
    assert "health:halted" not in out["conditions"] and out["conditions"]["drawdown_tier"][0] == "tier_flatten"
    assert out["halted_state"] == (State.WARMING, "features warming up: EUR_USD")  # warming comes first
    assert out.get("closed") == "no active connection"  # the exit stack closes what set-up opened


def test_every_part_is_typed_and_the_daemon_keeps_only_its_run(tmp_path):
    from stairway.daemon.brokers.factory import AdapterBundle
    from stairway.daemon.config import Leg

    hints = typing.get_type_hints(Parts, {**vars(parts_module), "Leg": Leg, "AdapterBundle": AdapterBundle})
    fields = [f.name for f in dataclasses.fields(Parts)]
    assert len(fields) > 20 and all(f in hints for f in fields)
    cfg, _ = daemon_config(tmp_path, EURUSD, "2017-10-01", "2018-01-01")
    d = Daemon(cfg)
    assert len(vars(d)) <= 20 and not set(vars(d)) & set(fields)  # the components live in d.parts only
    assert not d.setup_done
    with pytest.raises(AttributeError, match="not set up yet"):
        _ = d.parts
