"""The daemon's SQLite store (aiosqlite): WAL, synchronous=FULL, versioned schema.

Rows are buffered in memory and written in one transaction by ``flush``; the caller decides
when (the replay loop after every batch; a real broker before every order is sent). Nothing
is reported as done before the transaction that holds it has committed. Bar-level rows only,
never one row per tick.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from pathlib import Path

import aiosqlite
import numpy as np

from stairway.core.errors import FatalError
from stairway.core.types import BAR_DTYPE
from stairway.daemon.rows import TABLE_OF, TABLES, insert_sql

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE runs (run_id TEXT PRIMARY KEY, started_ns INTEGER NOT NULL, mode TEXT NOT NULL,
                       model_sha TEXT NOT NULL, config_json TEXT NOT NULL, ended_ns INTEGER, summary_json TEXT);
    CREATE TABLE bars (run_id TEXT NOT NULL, instrument TEXT NOT NULL, ts_ns INTEGER NOT NULL,
                       open REAL, high REAL, low REAL, close REAL, ticks INTEGER,
                       PRIMARY KEY (run_id, instrument, ts_ns)) WITHOUT ROWID;
    CREATE TABLE decisions (run_id TEXT NOT NULL, instrument TEXT NOT NULL, bar_ts_ns INTEGER NOT NULL,
                            action TEXT NOT NULL, confidence REAL, model_sha TEXT NOT NULL,
                            position_units REAL, equity REAL, order_units REAL, risk_note TEXT,
                            PRIMARY KEY (run_id, instrument, bar_ts_ns)) WITHOUT ROWID;
    CREATE TABLE orders (run_id TEXT NOT NULL, client_order_id TEXT NOT NULL, instrument TEXT NOT NULL,
                         bar_ts_ns INTEGER NOT NULL, units REAL NOT NULL, filled_units REAL NOT NULL,
                         status TEXT NOT NULL, not_before_ns INTEGER NOT NULL,
                         PRIMARY KEY (run_id, client_order_id)) WITHOUT ROWID;
    CREATE TABLE fills (run_id TEXT NOT NULL, client_order_id TEXT NOT NULL, seq INTEGER NOT NULL,
                        instrument TEXT NOT NULL, ts_ns INTEGER NOT NULL, units REAL NOT NULL,
                        price REAL NOT NULL, commission REAL NOT NULL,
                        PRIMARY KEY (run_id, client_order_id, seq)) WITHOUT ROWID;
    CREATE TABLE positions (run_id TEXT NOT NULL, instrument TEXT NOT NULL, ts_ns INTEGER NOT NULL,
                            units REAL, avg_price REAL, realized REAL, equity REAL,
                            PRIMARY KEY (run_id, instrument, ts_ns)) WITHOUT ROWID;
    CREATE TABLE events (id INTEGER PRIMARY KEY, run_id TEXT NOT NULL, ts_ns INTEGER NOT NULL,
                         kind TEXT NOT NULL, detail_json TEXT NOT NULL);
    """,
    """
    CREATE TABLE session_metrics (run_id TEXT NOT NULL, instrument TEXT NOT NULL, session_date TEXT NOT NULL,
                                  bars INTEGER, decisions INTEGER, holds INTEGER, orders INTEGER, fills INTEGER,
                                  equity_open REAL, equity_close REAL, pnl REAL, max_drawdown_pct REAL,
                                  PRIMARY KEY (run_id, instrument, session_date)) WITHOUT ROWID;
    """,
    """
    CREATE TABLE risk_events (id INTEGER PRIMARY KEY, run_id TEXT NOT NULL, ts_ns INTEGER NOT NULL,
                              instrument TEXT, kind TEXT NOT NULL, detail TEXT NOT NULL,
                              requested_units REAL, allowed_units REAL);
    CREATE TABLE model_swaps (id INTEGER PRIMARY KEY, run_id TEXT NOT NULL, ts_ns INTEGER NOT NULL,
                              old_sha TEXT, new_sha TEXT, outcome TEXT NOT NULL, reason TEXT NOT NULL);
    """,
    """
    CREATE TABLE order_journal (client_order_id TEXT PRIMARY KEY, run_id TEXT NOT NULL, instrument TEXT NOT NULL,
                                bar_ts_ns INTEGER NOT NULL, seq INTEGER NOT NULL, units REAL NOT NULL,
                                state TEXT NOT NULL, broker_order_id TEXT, filled_units REAL NOT NULL,
                                reason TEXT, created_ns INTEGER NOT NULL, updated_ns INTEGER NOT NULL) WITHOUT ROWID;
    CREATE INDEX order_journal_state ON order_journal (state);
    CREATE TABLE broker_fills (broker_fill_id TEXT PRIMARY KEY, run_id TEXT NOT NULL, client_order_id TEXT,
                               instrument TEXT NOT NULL, ts_ns INTEGER NOT NULL, units REAL NOT NULL,
                               price REAL NOT NULL, commission REAL NOT NULL, financing REAL NOT NULL,
                               spread_cost REAL NOT NULL, applied INTEGER NOT NULL) WITHOUT ROWID;
    CREATE TABLE book (instrument TEXT PRIMARY KEY, units REAL NOT NULL, avg_price REAL NOT NULL,
                       realized REAL NOT NULL, updated_ns INTEGER NOT NULL, run_id TEXT NOT NULL) WITHOUT ROWID;
    CREATE TABLE broker_cursor (broker TEXT PRIMARY KEY, cursor TEXT NOT NULL, updated_ns INTEGER NOT NULL)
        WITHOUT ROWID;
    CREATE TABLE reconciliation_events (id INTEGER PRIMARY KEY, run_id TEXT NOT NULL, ts_ns INTEGER NOT NULL,
                                        trigger TEXT NOT NULL, instrument TEXT, kind TEXT NOT NULL, ours REAL,
                                        broker REAL, order_units REAL, detail TEXT NOT NULL);
    """,
    """
    DROP TABLE events;
    """,  # never written by the daemon: its decisions, orders and risk actions have their own tables
    """
    ALTER TABLE decisions ADD COLUMN regime REAL;
    """,  # the instrument's regime at the decision (monitoring and sizing; never observed by the policy)
    """
    CREATE INDEX bars_instrument_ts ON bars (instrument, ts_ns);
    """,  # warm start and the trainer's data store read an instrument's bars across runs
    """
    CREATE TABLE financing_charges (run_id TEXT NOT NULL, instrument TEXT NOT NULL, ts_ns INTEGER NOT NULL,
                                    units REAL NOT NULL, days REAL NOT NULL, charge REAL NOT NULL,
                                    PRIMARY KEY (run_id, instrument, ts_ns)) WITHOUT ROWID;
    """,  # the execution model's holding costs (the drift report compares the broker's)
    """
    ALTER TABLE order_journal ADD COLUMN stop_price REAL NOT NULL DEFAULT 0;
    """,  # the stop each order armed: an uncapped ATR stop moved by hand is compared with it
)
SCHEMA_VERSION = len(MIGRATIONS)

_INSERT = {table: insert_sql(table) for table in TABLES}
OPEN_ORDER_STATES = ("new", "unknown")
DEFERRABLE = frozenset(
    {"bars", "decisions", "positions"}
)  # many, and only records: batched (Store.due)  # written before sending / outcome not yet known


def _check_db_path(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise FatalError(f"{path.parent}: cannot create the state directory: {e.strerror or e}") from None
    if path.is_dir():
        raise FatalError(f"{path}: is a directory, not a database file")


def _read_only(path: Path, e: sqlite3.Error) -> bool:
    """Whether SQLite failed because it may not write, not because the file is bad."""
    code = getattr(e, "sqlite_errorcode", None)
    if code is not None and code & 0xFF == sqlite3.SQLITE_READONLY:
        return True
    if "readonly" in str(e) or "read-only" in str(e):
        return True
    return not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK))


class Store:
    def __init__(self, db: aiosqlite.Connection, path: Path) -> None:
        self.db, self.path = db, path
        self.pending: dict[str, list[tuple]] = {k: [] for k in TABLES}
        self.committed_rows = 0
        self.queued, self.urgent = 0, False  # rows waiting; one of them not DEFERRABLE
        self.max_rows, self.max_secs = 4096, 0.25  # service.flush_rows / flush_secs (Store.due)
        self._since = 0.0
        self._lock = asyncio.Lock()  # the feed, order and reconciliation tasks all flush

    @classmethod
    async def open(cls, path: str | Path) -> Store:
        """Open (creating it if needed) and migrate; a database that cannot be used raises
        FatalError naming the file, with the connection closed (its worker thread would
        otherwise keep the process alive)."""
        path = Path(path)
        await asyncio.to_thread(_check_db_path, path)
        try:
            db = await aiosqlite.connect(path, isolation_level=None)
        except (sqlite3.Error, OSError) as e:
            raise FatalError(f"{path}: cannot open the database: {e}") from None
        store = cls(db, path)
        try:
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute("PRAGMA synchronous=FULL")
            await db.execute("PRAGMA foreign_keys=ON")
            await store._migrate()
        except BaseException as e:
            await db.close()
            if isinstance(e, sqlite3.Error):
                if await asyncio.to_thread(_read_only, path, e):
                    raise FatalError(
                        f"{path}: the database or its directory is read-only ({e}); make both writable by "
                        "the daemon's user (nothing is wrong with the file)"
                    ) from None
                raise FatalError(
                    f"{path}: not a usable Stairway database ({e}); move it aside or restore a backup"
                ) from None
            raise
        return store

    async def _migrate(self) -> None:
        row = await (await self.db.execute("PRAGMA user_version")).fetchone()
        assert row is not None  # PRAGMA user_version always answers one row
        (version,) = row
        if version > SCHEMA_VERSION:
            raise FatalError(f"{self.path}: database schema v{version} is newer than this Stairway (v{SCHEMA_VERSION})")
        for v in range(version, SCHEMA_VERSION):
            await self.db.execute("BEGIN IMMEDIATE")
            try:
                for stmt in filter(str.strip, MIGRATIONS[v].split(";")):
                    await self.db.execute(stmt)
                await self.db.execute(f"PRAGMA user_version = {v + 1}")
                await self.db.execute("COMMIT")
            except BaseException:
                await self.db.execute("ROLLBACK")
                raise

    def add(self, row: tuple) -> None:
        """Queue a row (one of daemon.rows' types: its type names the table) for the next flush."""
        table = TABLE_OF[type(row)]
        self.pending[table].append(row)
        self.queued += 1
        if table not in DEFERRABLE:
            self.urgent = True

    def due(self, now: float) -> bool:
        """Whether the feed should flush now (``now``: time.monotonic()): a row that is not a
        bar, decision or position is waiting (fills, orders, risk events, the book: committed
        at the end of the batch that made them), or more than ``max_rows`` rows are, or the
        oldest has waited ``max_secs``. Bars, decisions and positions are batched: a kill -9
        loses at most ``max_secs`` of them, never a fill or an order."""
        if not self.queued:
            self._since = now
            return False
        return self.urgent or self.queued >= self.max_rows or now - self._since >= self.max_secs

    async def start_run(self, run_id: str, started_ns: int, mode: str, model_sha: str, config_json: str) -> list[str]:
        """Record a run; earlier runs that never recorded their end (killed, crashed) get a
        crash marker in their summary. Returns their ids."""
        crashed = [
            r[0] for r in await self._rows("SELECT run_id FROM runs WHERE ended_ns IS NULL AND summary_json IS NULL")
        ]
        marker = json.dumps({"crashed": f"no end recorded; found by run {run_id}"})
        await self.db.execute("BEGIN IMMEDIATE")
        try:
            await self.db.execute(
                "UPDATE runs SET summary_json = ? WHERE ended_ns IS NULL AND summary_json IS NULL", (marker,)
            )
            await self.db.execute(
                "INSERT INTO runs (run_id, started_ns, mode, model_sha, config_json) VALUES (?,?,?,?,?)",
                (run_id, started_ns, mode, model_sha, config_json),
            )
            await self.db.execute("COMMIT")
        except BaseException:
            await self.db.execute("ROLLBACK")
            raise
        return crashed

    async def end_run(self, run_id: str, ended_ns: int, summary: dict) -> None:
        await self.flush()
        await self.db.execute(
            "UPDATE runs SET ended_ns = ?, summary_json = ? WHERE run_id = ?",
            (ended_ns, json.dumps(summary, default=float), run_id),
        )

    async def flush(self) -> int:
        """Write every buffered row in one transaction; returns the number of rows committed.

        Safe to call from several tasks: flushes are serialised, and rows added while one is
        being written wait for the next one (they are never cleared unwritten). A caller
        cancelled mid-flush (the feed task at shutdown) does not cut the transaction short:
        it finishes, shielded, and the next flush finds no transaction open.

        Returns only when every row added before the call is committed: rows another task's
        flush has taken but not committed yet are waited for (the order router's write-ahead
        depends on it: an intent must be on disk before the broker hears of it)."""
        if not any(self.pending.values()) and not self._lock.locked():
            return 0
        return await asyncio.shield(self._flush())

    async def _flush(self) -> int:
        async with self._lock:
            batch = {k: v for k, v in self.pending.items() if v}
            n = sum(len(v) for v in batch.values())
            if n == 0:
                return 0
            for k in batch:
                self.pending[k] = []
            self.queued, self.urgent = 0, False
            await self.db.execute("BEGIN")
            try:
                for table, rows in batch.items():
                    await self.db.executemany(_INSERT[table], rows)
                await self.db.execute("COMMIT")
            except BaseException:
                await self.db.execute("ROLLBACK")
                for k, rows in batch.items():  # kept, in order, for the next attempt
                    self.pending[k] = rows + self.pending[k]
                self.queued, self.urgent = sum(map(len, self.pending.values())), True
                raise
            self.committed_rows += n
            return n

    # -- live-broker state (read at start-up) ---------------------------------------------
    async def _rows(self, sql: str, args: tuple = ()) -> list[tuple]:
        return [tuple(r) for r in await (await self.db.execute(sql, args)).fetchall()]

    async def open_orders(self, instrument: str) -> list[tuple]:
        """(client_order_id, bar_ts_ns, units, state) of journal orders whose outcome is unknown."""
        marks = ",".join("?" * len(OPEN_ORDER_STATES))
        return await self._rows(
            f"SELECT client_order_id, bar_ts_ns, units, state FROM order_journal "
            f"WHERE instrument = ? AND state IN ({marks}) ORDER BY created_ns",
            (instrument, *OPEN_ORDER_STATES),
        )

    async def last_order_seq(self, instrument: str) -> tuple[int, int] | None:
        """(bar_ts_ns, seq) of the newest journal order, so client ids are never reused."""
        rows = await self._rows(
            "SELECT bar_ts_ns, MAX(seq) FROM order_journal WHERE instrument = ? "
            "GROUP BY bar_ts_ns ORDER BY bar_ts_ns DESC LIMIT 1",
            (instrument,),
        )
        return (int(rows[0][0]), int(rows[0][1])) if rows else None

    async def armed_stop(self, instrument: str, entry_price: float, long: bool) -> float:
        """The stop price journaled with the order whose fill opened a trade at ``entry_price``
        (OANDA: one trade per fill); failing that, the newest stop an order in that direction
        armed. 0 when none is known."""
        side = "> 0" if long else "< 0"
        rows = await self._rows(
            "SELECT j.stop_price FROM broker_fills f JOIN order_journal j ON j.client_order_id = f.client_order_id "
            f"WHERE f.instrument = ? AND ABS(f.price - ?) < 1e-9 AND j.stop_price > 0 AND f.units {side} "
            "ORDER BY f.ts_ns DESC LIMIT 1",
            (instrument, entry_price),
        )
        if not rows:
            rows = await self._rows(
                f"SELECT stop_price FROM order_journal WHERE instrument = ? AND stop_price > 0 AND filled_units {side} "
                "ORDER BY created_ns DESC LIMIT 1",
                (instrument,),
            )
        return float(rows[0][0]) if rows else 0.0

    async def book(self, instrument: str) -> tuple[float, float, float] | None:
        rows = await self._rows("SELECT units, avg_price, realized FROM book WHERE instrument = ?", (instrument,))
        return tuple(rows[0]) if rows else None

    async def cursor(self, broker: str) -> str | None:
        rows = await self._rows("SELECT cursor FROM broker_cursor WHERE broker = ?", (broker,))
        return rows[0][0] if rows else None

    async def recent_fill_ids(self, limit: int) -> list[str]:
        return [
            r[0]
            for r in await self._rows("SELECT broker_fill_id FROM broker_fills ORDER BY ts_ns DESC LIMIT ?", (limit,))
        ]

    async def recent_bars(self, instrument: str, since_ns: int, before_ns: int, mode_prefix: str) -> np.ndarray:
        """The bars this store holds for ``instrument`` in [since, before), from runs whose mode
        starts with ``mode_prefix`` (a replay never warms a live run, nor the reverse), one per
        bar time (the newest run's where runs overlap), in time order, as BAR_DTYPE."""
        rows = await self._rows(
            "SELECT b.ts_ns, b.open, b.high, b.low, b.close, b.ticks FROM bars b JOIN runs r USING (run_id) "
            "WHERE b.instrument = ? AND b.ts_ns >= ? AND b.ts_ns < ? AND r.mode LIKE ? "
            "ORDER BY b.ts_ns, r.started_ns",
            (instrument, since_ns, before_ns, mode_prefix.replace("%", "") + "%"),
        )
        out = np.array(rows, dtype=BAR_DTYPE) if rows else np.empty(0, dtype=BAR_DTYPE)
        if len(out) > 1:  # the newest run's row of each bar time: the last of each equal run
            keep = np.append(out["ts_ns"][1:] != out["ts_ns"][:-1], True)
            out = out[keep]
        return out

    async def close(self) -> None:
        """Flush, then always close the connection (its worker thread would otherwise keep
        the process from exiting)."""
        try:
            await self.flush()
        finally:
            await self.db.close()
