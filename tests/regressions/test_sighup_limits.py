"""Issue 9.5: SIGHUP reloads every risk limit, derived ones included: after a lower maximum
is reloaded an order at the old size is actually blocked, in the slot and in reconciliation."""

import asyncio
import os
import signal
import sqlite3

import pytest

from stairway.core.bar_files import load_bars
from stairway.core.policy import ScriptedPolicy
from stairway.daemon.app import Daemon
from stairway.daemon.risk import RiskConfig, RiskEngine
from tests.faults.harness import Rig, prices
from tests.helpers import EURUSD, daemon_config, write_bars_csv
from tests.integration.test_service import until


def test_reloaded_lower_limits_apply_to_the_next_check():
    risk = RiskEngine(RiskConfig(), 100_000.0, 60)
    assert risk.check("EUR_USD", 0.0, 100_000.0).units == 100_000.0
    risk.cfg = RiskConfig(max_position_lots=0.5, max_order_lots=0.25, trades_per_session_minute_bars=(60, 120))
    d = risk.check("EUR_USD", 0.0, 100_000.0)
    assert d.units == 25_000.0 and d.kind == "order_cap"
    assert risk.band == (1, 2)


def test_sighup_lowered_maximum_blocks_orders_at_the_old_size(tmp_path, spec):
    b = load_bars(EURUSD)[0]
    bars = b[b["ts_ns"] >= 1506816000 * 10**9][:400]
    cfg, path = daemon_config(
        tmp_path, write_bars_csv(tmp_path / "b.csv", bars), "2017-10-01", "2018-01-01", batch_ticks=4, speed=100_000
    )
    policy = ScriptedPolicy([1, 2] * 400)  # BUY, SELL, ...: a full lot each way every bar

    async def scenario():
        d = Daemon(cfg, policy=policy, config_path=path)
        task = asyncio.create_task(d.run())
        await until(lambda: hasattr(d, "slot") and d.slot.counters.orders >= 6)
        text = path.read_text()
        assert "max_position_lots = 1.0\nmax_total_lots" in text
        path.write_text(
            text.replace("max_position_lots = 1.0\nmax_total_lots", "max_position_lots = 0.5\nmax_total_lots")
        )
        os.kill(os.getpid(), signal.SIGHUP)
        await until(lambda: d.parts.risk.cfg.max_position_lots == 0.5, 5)
        reloaded_at = d.slot.counters.last_bar_ts
        orders = d.slot.counters.orders
        await until(lambda: d.slot.counters.orders >= orders + 6)
        d.stop.set()
        return reloaded_at, await task

    reloaded_at, res = asyncio.run(scenario())
    db = sqlite3.connect(res.db_path)
    before = [r[0] for r in db.execute("SELECT units FROM positions WHERE ts_ns < ?", (reloaded_at,))]
    after = [r[0] for r in db.execute("SELECT units FROM positions WHERE ts_ns > ? + 3600000000000", (reloaded_at,))]
    assert max(map(abs, before)) == 100_000.0 and len(after) >= 3
    assert max(map(abs, after)) == pytest.approx(50_000.0)  # the old size never again
    limited = db.execute(
        "SELECT count(*) FROM risk_events WHERE kind = 'position_limit' AND ts_ns > ?", (reloaded_at,)
    ).fetchone()[0]
    assert limited > 0


def test_reconciler_cuts_to_the_reloaded_maximum(tmp_path, spec):
    """The emergency size check reads the maximum at every pass: a position of the old
    maximum is cut back once a lower one is loaded."""

    async def go():
        rig = Rig(tmp_path, spec)
        await rig.start_with(stop_atr_multiple=None)  # a stop firing would bring it down instead
        try:
            rig.emu.prices = prices(rig.cfg, 12)
            state = {}

            async def during(d):
                if (
                    "at" not in state
                    and abs(rig.emu.positions.get("EUR_USD", 0.0)) == 100_000
                    and not d.parts.router.busy()
                ):
                    state["at"] = rig.emu.order_requests
                    d.parts.risk.cfg = d.parts.risk.cfg.model_copy(
                        update={"max_position_lots": 0.5}
                    )  # what SIGHUP does

            done = {}

            def until(d):
                if "at" in state and abs(rig.emu.positions.get("EUR_USD", 0.0)) <= 50_000 and not d.parts.router.busy():
                    done["cut"] = True
                return bool(done)

            # always BUY: after the reload the slot wants nothing more (it is long already), so
            # only the reconciler's size check can bring the position down to the new maximum
            out = await rig.run(until, timeout=45, during=during, policy=ScriptedPolicy([1] * 100_000))
            assert out.error is None and done.get("cut"), (state, rig.emu.positions)
            rig.check()
            assert abs(rig.emu.positions.get("EUR_USD", 0.0)) <= 50_000
            with rig.db() as c:
                kinds = [r[0] for r in c.execute("SELECT kind FROM reconciliation_events")]
            return kinds
        finally:
            await rig.close()

    kinds = asyncio.run(go())
    assert "flatten_excess" in kinds, kinds
