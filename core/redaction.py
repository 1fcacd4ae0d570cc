"""Secrets never leave the process: every registered secret (API token, account id) is
replaced by ``***`` in log events, health reasons and error lines.

Adapters register what they are given (``register_secret``); ``redact`` is applied where text
leaves the process: the structlog pipeline, /health and /status, the CLI's error line.
Redaction at the source (messages built without the secret) comes first; this is the net
under it.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

MASK = "***"
_SECRETS: set[str] = set()


def register_secret(value: str | None) -> None:
    """Remember a secret; short values (< 4 characters) would mask ordinary text and are skipped."""
    if value and len(value) >= 4:
        _SECRETS.add(value)


def redact(text: str) -> str:
    for s in sorted(_SECRETS, key=len, reverse=True):
        if s in text:
            text = text.replace(s, MASK)
    return text


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_scrub(v) for v in value)
    if isinstance(value, BaseException):
        return redact(repr(value))
    return value


def redact_processor(logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: scrub every value of the event (after exceptions were formatted)."""
    return {k: _scrub(v) for k, v in event_dict.items()} if _SECRETS else event_dict
