"""Issue 21 §3: emergency close without the daemon (`stairway ctl flatten --direct`), against
the OANDA v20 emulator: the position is closed at the broker through the daemon's own journal
and book, a running daemon makes it refuse (naming the pid), a rejected close says so with
exit 1, and the next daemon start finds book = broker with nothing to reconcile."""

from __future__ import annotations

import asyncio
import os

import pytest

from stairway.core.errors import ConfigError
from stairway.core.locks import LockHeld
from stairway.daemon.direct_flatten import direct_flatten
from tests.faults.harness import Rig
from tests.faults.test_oanda_faults import last_price_done
from tests.faults.test_restarts import hold_then_stop, startup_events

pytestmark = pytest.mark.usefixtures("no_blocking")


def test_a_position_left_by_a_stopped_daemon_is_closed_and_the_next_start_is_in_sync(tmp_path, spec):
    async def go():
        rig = Rig(tmp_path, spec)
        await rig.start()
        try:
            held = await hold_then_stop(rig)
            res = await direct_flatten(rig.cfg, environ=rig.env(), clock=rig.clock)
            assert res.ok and res.closed == {"EUR_USD": -held}, res.lines
            assert rig.emu.positions.get("EUR_USD", 0.0) == 0.0
            info = rig.check()  # one POST per order, each journaled filled, every fill recorded, book == broker
            assert info["position"] == 0.0
            with rig.db() as c:
                runs = c.execute("SELECT run_id, summary_json FROM runs WHERE mode = 'flatten-direct'").fetchall()
                journal = c.execute("SELECT units, state FROM order_journal WHERE run_id = ?", (runs[0][0],)).fetchall()
            assert len(runs) == 1 and '"left": {}' in runs[0][1]
            assert journal == [(-held, "filled")]
            # a second run finds nothing to do and sends nothing
            sent = rig.emu.order_requests
            again = await direct_flatten(rig.cfg, environ=rig.env(), clock=rig.clock)
            assert again.ok and not again.closed and rig.emu.order_requests == sent
            assert again.lines == ["EUR_USD: flat at the broker, nothing to close"]
            # the next start: book and broker agree (flat), nothing adopted or closed
            out = await rig.run(lambda d: last_price_done(d, rig.emu), timeout=45)
            assert out.error is None
            rig.check()
            assert startup_events(rig)[-1][1:4] == ("in_sync", 0.0, 0.0)
        finally:
            await rig.close()

    asyncio.run(go())


def test_refused_while_the_daemon_runs_naming_its_pid(tmp_path, spec):
    async def go():
        rig = Rig(tmp_path, spec)
        await rig.start()
        refusals: list[str] = []

        async def try_direct(d):
            if not refusals:
                with pytest.raises(LockHeld) as e:
                    await direct_flatten(rig.cfg, environ=rig.env(), clock=rig.clock)
                refusals.append(str(e.value))

        try:
            rig.emu.prices = [(rig.emu.now_ns + k * 10**9, 1.1733, 1.17342) for k in range(5)]
            out = await rig.run(lambda d: bool(refusals), timeout=20, during=try_direct)
            assert out.error is None
        finally:
            await rig.close()
        assert f"in use by pid {os.getpid()}" in refusals[0]
        assert "the daemon is running: use `stairway ctl flatten` (its signal file) instead" in refusals[0]

    asyncio.run(go())


def test_a_rejected_close_is_reported_not_resent(tmp_path, spec):
    async def go():
        rig = Rig(tmp_path, spec)
        await rig.start()
        try:
            held = await hold_then_stop(rig)
            rig.emu.knobs.reject_reason = "MARKET_HALTED"
            sent = rig.emu.order_requests
            res = await direct_flatten(rig.cfg, environ=rig.env(), clock=rig.clock)
            assert not res.ok and res.left == {"EUR_USD": held}
            assert rig.emu.order_requests == sent + 1  # asked once, never again
            assert "close order rejected" in res.lines[0] and "MARKET_HALTED" in res.lines[0]
            assert res.lines[-1] == f"EUR_USD: STILL OPEN at the broker: {held:+g} units"
            rig.check()  # the journal says rejected; the book still holds the position, as the broker does
            rig.emu.knobs.reject_reason = None
            assert (await direct_flatten(rig.cfg, environ=rig.env(), clock=rig.clock)).ok
            rig.check()
        finally:
            await rig.close()

    asyncio.run(go())


def test_a_paper_config_or_an_unknown_instrument_is_refused(tmp_path, spec):
    from tests.helpers import daemon_config

    cfg, _ = daemon_config(tmp_path, tmp_path / "x.csv", "2017-10-01", "2017-11-01")
    with pytest.raises(ConfigError, match="simulated \\(paper\\); there is nothing to close at a broker"):
        asyncio.run(direct_flatten(cfg))

    async def go():
        rig = Rig(tmp_path / "live", spec)
        (tmp_path / "live").mkdir()
        await rig.start()
        try:
            with pytest.raises(ConfigError, match=r"--instrument GBP_USD: not traded by this daemon \(EUR_USD\)"):
                await direct_flatten(rig.cfg, "GBP_USD", environ=rig.env())
        finally:
            await rig.close()

    asyncio.run(go())


def test_ib_a_position_left_by_a_stopped_daemon_is_closed(tmp_path, spec):
    """The same through the IB adapter and the real ib_async client, against the TWS wire
    emulator (the gateway stays up after the daemon stops)."""
    from stairway.core.policy import ScriptedPolicy
    from tests.faults.test_ib_faults import rig_for

    async def go():
        rig = await rig_for(tmp_path, spec)
        d, error = await rig.run(keep_gateway=True, policy=ScriptedPolicy([1, 0, 0, 3, 2, 0, 0, 3, 1] + [0] * 100_000))
        assert error is None
        held = rig.gw.server_position
        assert held != 0.0  # the daemon stopped holding a position (its last decision was a BUY)
        rig.check()
        bundle = rig.adapters(rig.cfg, None)
        try:
            res = await direct_flatten(rig.cfg, clock=lambda: rig.gw.now_ns, bundle=bundle)
        finally:
            await rig.gw.close()
        assert res.ok and res.closed == {"EUR_USD": -held}, res.lines
        assert rig.gw.server_position == 0.0
        journal = rig.check()  # one placeOrder per client id, no lost execution, book == gateway == 0
        assert sum(s == "filled" for s in journal.values()) >= 4

    asyncio.run(go())
