import asyncio
import sqlite3

import pytest

from stairway.core.errors import FatalError
from stairway.daemon.rows import FillRow, RiskEventRow, SessionMetricsRow
from stairway.daemon.store import MIGRATIONS, SCHEMA_VERSION, Store


def run(coro):
    return asyncio.run(coro)


def test_store_fresh_database_is_wal_full_and_current_version(tmp_path):
    async def go():
        s = await Store.open(tmp_path / "a.db")
        mode = await (await s.db.execute("PRAGMA journal_mode")).fetchone()
        sync = await (await s.db.execute("PRAGMA synchronous")).fetchone()
        await s.close()
        return mode[0], sync[0]

    assert run(go()) == ("wal", 2)  # 2 = FULL
    with sqlite3.connect(tmp_path / "a.db") as c:
        assert c.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 2


def test_store_migrates_v1_database_keeping_rows(tmp_path):
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as c:
        c.executescript(MIGRATIONS[0])
        c.execute("PRAGMA user_version = 1")
        c.execute("INSERT INTO runs (run_id, started_ns, mode, model_sha, config_json) VALUES ('r', 1, 'm', 's', '{}')")

    async def go():
        s = await Store.open(db)
        s.add(SessionMetricsRow("r", "EUR_USD", "2017-10-02", 24, 24, 3, 2, 2, 1e5, 1.001e5, 100.0, 0.1))
        await s.flush()
        await s.close()

    run(go())
    with sqlite3.connect(db) as c:
        assert c.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert c.execute("SELECT run_id FROM runs").fetchall() == [("r",)]
        assert c.execute("SELECT pnl FROM session_metrics").fetchall() == [(100.0,)]


def test_store_refuses_newer_schema(tmp_path):
    db = tmp_path / "new.db"
    with sqlite3.connect(db) as c:
        c.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(FatalError, match=f"schema v{SCHEMA_VERSION + 1} is newer than this Stairway"):
        run(Store.open(db))


def test_store_failed_flush_rolls_back_and_keeps_nothing_half_written(tmp_path):
    async def go():
        s = await Store.open(tmp_path / "b.db")
        s.add(RiskEventRow("r", 1, "EUR_USD", "ok", "", 0.0, 0.0))
        s.add(FillRow("r", "id", 0, "EUR_USD", 1, 1.0, 1.1, 0.0))
        s.add(FillRow("r", "id", 0, "EUR_USD", 1, 1.0, 1.1, 0.0))  # duplicate key
        with pytest.raises(sqlite3.IntegrityError):
            await s.flush()
        n = await (await s.db.execute("SELECT count(*) FROM risk_events")).fetchone()
        await s.db.close()
        return n[0]

    assert run(go()) == 0


def test_a_flush_cancelled_mid_transaction_still_commits_and_the_next_one_works(tmp_path):
    import asyncio

    async def go():
        store = await Store.open(tmp_path / "c.db")
        await store.start_run("r", 0, "test", "sha", "{}")
        for i in range(20_000):
            store.add(RiskEventRow("r", i, "EUR_USD", "tick", "", 0.0, 0.0))
        t = asyncio.create_task(store.flush())
        await asyncio.sleep(0)  # the transaction has begun
        t.cancel()
        try:
            await t
        except asyncio.CancelledError:
            pass
        store.add(RiskEventRow("r", 1, "EUR_USD", "after", "", 0.0, 0.0))
        await store.flush()  # would fail with "cannot start a transaction within a transaction"
        n = (await (await store.db.execute("SELECT COUNT(*) FROM risk_events")).fetchone())[0]
        await store.close()
        return n

    assert asyncio.run(go()) == 20_001


def test_flush_waits_for_rows_another_flush_is_still_writing(tmp_path):
    """Write-ahead: the order router's ``await store.flush()`` must not return while its
    journal row sits in a transaction another task (the periodic flusher) has begun but not
    committed; it used to return at once (nothing pending) and the order went out first, so a
    kill -9 in that window lost the journal row (found by the fault matrix's
    kill-9-between-send-and-acknowledgement case, 1 run in 3)."""

    async def go():
        store = await Store.open(tmp_path / "w.db")
        await store.start_run("r", 0, "test", "sha", "{}")
        for i in range(20_000):
            store.add(RiskEventRow("r", i, "EUR_USD", "tick", "", 0.0, 0.0))
        other = asyncio.create_task(store.flush())  # the periodic flusher takes every row
        while not store._lock.locked():
            await asyncio.sleep(0)
        assert not any(store.pending.values())  # nothing left pending for the second caller
        await store.flush()  # the sender's write-ahead flush
        with sqlite3.connect(tmp_path / "w.db") as c:  # another process's view of the file
            on_disk = c.execute("SELECT COUNT(*) FROM risk_events").fetchone()[0]
        await other
        await store.close()
        return on_disk

    assert run(go()) == 20_000


def test_every_row_type_names_its_tables_columns_in_order(tmp_path):
    """The typed rows (daemon.rows) and the migrated schema agree: each row's fields are its
    table's columns, in order (an autoincrement id aside), so a row inserts by name."""
    from stairway.daemon.rows import TABLES

    async def go():
        s = await Store.open(tmp_path / "t.db")
        await s.close()

    run(go())
    with sqlite3.connect(tmp_path / "t.db") as c:
        tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        for table, (row, _) in TABLES.items():
            cols = [r[1] for r in c.execute(f"PRAGMA table_info({table})") if r[1] != "id"]
            assert list(row._fields) == cols, table
    assert set(TABLES) <= tables and "events" not in tables


def test_bars_wait_for_time_or_size_and_a_fill_is_due_at_once(tmp_path):
    """Issue 23 §4: the feed commits bars, decisions and positions on a timer or by size (a
    quote that closes a bar no longer costs a commit); a fill, an order or a risk event makes
    the next batch end commit."""
    from stairway.daemon.rows import BarRow

    async def go():
        s = await Store.open(tmp_path / "a.db")
        s.max_rows, s.max_secs = 3, 0.25
        assert not s.due(100.0)  # nothing queued: the wait starts here
        s.add(BarRow("r", "EUR_USD", 1, 1.0, 1.0, 1.0, 1.0, 4))
        s.add(BarRow("r", "EUR_USD", 2, 1.0, 1.0, 1.0, 1.0, 4))
        waits = [s.due(100.1), s.due(100.26)]  # two bars: not yet; the oldest has waited 0.26 s
        await s.flush()
        s.due(200.0)
        for k in range(3):
            s.add(BarRow("r", "EUR_USD", 10 + k, 1.0, 1.0, 1.0, 1.0, 4))
        by_size = s.due(200.0)  # three rows: max_rows
        await s.flush()
        s.due(300.0)
        s.add(FillRow("r", "c-1", 0, "EUR_USD", 5, 1000.0, 1.1, 0.0))
        fill = s.due(300.0)
        await s.flush()
        after = (s.queued, s.urgent, s.due(300.0))
        await s.close()
        return waits, by_size, fill, after

    waits, by_size, fill, after = run(go())
    assert waits == [False, True] and by_size and fill and after == (0, False, False)
    with sqlite3.connect(tmp_path / "a.db") as c:
        assert c.execute("SELECT COUNT(*) FROM bars").fetchone()[0] == 5
        assert c.execute("SELECT COUNT(*) FROM fills").fetchone()[0] == 1
