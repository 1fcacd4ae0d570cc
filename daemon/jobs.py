"""In-process periodic jobs (APScheduler): reconciliation, nightly online backup of the
SQLite database (backup API, then PRAGMA integrity_check on the copy; 7 kept), tick-file
retention."""

from __future__ import annotations

import structlog

from stairway.core.sqlite_backup import backup_database  # noqa: F401  (the nightly job's; the trainer's too)

log = structlog.get_logger("jobs")


def make_scheduler(jobs: dict, reconcile_secs: float, backup_hour_utc: int):
    """``jobs`` maps 'backup', 'retention' and (paper only) 'reconcile' to coroutine functions."""
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    sched = AsyncIOScheduler(timezone="UTC")
    if "reconcile" in jobs:
        sched.add_job(
            jobs["reconcile"], "interval", seconds=reconcile_secs, id="reconcile", max_instances=1, coalesce=True
        )
    sched.add_job(jobs["backup"], "cron", hour=backup_hour_utc, minute=30, id="backup", max_instances=1, coalesce=True)
    sched.add_job(
        jobs["retention"], "cron", hour=backup_hour_utc, minute=45, id="retention", max_instances=1, coalesce=True
    )
    return sched
