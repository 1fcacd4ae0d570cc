"""Exclusive locks on what one process may own at a time: a daemon's state directory, a
trainer's models directory and gate database, a data store.

``fcntl.flock`` on a lock file beside the thing it guards: the kernel drops the lock when its
holder exits, however it exits (kill -9 included), so a lock is never stale and never needs a
pid check to be broken. The file holds the holder's pid and command line only to name it in
the refusal a second process gets.
"""

from __future__ import annotations

import errno
import fcntl
import os
import sys
import time
from pathlib import Path

from stairway.core.errors import StairwayError


class LockHeld(StairwayError):
    """Another process holds the lock; the message names its pid and what it guards."""


class ExclusiveLock:
    """An exclusive lock held by this process until ``release`` (or its exit).

    ``what`` names the thing guarded in messages ("state directory state/"). ``wait_secs``
    > 0 waits that long for the holder to finish (polling every 0.2 s), then refuses."""

    def __init__(self, path: Path, what: str) -> None:
        self.path, self.what = Path(path), what
        self._fd: int | None = None

    def acquire(self, wait_secs: float = 0.0) -> ExclusiveLock:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as e:
            if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
                ro = "read-only" if e.errno == errno.EROFS or not os.access(self.path.parent, os.W_OK) else "not ours"
                raise StairwayError(
                    f"{self.what}: cannot create its lock file {self.path}: the directory is {ro} ({e.strerror}); "
                    "make it writable by this user"
                ) from None
            raise StairwayError(f"{self.what}: cannot create its lock file {self.path}: {e.strerror}") from None
        deadline = time.monotonic() + wait_secs
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = _holder(fd)
                    os.close(fd)
                    waited = f" (waited {wait_secs:.0f} s)" if wait_secs > 0 else ""
                    raise LockHeld(
                        f"{self.what} is in use by {holder}{waited}: one process at a time (lock {self.path})"
                    ) from None
                time.sleep(0.2)  # a waiting CLI, never the daemon's event loop (it never waits)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {' '.join(sys.argv)[:400]}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> ExclusiveLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _holder(fd: int) -> str:
    """'pid N (command)' from the lock file, as its holder wrote it."""
    try:
        text = os.pread(fd, 1024, 0).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    pid, _, cmd = text.partition(" ")
    if not pid.isdigit():
        return "another process (its pid is not written yet)"
    return f"pid {pid}" + (f" ({cmd})" if cmd else "")


def state_lock(state_dir: Path) -> ExclusiveLock:
    """The lock a daemon holds on its state directory (database, control files, recordings)."""
    return ExclusiveLock(Path(state_dir) / "daemon.lock", f"state directory {state_dir}")


def file_lock(path: Path, what: str) -> ExclusiveLock:
    """The lock on one file (a gate database): ``<file>.lock`` beside it."""
    path = Path(path)
    return ExclusiveLock(path.with_name(path.name + ".lock"), f"{what} {path}")
