"""structlog set-up: JSON lines in production (stdout, for journald), console on a TTY."""

from __future__ import annotations

import datetime as dt
import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

from stairway.core.redaction import redact_processor


def replay_time(logger: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """A replay's events carry the replayed quotes' time (UTC ISO 8601) beside the wall clock's:
    ``replay_clock`` (bound once per replay) is the feed, whose ``replay_ts_ns`` it reads."""
    clock = event.pop("replay_clock", None)
    ns = getattr(clock, "replay_ts_ns", None)
    if ns:
        event["replay_time"] = dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).isoformat(timespec="seconds")
    return event


def configure_logging(json: bool | None = None, level: str = "info", stream: TextIO | None = None) -> None:
    """``stream=None`` writes to whatever ``sys.stdout`` is when a line is logged."""
    if json is None:
        json = not (stream or sys.stdout).isatty()
    renderer = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            replay_time,
            structlog.processors.format_exc_info,
            redact_processor,  # no token or account id ever reaches a log line
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
