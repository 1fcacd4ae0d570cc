"""Alerts: what an operator must hear of, delivered through apprise (e-mail, Slack, Telegram,
ntfy, PagerDuty, webhooks: any apprise URL; ``json://host/path`` posts JSON).

``notify`` is called on the event loop and never blocks. Two priorities:

- **critical** (``CRITICAL_KINDS``: a halt, the flatten tier, a flatten, a rollback, a refused
  or fallback model, a reconciliation discrepancy, an over-fill, an emergency correction, the
  broker disconnected for longer than ``alerts.disconnect_alert_secs``, a failed backup, a
  failed SIGHUP reload, and each one's "resolved"): never deduplicated, never rate-limited,
  queued ahead of everything else, and not counted against the rate limit of the others;
- **normal** (everything else): deduplicated (one per key within ``min_interval_secs``),
  rate-limited (at most ``max_per_minute`` accepted in any 60 s) and queued.

Conditions that come and go (a /health reason, the drawdown tier) go through ``Conditions``:
one is alerted once it has held for its hold time (a flapping tier or a broker that connects at
start-up sends nothing), and an alerted one that clears sends a "resolved" message.

One worker thread delivers, with a time limit per message. A failed delivery is logged and
counted, never raised: alerts must not stop trading. What is deduplicated, limited, dropped
(queue full), sent or failed is counted (``stats``, on /metrics).
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

log = structlog.get_logger("alerts")

LEVELS = ("info", "warning", "failure")
# never deduplicated or rate-limited away (a kind, or a kind's prefix ending in "_")
CRITICAL_KINDS = (
    "halted",
    "tier_flatten",
    "flatten",
    "flatten_tier_rollback",
    "live_guard",
    "live_sharpe_breach",
    "model_refused",
    "model_fallback",
    "overfill",
    "reconcile_",
    "emergency_",
    "broker_disconnected",
    "backup_failed",
    "reload_failed",
)
CRITICAL, NORMAL, STOP = 0, 1, 2  # queue priorities: lower first


def is_critical(kind: str) -> bool:
    base = kind.removesuffix("_resolved")
    return any(base == k or (k.endswith("_") and base.startswith(k)) for k in CRITICAL_KINDS)


@dataclass
class AlertStats:
    accepted: int = 0
    sent: int = 0
    failed: int = 0
    deduplicated: int = 0
    rate_limited: int = 0
    dropped: int = 0  # the queue was full
    critical: int = 0  # accepted past deduplication and the rate limit


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
        # (priority, sequence, item): critical alerts first, then normal ones, in order; the stop
        # marker last. Each priority is bounded on its own (a critical storm cannot starve memory).
        self._queue: queue.PriorityQueue[tuple[int, int, tuple[str, str, str, float] | None]] = queue.PriorityQueue()
        self._queue_size = queue_size
        self._queued = [0, 0]  # by priority (critical, normal); changed under _lock
        self._lock = threading.Lock()
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self.latencies: deque[float] = deque(maxlen=10_000)  # seconds, notify -> delivered

    @property
    def enabled(self) -> bool:
        return bool(self.urls)

    # -- on the event loop ------------------------------------------------------------------
    def notify(
        self, kind: str, message: str, key: str | None = None, level: str = "warning", critical: bool | None = None
    ) -> bool:
        """Queue an alert; True when queued. A critical one (``critical``, default: its kind is
        in CRITICAL_KINDS) always is, unless its own bounded queue is full; a normal one not
        when it repeats ``key`` (default: ``kind``) too soon or the rate limit is reached.
        Never blocks, never raises."""
        if not self.enabled:
            return False
        crit = is_critical(kind) if critical is None else critical
        level = level if level in LEVELS else "warning"
        now = self.clock()
        if crit:
            if not self._put(CRITICAL, (kind, message, level, time.perf_counter()), 10 * self._queue_size):
                return False
            self.stats.critical += 1
            self.stats.accepted += 1
            return True
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
        if not self._put(NORMAL, (kind, message, level, time.perf_counter()), self._queue_size):
            return False
        self._last[k] = now
        self._accepted.append(now)
        self.stats.accepted += 1
        return True

    def _put(self, priority: int, item: tuple[str, str, str, float], limit: int) -> bool:
        with self._lock:
            if self._queued[priority] >= limit:
                self.stats.dropped += 1
                return False
            self._queued[priority] += 1
        self._queue.put_nowait((priority, next(self._seq), item))
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
        self._queue.put_nowait((STOP, next(self._seq), None))  # after everything queued
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
            priority, _, item = self._queue.get()
            if item is None:
                return
            with self._lock:
                self._queued[priority] -= 1
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


@dataclass
class _Held:
    kind: str
    message: str
    since: float
    alerted: bool = False  # this kind was alerted
    any_alerted: bool = False  # some kind under this key was: its clearing is "resolved"


@dataclass
class Conditions:
    """Conditions that come and go, by key (a /health reason, the drawdown tier). ``update`` is
    given the ones active now as key -> (kind, message): a condition is alerted once its kind
    has held ``hold_secs(kind)`` seconds (0: at once); a key whose kind changes (warn -> halve
    size) starts the new kind's hold; a key that clears after something under it was alerted
    sends "<kind>_resolved" (critical when the kind was)."""

    alerter: Alerter
    hold_secs: Callable[[str], float]
    clock: Callable[[], float] = time.monotonic
    held: dict[str, _Held] = field(default_factory=dict)

    def update(self, active: dict[str, tuple[str, str]]) -> None:
        now = self.clock()
        for key in [k for k in self.held if k not in active]:
            h = self.held.pop(key)
            if h.any_alerted:
                self.alerter.notify(f"{h.kind}_resolved", f"resolved: {h.message}", key=f"{key}:resolved", level="info")
        for key, (kind, message) in active.items():
            if key not in self.held:
                self.held[key] = _Held(kind, message, now)
            h = self.held[key]
            if h.kind != kind:
                h.kind, h.since, h.alerted = kind, now, False
            h.message = message
            if not h.alerted and now - h.since >= self.hold_secs(kind):
                h.alerted = h.any_alerted = True
                level = "failure" if is_critical(kind) else "warning"
                self.alerter.notify(kind, message, key=key, level=level)


def hold_secs(cfg, kind: str) -> float:
    """How long a condition of ``kind`` must hold before it is alerted (``cfg``: [alerts])."""
    if kind == "broker_disconnected":
        return float(cfg.disconnect_alert_secs)
    return 0.0 if is_critical(kind) else float(cfg.hold_secs)


def health_conditions(reasons: list[str]) -> dict[str, tuple[str, str]]:
    """/health reasons as conditions: key by the reason's head (before its first ':'), kind
    ``broker_disconnected``, ``halted`` or ``health``."""
    out: dict[str, tuple[str, str]] = {}
    for r in reasons:
        head = r.split(":")[0][:80]
        kind = "broker_disconnected" if head == "broker disconnected" else "halted" if head == "halted" else "health"
        out["health:" + head] = (kind, r)
    return out


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
