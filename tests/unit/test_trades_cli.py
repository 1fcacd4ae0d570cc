"""Issue 22 §4: `stairway trades` lists a run's orders, fills and closed trades with P&L per day
and per instrument from the daemon's store; P&L by the book's own arithmetic."""

from __future__ import annotations

import asyncio
import datetime as dt
import json

import pytest

from stairway.cli import main
from stairway.core.errors import ConfigError
from stairway.daemon.rows import FillRow, OrderRow
from stairway.daemon.store import Store
from stairway.trades_cli import listing

DAY = 86_400 * 10**9
T0 = int(dt.datetime(2017, 10, 2, 9, tzinfo=dt.UTC).timestamp()) * 10**9


def write_run(db, run_id="r1", started=T0):
    """Long 1 lot 1.1000 -> 1.1010; long again 1.1000, reversed at 1.0990 (2 lots); the short
    closed at 1.0980 the next day; then a GBP_USD long still open. Commission 2 a lot a side."""
    fills = [
        ("sw-EUR_USD-1-0", "EUR_USD", T0, 100_000.0, 1.1000, 2.0),
        ("sw-EUR_USD-2-0", "EUR_USD", T0 + 3600 * 10**9, -100_000.0, 1.1010, 2.0),
        ("sw-EUR_USD-3-0", "EUR_USD", T0 + 7200 * 10**9, 100_000.0, 1.1000, 2.0),
        ("sw-EUR_USD-4-0", "EUR_USD", T0 + 10800 * 10**9, -200_000.0, 1.0990, 4.0),
        ("sw-EUR_USD-5-0", "EUR_USD", T0 + DAY, 100_000.0, 1.0980, 2.0),
        ("sw-GBP_USD-6-0", "GBP_USD", T0 + DAY, 50_000.0, 1.3000, 1.0),
    ]

    async def go():
        store = await Store.open(db)
        await store.start_run(run_id, started, "paper-replay", "sha", "{}")
        for coid, inst, ts, units, price, comm in fills:
            store.add(OrderRow(run_id, coid, inst, ts, units, units, "filled", ts))
            store.add(FillRow(run_id, coid, 0, inst, ts, units, price, comm))
        await store.flush()
        await store.close()

    asyncio.run(go())


def test_round_trips_reversals_and_totals(tmp_path):
    db = tmp_path / "d.db"
    write_run(db)
    out = listing(db)
    assert out["run_id"] == "r1" and len(out["orders"]) == 6 and len(out["fills"]) == 6
    assert out["fills"][0]["time"] == "2017-10-02T09:00:00Z"
    got = [(t["instrument"], t["side"], t["opened"][11:16], t["closed"][:16], t["pnl"]) for t in out["trades"]]
    assert got == [
        ("EUR_USD", "long", "09:00", "2017-10-02T10:00", 96.0),  # +100 less 2 x 2
        ("EUR_USD", "long", "11:00", "2017-10-02T12:00", -104.0),  # -100, 2 in, half of the reversal's 4
        ("EUR_USD", "short", "12:00", "2017-10-03T09:00", 96.0),  # +100, the other half, 2 out
    ]
    assert out["per_day"] == {"2017-10-02": {"trades": 2, "pnl": -8.0}, "2017-10-03": {"trades": 1, "pnl": 96.0}}
    assert out["per_instrument"] == {"EUR_USD": {"trades": 3, "pnl": 88.0, "wins": 2}}  # GBP_USD still open
    # --since keeps trades closed on or after the day
    assert [t["pnl"] for t in listing(db, since=dt.date(2017, 10, 3))["trades"]] == [96.0]


def test_the_command_prints_tables_or_json_and_names_a_bad_run(tmp_path, capsys):
    db = tmp_path / "d.db"
    write_run(db, "old", T0)
    write_run(db, "new", T0 + DAY)
    assert main(["trades", "--db", str(db), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["run_id"] == "new"  # the latest by default
    assert main(["trades", "--db", str(db), "--run", "old"]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"run old ({db}): 6 orders, 6 fills, 3 closed trades")
    assert "2017-10-03       1      +96.00" in text and "EUR_USD          3     2      +88.00" in text
    assert main(["trades", "--db", str(db), "--run", "nope"]) == 2
    err = capsys.readouterr().err
    assert "--run nope: not in" in err and "(latest: new, old)" in err
    with pytest.raises(ConfigError, match="no daemon database here"):
        listing(tmp_path / "absent.db")
    junk = tmp_path / "junk.db"
    junk.write_text("not sqlite")
    assert main(["trades", "--db", str(junk)]) == 2  # one line, no traceback
    assert f"{junk}: not a readable daemon database: file is not a database" in capsys.readouterr().err
