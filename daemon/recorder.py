"""Tick recorder: every quote to state/ticks/<instrument>/<YYYY-MM-DD>.csv.gz via core's
TickFileWriter, on a writer thread behind a bounded queue. The event loop only enqueues;
when the queue is full the batch is dropped and counted (trading never stalls). Files are
flushed as complete gzip members at least every ``flush_secs``; days older than
``retention_days`` are deleted by ``prune``.
"""

from __future__ import annotations

import datetime as dt
import queue
import threading
import time
from pathlib import Path

import numpy as np
import structlog

from stairway.core.tick_files import TickFileWriter, day_path, recorded_days

log = structlog.get_logger("recorder")
_STOP = object()


class TickRecorder:
    def __init__(
        self,
        root: str | Path,
        instrument: str,
        flush_secs: float = 2.0,
        queue_batches: int = 4096,
        retention_days: int = 30,
        fsync: bool = True,
        max_queued_ticks: int = 2_000_000,
    ) -> None:
        self.root, self.instrument = Path(root), instrument
        self.flush_secs, self.retention_days = flush_secs, retention_days
        self.writer = TickFileWriter(self.root, instrument, fsync=fsync)
        self.q: queue.Queue = queue.Queue(maxsize=queue_batches)
        self.max_queued_ticks = max_queued_ticks  # bounds memory whatever the batch size
        self.queued_ticks = 0
        self._lock = threading.Lock()
        self.dropped_ticks = 0
        self.recorded_ticks = 0
        self.errors = 0
        self.failing = ""  # the cause while writes fail (a /health reason), "" once one succeeds
        self._causes: set[str] = set()  # causes logged: each once
        self._dropping = False
        self._thread = threading.Thread(target=self._run, name=f"tick-recorder-{instrument}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def enqueue(self, ticks: np.ndarray) -> bool:
        try:
            if self.queued_ticks + len(ticks) > self.max_queued_ticks:
                raise queue.Full
            self.q.put_nowait(ticks)
            with self._lock:
                self.queued_ticks += len(ticks)
            return True
        except queue.Full:
            self.dropped_ticks += len(ticks)
            if not self._dropping:  # once per episode, not once per quote
                self._dropping = True
                log.warning("ticks_dropped", instrument=self.instrument, dropped_total=self.dropped_ticks)
            return False
        finally:
            if self._dropping and self.queued_ticks < self.max_queued_ticks // 2 and not self.q.full():
                self._dropping = False
                log.warning("ticks_recording_resumed", instrument=self.instrument, dropped_total=self.dropped_ticks)

    def _run(self) -> None:
        last_flush = time.monotonic()
        while True:
            try:
                item = self.q.get(timeout=self.flush_secs / 2)
            except queue.Empty:
                item = None
            if item is _STOP:
                break
            if item is not None:
                before = self.writer.written
                pending = self.writer.pending
                try:
                    self.writer.write(item)  # flushes by itself past max_pending ticks
                except Exception as e:  # noqa: BLE001 - the recorder never dies: counted, logged once per cause
                    self._failed(e, pending + len(item))
                else:
                    self._succeeded(self.writer.written - before)
                with self._lock:
                    self.queued_ticks -= len(item)
            if time.monotonic() - last_flush >= self.flush_secs:
                self._flush()
                last_flush = time.monotonic()
        self._flush()

    def _flush(self) -> None:
        pending = self.writer.pending
        try:
            n = self.writer.flush()
        except Exception as e:  # noqa: BLE001 - as in _run
            self._failed(e, pending)
        else:
            self._succeeded(n)

    def _failed(self, e: Exception, lost: int) -> None:
        """A write failed: its ticks are lost (counted as dropped); the cause is logged the first
        time it is seen and stays a /health reason until a write succeeds."""
        self.errors += 1
        self.dropped_ticks += lost
        cause = f"{type(e).__name__}: {getattr(e, 'strerror', None) or e}"
        self.failing = cause
        if cause not in self._causes and len(self._causes) < 100:
            self._causes.add(cause)
            log.error("recorder_write_failed", instrument=self.instrument, error=cause, errors=self.errors)

    def _succeeded(self, ticks: int) -> None:
        self.recorded_ticks += ticks
        if self.failing and ticks:
            log.warning("recorder_write_recovered", instrument=self.instrument, errors=self.errors)
            self.failing = ""

    def stop(self, timeout: float = 10.0) -> bool:
        """Flush everything queued and stop the thread; False if it did not finish in time."""
        if not self._thread.is_alive():
            return True
        self.q.put(_STOP)
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def prune(self, today: dt.date | None = None) -> int:
        today = today or dt.datetime.now(dt.UTC).date()
        removed = 0
        for d in recorded_days(self.root, self.instrument):
            if (today - d).days > self.retention_days:
                day_path(self.root, self.instrument, d).unlink(missing_ok=True)
                removed += 1
        return removed
