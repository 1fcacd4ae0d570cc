"""Online SQLite backups, verified: the daemon's database nightly (daemon.jobs) and the
trainer's gate database at every training run (trainer.cycles)."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import structlog

from stairway.core.errors import FatalError

log = structlog.get_logger("backup")


def backup_database(db_path: Path, backup_dir: Path, keep: int = 7, now: dt.datetime | None = None) -> Path:
    """Online backup with SQLite's backup API (consistent while the daemon writes), verified
    with integrity_check; keeps the newest ``keep`` backups. Runs in a worker thread."""
    now = now or dt.datetime.now(dt.UTC)
    backup_dir.mkdir(parents=True, exist_ok=True)
    final = backup_dir / f"{db_path.stem}-{now:%Y%m%dT%H%M%S}.db"
    tmp = final.with_suffix(".db.tmp")
    src = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    dst = sqlite3.connect(tmp)
    try:
        src.backup(dst)
        result = dst.execute("PRAGMA integrity_check").fetchone()[0]
    except sqlite3.Error as e:  # not a database, or unreadable: say which file, in one line
        result = f"cannot back up {db_path}: {e}"
    finally:
        dst.close()
        src.close()
    if result != "ok":
        tmp.unlink(missing_ok=True)
        raise FatalError(f"{final}: backup failed integrity_check: {result}")
    tmp.replace(final)
    # the one just written is always kept (a clock set back names it before older ones); of
    # the others, the last ``keep - 1`` in name order
    others = sorted(b for b in backup_dir.glob(f"{db_path.stem}-*.db") if b != final)
    for old in others[: max(0, len(others) - (keep - 1))]:
        old.unlink()
    log.info("database_backed_up", path=str(final), kept=min(len(others) + 1, keep))
    return final
