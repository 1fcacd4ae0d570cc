"""Holding costs live: the execution model charges the live book at each daily roll; the
OANDA adapter records the broker's DAILY_FINANCING transactions once each (however often
transactions are re-read); the drift report sets them side by side."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from stairway.cli import main
from stairway.daemon.drift import financing_report
from tests.faults.harness import INSTRUMENT, Rig, prices

pytestmark = pytest.mark.usefixtures("no_blocking")  # fail on blocking calls in the event loop
H = 3600 * 10**9
ROLL = 21 * H


def test_broker_financing_is_recorded_once_and_compared_with_the_model(tmp_path, spec, capsys):
    booked: list[dict] = []

    async def go():
        rig = Rig(tmp_path, spec)
        await rig.start()
        ex = rig.cfg.execution.model_copy(
            update={"financing_long_pct_per_year": 3.0, "financing_short_pct_per_year": 2.0}
        )
        cfg = rig.cfg.model_copy(update={"execution": ex})
        try:
            quotes = await asyncio.to_thread(prices, cfg, 12)
            rig.emu.prices = quotes
            next_roll = [quotes[0][0] - quotes[0][0] % (24 * H) + ROLL]

            async def broker_books_financing(d):
                # the broker charges 3.5 % / 2.5 % (the model says 3 / 2) at the first quote after each roll
                while rig.emu.now_ns >= next_roll[0]:
                    tx = rig.emu.daily_financing(3.5, 2.5)
                    if tx is not None:
                        booked.append(tx)
                    next_roll[0] += 24 * H

            def done(d):
                return (
                    d.slot.marks.last_quote_ts == quotes[-1][0]
                    and d.parts.reconciler.ready
                    and not d.parts.router.busy()
                )

            out = await rig.run(done, cfg=cfg, during=broker_books_financing, timeout=60)
            assert out.error is None
            await asyncio.sleep(1.2)  # two more reconcile passes: re-reading changes nothing
            rig.check()
            return cfg.service.db_path
        finally:
            await rig.close()

    db = asyncio.run(go())
    parts = [(tx["id"], float(p["financing"])) for tx in booked for p in tx["positionFinancings"]]
    assert len(parts) >= 3, "the test needs a position held over several rolls"
    with sqlite3.connect(db) as c:
        rows = c.execute(
            "SELECT broker_fill_id, financing FROM broker_fills WHERE broker_fill_id LIKE '%:financing:%'"
        ).fetchall()
        model = c.execute("SELECT units, days, charge FROM financing_charges").fetchall()
    # every DAILY_FINANCING part once, with the broker's amount
    assert sorted(rows) == sorted((f"{i}:financing:{INSTRUMENT}", a) for i, a in parts)
    assert model and all(d >= 1 for _, d, _ in model) and all(ch > 0 for _, _, ch in model)  # both sides pay
    rep = financing_report(db)
    (r,) = rep["instruments"]
    assert rep["broker_records"] == len(parts) and rep["model_charges"] == len(model)
    assert r["broker"] == pytest.approx(-sum(a for _, a in parts)) and r["model"] == pytest.approx(
        sum(m[2] for m in model)
    )
    assert r["difference"] == pytest.approx(r["broker"] - r["model"])
    assert main(["drift", "--paper-db", str(db), "--live-db", str(db), "--out", str(tmp_path / "drift")]) == 0
    assert "| instrument | model | broker | broker - model |" in capsys.readouterr().out
