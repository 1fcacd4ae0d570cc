"""gate.db: the trainer's registry of checkpoints, cycle metrics and drift checks.

SQLite, WAL, synchronous=FULL, schema versioned with PRAGMA user_version. The daemon reads
it (read-only) to check that a checkpoint passed its gates or was promoted on purpose.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from stairway.core.errors import FatalError

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE model_registry (
        sha TEXT PRIMARY KEY, created_ns INTEGER NOT NULL, policy_kind TEXT NOT NULL,
        feature_spec_hash TEXT NOT NULL, parent TEXT, data_range TEXT, steps INTEGER,
        run_id TEXT, cycle INTEGER,
        status TEXT NOT NULL CHECK (status IN ('candidate', 'passed', 'failed')),
        gate_json TEXT, forced_reason TEXT);
    CREATE TABLE cycle_metrics (
        run_id TEXT NOT NULL, cycle INTEGER NOT NULL, sha TEXT NOT NULL, global_step INTEGER NOT NULL,
        target_hold_rate REAL, sharpe REAL, sortino REAL, pnl_pct REAL, max_drawdown_pct REAL,
        trades INTEGER, hold_rate REAL, improved INTEGER, created_ns INTEGER NOT NULL,
        PRIMARY KEY (run_id, cycle));
    CREATE TABLE parameter_drift_log (
        id INTEGER PRIMARY KEY, ts_ns INTEGER NOT NULL, sha TEXT NOT NULL, gold_sha TEXT,
        rel_l2 REAL, threshold REAL NOT NULL, gate_passed INTEGER NOT NULL, action TEXT NOT NULL);
    CREATE TABLE operator_actions (
        id INTEGER PRIMARY KEY, ts_ns INTEGER NOT NULL, action TEXT NOT NULL, sha TEXT, reason TEXT);
    CREATE TABLE training_runs (
        run_id TEXT PRIMARY KEY, started_ns INTEGER NOT NULL, ended_ns INTEGER, outcome TEXT,
        sha TEXT, report TEXT);
    """,
    """
    ALTER TABLE operator_actions ADD COLUMN completed INTEGER NOT NULL DEFAULT 1;
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


class GateDB:
    def __init__(self, path: str | Path, readonly: bool = False) -> None:
        self.path = Path(path)
        try:
            self._open(readonly)
        except sqlite3.DatabaseError as e:  # not a database, truncated, locked, ...
            db = getattr(self, "db", None)
            if db is not None:
                db.close()
            raise FatalError(
                f"{self.path}: not a usable gate database ({e}); move it aside or restore a backup"
            ) from None

    def _open(self, readonly: bool) -> None:
        if self.path.is_dir():
            raise FatalError(f"{self.path}: is a directory, not a gate database")
        if readonly:
            self.db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, isolation_level=None)
        else:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.db = sqlite3.connect(self.path, isolation_level=None)
                self.db.execute("PRAGMA journal_mode=WAL")
            except (OSError, sqlite3.OperationalError) as e:
                raise FatalError(f"{self.path}: cannot open gate database for writing: {e}") from None
            self.db.execute("PRAGMA synchronous=FULL")
        self._migrate(readonly)

    def _migrate(self, readonly: bool) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise FatalError(
                f"{self.path}: gate database schema v{version} is newer than this Stairway "
                f"(v{SCHEMA_VERSION}); upgrade Stairway before training"
            )
        if readonly or version == SCHEMA_VERSION:
            return
        for v in range(version, SCHEMA_VERSION):
            with self.tx():
                for stmt in filter(str.strip, MIGRATIONS[v].split(";")):
                    self.db.execute(stmt)
                self.db.execute(f"PRAGMA user_version = {v + 1}")

    def tx(self):
        db = self.db

        class _Tx:
            def __enter__(self):
                db.execute("BEGIN IMMEDIATE")

            def __exit__(self, exc_type, exc, tb):
                db.execute("ROLLBACK" if exc_type else "COMMIT")
                return False

        return _Tx()

    # -- writes ---------------------------------------------------------------------------
    def add_model(self, sha: str, meta, steps: int, run_id: str, cycle: int | None) -> None:
        with self.tx():
            self.db.execute(
                "INSERT OR IGNORE INTO model_registry (sha, created_ns, policy_kind, feature_spec_hash, parent, "
                "data_range, steps, run_id, cycle, status) VALUES (?,?,?,?,?,?,?,?,?, 'candidate')",
                (
                    sha,
                    time.time_ns(),
                    meta.policy_kind,
                    meta.feature_spec_hash,
                    meta.parent,
                    meta.data_range,
                    steps,
                    run_id,
                    cycle,
                ),
            )

    def set_verdict(self, sha: str, passed: bool, gate: dict) -> None:
        with self.tx():
            n = self.db.execute(
                "UPDATE model_registry SET status = ?, gate_json = ? WHERE sha = ?",
                ("passed" if passed else "failed", json.dumps(gate, default=float), sha),
            ).rowcount
            if n != 1:
                raise FatalError(f"{self.path}: no registry row for {sha[:12]}")

    def add_cycle(
        self, run_id: str, cycle: int, sha: str, global_step: int, target: float, m: dict, improved: bool
    ) -> None:
        with self.tx():
            self.db.execute(
                "INSERT INTO cycle_metrics VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    run_id,
                    cycle,
                    sha,
                    global_step,
                    target,
                    m["sharpe"],
                    m["sortino"],
                    m["pnl_pct"],
                    m["max_drawdown_pct"],
                    m["trades"],
                    m["hold_rate"],
                    int(improved),
                    time.time_ns(),
                ),
            )

    def log_drift(
        self, sha: str, gold_sha: str | None, rel_l2: float | None, threshold: float, gate_passed: bool, action: str
    ) -> None:
        with self.tx():
            self.db.execute(
                "INSERT INTO parameter_drift_log (ts_ns, sha, gold_sha, rel_l2, threshold, gate_passed, "
                "action) VALUES (?,?,?,?,?,?,?)",
                (time.time_ns(), sha, gold_sha, rel_l2, threshold, int(gate_passed), action),
            )

    def operator_action(self, action: str, sha: str | None, reason: str | None, completed: bool = True) -> int:
        """Record an operator action; ``completed=False`` for one whose effect (a link switch)
        follows, marked done by ``complete_action`` (a kill in between leaves it incomplete)."""
        with self.tx():
            cur = self.db.execute(
                "INSERT INTO operator_actions (ts_ns, action, sha, reason, completed) VALUES (?,?,?,?,?)",
                (time.time_ns(), action, sha, reason, int(completed)),
            )
            if action in ("promote_forced", "set_gold_forced") and sha:
                self.db.execute("UPDATE model_registry SET forced_reason = ? WHERE sha = ?", (reason, sha))
            assert cur.lastrowid is not None  # an INSERT sets it
            return int(cur.lastrowid)

    def complete_action(self, action_id: int) -> None:
        with self.tx():
            self.db.execute("UPDATE operator_actions SET completed = 1 WHERE id = ?", (action_id,))

    def incomplete_actions(self) -> list[dict]:
        cur = self.db.execute(
            "SELECT id, ts_ns, action, sha, reason FROM operator_actions WHERE completed = 0 ORDER BY id"
        )
        names = [c[0] for c in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]

    def start_run(self, run_id: str) -> list[str]:
        """Record a training run; earlier runs that never recorded an end (killed) are marked
        crashed. Returns their ids."""
        with self.tx():
            crashed = [
                r[0]
                for r in self.db.execute("SELECT run_id FROM training_runs WHERE ended_ns IS NULL AND outcome IS NULL")
            ]
            self.db.execute(
                "UPDATE training_runs SET outcome = 'crashed: no end recorded' WHERE ended_ns IS NULL "
                "AND outcome IS NULL"
            )
            self.db.execute("INSERT INTO training_runs (run_id, started_ns) VALUES (?,?)", (run_id, time.time_ns()))
        return crashed

    def end_run(self, run_id: str, outcome: str, sha: str | None, report: str | None) -> None:
        with self.tx():
            self.db.execute(
                "UPDATE training_runs SET ended_ns = ?, outcome = ?, sha = ?, report = ? WHERE run_id = ?",
                (time.time_ns(), outcome, sha, report, run_id),
            )

    # -- reads ----------------------------------------------------------------------------
    def model(self, sha: str) -> dict | None:
        cur = self.db.execute("SELECT * FROM model_registry WHERE sha = ?", (sha,))
        row = cur.fetchone()
        return None if row is None else dict(zip([c[0] for c in cur.description], row))

    def resolve(self, prefix: str) -> str:
        """Full sha for a unique prefix (at least 6 characters)."""
        if len(prefix) < 6:
            raise FatalError(f"sha prefix {prefix!r} is too short (6 characters at least)")
        rows = self.db.execute("SELECT sha FROM model_registry WHERE sha LIKE ?", (prefix + "%",)).fetchall()
        if len(rows) != 1:
            raise FatalError(f"sha prefix {prefix!r} matches {len(rows)} models in {self.path}")
        return rows[0][0]

    def models(self) -> list[dict]:
        cur = self.db.execute(
            "SELECT sha, created_ns, status, steps, run_id, cycle, forced_reason, data_range "
            "FROM model_registry ORDER BY created_ns"
        )
        names = [c[0] for c in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]

    def is_publishable(self, sha: str) -> bool:
        """Passed its gates, or was promoted on purpose with a recorded reason."""
        m = self.model(sha)
        return m is not None and (m["status"] == "passed" or bool(m["forced_reason"]))

    def close(self) -> None:
        self.db.close()
