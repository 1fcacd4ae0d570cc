"""Alerts: what an operator must hear of, delivered through apprise (e-mail, Slack, Telegram,
ntfy, PagerDuty, webhooks: any apprise URL; ``json://host/path`` posts JSON).

``notify`` is called on the event loop and never blocks: it deduplicates (one alert per key
within ``min_interval_secs``: a flapping feed does not flood), rate-limits (at most
``max_per_minute`` accepted in any 60 s), and queues. One worker thread delivers, with a
time limit per message. A failed delivery is logged and counted, never raised: alerts must
not stop trading. What is deduplicated, limited, dropped (queue full), sent or failed is
counted (``stats``, on /metrics).

Alerted: daemon start and stop, risk tier changes, halts, flatten, over-fills, the trade band
breached for N sessions, reconciliation discrepancies, refused checkpoints, a model fallback
at start-up, a failed backup, and every /health reason as it appears (stale or disconnected
feed, model age, not reconciled, unknown orders, unsafe control directory, database errors).
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import structlog

log = structlog.get_logger("alerts")

LEVELS = ("info", "warning", "failure")


@dataclass
class AlertStats:
    accepted: int = 0
    sent: int = 0
    failed: int = 0
    deduplicated: int = 0
    rate_limited: int = 0
    dropped: int = 0  # the queue was full


class Alerter:
    def __init__(
        self,
        urls: list[str],
        min_interval_secs: float = 300.0,
        max_per_minute: int = 10,
        queue_size: int = 1000,
        timeout_secs: float = 10.0,
        prefix: str = "stairway",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.urls = list(urls)
        self.min_interval, self.max_per_minute, self.timeout = min_interval_secs, max_per_minute, timeout_secs
        self.prefix, self.clock = prefix, clock
        self.stats = AlertStats()
        self._last: dict[str, float] = {}  # key -> when last accepted (bounded: keys are kinds x instruments)
        self._accepted: deque[float] = deque()
        self._queue: queue.Queue[tuple[str, str, str, float] | None] = queue.Queue(maxsize=queue_size)
        self._thread: threading.Thread | None = None
        self.latencies: deque[float] = deque(maxlen=10_000)  # seconds, notify -> delivered

    @property
    def enabled(self) -> bool:
        return bool(self.urls)

    # -- on the event loop ------------------------------------------------------------------
    def notify(self, kind: str, message: str, key: str | None = None, level: str = "warning") -> bool:
        """Queue an alert unless it repeats ``key`` (default: ``kind``) too soon or the rate
        limit is reached; True when queued. Never blocks, never raises."""
        if not self.enabled:
            return False
        now = self.clock()
        k = key or kind
        last = self._last.get(k)
        if last is not None and now - last < self.min_interval:
            self.stats.deduplicated += 1
            return False
        while self._accepted and now - self._accepted[0] >= 60.0:
            self._accepted.popleft()
        if len(self._accepted) >= self.max_per_minute:
            self.stats.rate_limited += 1
            return False
        try:
            self._queue.put_nowait((kind, message, level if level in LEVELS else "warning", time.perf_counter()))
        except queue.Full:
            self.stats.dropped += 1
            return False
        self._last[k] = now
        self._accepted.append(now)
        self.stats.accepted += 1
        return True

    # -- the worker thread ------------------------------------------------------------------
    def start(self) -> None:
        if self.enabled and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="alerts", daemon=True)
            self._thread.start()

    def stop(self, timeout: float) -> bool:
        """Deliver what is queued (up to ``timeout`` seconds), then end; False if it did not."""
        if self._thread is None:
            return True
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            return False
        self._thread.join(timeout)
        done = not self._thread.is_alive()
        self._thread = None
        return done

    def _run(self) -> None:
        import apprise

        ap = apprise.Apprise()
        for url in self.urls:
            if not ap.add(url):
                log.error("alert_url_refused", url=_safe(url))
        types = {"info": apprise.NotifyType.INFO, "warning": apprise.NotifyType.WARNING}
        while True:
            item = self._queue.get()
            if item is None:
                return
            kind, message, level, t0 = item
            try:
                ok = bool(
                    ap.notify(
                        body=message,
                        title=f"{self.prefix}: {kind}",
                        notify_type=types.get(level, apprise.NotifyType.FAILURE),
                        timeout=self.timeout,
                    )
                )
            except Exception as e:  # a plugin's own error: counted like a refusal
                ok = False
                log.error("alert_delivery_error", kind=kind, error=repr(e))
            if ok:
                self.stats.sent += 1
                self.latencies.append(time.perf_counter() - t0)
            else:
                self.stats.failed += 1
                log.error("alert_not_delivered", kind=kind, message=message)


def alert_urls(cfg, environ: dict[str, str] | None = None) -> list[str]:
    """The config's URLs (``STAIRWAY_ALERTS__URLS='["..."]'`` overrides them like any key),
    then the credential file's (one per line); every one registered as a secret (a token in
    a URL never reaches a log line)."""
    import os
    from pathlib import Path

    from stairway.core.errors import ConfigError
    from stairway.core.redaction import register_secret

    env = os.environ if environ is None else environ
    urls = list(cfg.urls)
    cred_dir = env.get("CREDENTIALS_DIRECTORY")
    if cred_dir and (Path(cred_dir) / cfg.urls_credential).is_file():
        urls += [u.strip() for u in (Path(cred_dir) / cfg.urls_credential).read_text().splitlines() if u.strip()]
    bad = [_safe(u) if "://" in u else "(a value without scheme://)" for u in urls if "://" not in u]
    if bad:
        raise ConfigError(f"alerts: {len(bad)} alert URL(s) are not URLs (apprise form scheme://...)")
    for u in urls:
        register_secret(u)
    return urls


def _safe(url: str) -> str:
    """The scheme and host of an alert URL (its path or user part may hold a token)."""
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0].rsplit("@", 1)[-1]
    return f"{scheme}://{host}/..."
