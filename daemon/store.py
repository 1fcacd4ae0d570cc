"""The daemon's SQLite store (aiosqlite): WAL, synchronous=FULL, versioned schema.

Rows are buffered in memory and written in one transaction by ``flush``; the caller decides
when (the replay loop after every batch; a real broker before every order is sent). Nothing
is reported as done before the transaction that holds it has committed. Bar-level rows only,
never one row per tick.
"""

from __future__ import annotations

import json
from pathlib import Path

import aiosqlite

from core.errors import FatalError

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
)
SCHEMA_VERSION = len(MIGRATIONS)

_INSERT = {
    "bars": "INSERT INTO bars VALUES (?,?,?,?,?,?,?,?)",
    "decisions": "INSERT INTO decisions VALUES (?,?,?,?,?,?,?,?,?,?)",
    "orders": "INSERT INTO orders VALUES (?,?,?,?,?,?,?,?) ON CONFLICT (run_id, client_order_id) DO UPDATE SET "
              "filled_units = excluded.filled_units, status = excluded.status",
    "fills": "INSERT INTO fills VALUES (?,?,?,?,?,?,?,?)",
    "positions": "INSERT INTO positions VALUES (?,?,?,?,?,?,?)",
    "events": "INSERT INTO events (run_id, ts_ns, kind, detail_json) VALUES (?,?,?,?)",
    "session_metrics": "INSERT INTO session_metrics VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
    "risk_events": "INSERT INTO risk_events (run_id, ts_ns, instrument, kind, detail, requested_units, allowed_units) "
                   "VALUES (?,?,?,?,?,?,?)",
    "model_swaps": "INSERT INTO model_swaps (run_id, ts_ns, old_sha, new_sha, outcome, reason) VALUES (?,?,?,?,?,?)",
}


class Store:
    def __init__(self, db: aiosqlite.Connection, path: Path) -> None:
        self.db, self.path = db, path
        self.pending: dict[str, list[tuple]] = {k: [] for k in _INSERT}
        self.committed_rows = 0

    @classmethod
    async def open(cls, path: str | Path) -> "Store":
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(path, isolation_level=None)
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=FULL")
        await db.execute("PRAGMA foreign_keys=ON")
        store = cls(db, path)
        await store._migrate()
        return store

    async def _migrate(self) -> None:
        (version,) = await (await self.db.execute("PRAGMA user_version")).fetchone()
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

    def add(self, table: str, row: tuple) -> None:
        self.pending[table].append(row)

    def event(self, run_id: str, ts_ns: int, kind: str, **detail) -> None:
        self.pending["events"].append((run_id, ts_ns, kind, json.dumps(detail, default=str)))

    async def start_run(self, run_id: str, started_ns: int, mode: str, model_sha: str, config_json: str) -> None:
        await self.db.execute("INSERT INTO runs (run_id, started_ns, mode, model_sha, config_json) VALUES (?,?,?,?,?)",
                              (run_id, started_ns, mode, model_sha, config_json))

    async def end_run(self, run_id: str, ended_ns: int, summary: dict) -> None:
        await self.flush()
        await self.db.execute("UPDATE runs SET ended_ns = ?, summary_json = ? WHERE run_id = ?",
                              (ended_ns, json.dumps(summary, default=float), run_id))

    async def flush(self) -> int:
        """Write every buffered row in one transaction; returns the number of rows committed."""
        n = sum(len(v) for v in self.pending.values())
        if n == 0:
            return 0
        await self.db.execute("BEGIN")
        try:
            for table, rows in self.pending.items():
                if rows:
                    await self.db.executemany(_INSERT[table], rows)
            await self.db.execute("COMMIT")
        except BaseException:
            await self.db.execute("ROLLBACK")
            raise
        for rows in self.pending.values():
            rows.clear()
        self.committed_rows += n
        return n

    async def close(self) -> None:
        await self.flush()
        await self.db.close()
