"""Paper-live (broker prices, paper fills) and live (broker fills) on the same stream and
model: the same decisions, the same client ids, and a drift report between their fills."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from stairway.cli import main
from stairway.daemon.drift import drift_report
from tests.faults.harness import Rig, prices

pytestmark = pytest.mark.usefixtures("no_blocking")  # fail on blocking calls in the event loop


def test_paper_live_sends_nothing_and_drift_report_matches_orders(tmp_path, spec, capsys):
    async def go():
        rig = Rig(tmp_path, spec)
        await rig.start()
        try:
            quotes = await asyncio.to_thread(prices, rig.cfg, 12)
            rig.emu.prices = quotes
            live_cfg = rig.cfg
            svc = live_cfg.service.model_copy(update={"db_name": "paper-live.db"})
            paper_cfg = live_cfg.model_copy(
                update={"broker": live_cfg.broker.model_copy(update={"fills": "paper"}), "service": svc}
            )

            def done(d):
                return d.slot.marks.last_quote_ts == quotes[-1][0] and d.slot.instrument not in d.parts.broker.working

            out = await rig.run(done, cfg=paper_cfg, timeout=45)
            assert out.error is None and out.daemon.parts.router is None
            assert rig.emu.order_requests == 0  # paper-live never sends an order to the broker
            rig.emu.cursor = 0  # the same stream again, now with real orders
            out = await rig.run(done, timeout=45)
            assert out.error is None
            rig.check()
            return paper_cfg.service.db_path, live_cfg.service.db_path
        finally:
            await rig.close()

    paper_db, live_db = asyncio.run(go())
    rep = drift_report(paper_db, live_db, 0.0001)
    with sqlite3.connect(paper_db) as c:
        paper_orders = c.execute("SELECT COUNT(DISTINCT client_order_id) FROM fills").fetchone()[0]
    assert rep["matched"] >= 3 and rep["matched"] + rep["only_paper"] == paper_orders
    # the emulator fills at the touch; the paper model adds 0.1 pip slippage and 250 ms latency
    assert all(abs(r["drift_pips"]) < 50 for r in rep["orders"])
    assert (
        main(["drift", "--paper-db", str(paper_db), "--live-db", str(live_db), "--out", str(tmp_path / "drift")]) == 0
    )
    assert "| matched orders |" in capsys.readouterr().out and (tmp_path / "drift.json").exists()
    assert main(["drift", "--paper-db", str(tmp_path / "nope.db"), "--live-db", str(live_db)]) != 0
