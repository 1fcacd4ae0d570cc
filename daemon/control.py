"""Signal-file control: ``state/control/START_TRADING`` present = may open positions,
absent = observe only; ``FLATTEN`` = close everything, then the daemon removes the file.

The directory must not be writable by group or others (anyone who can write there can
trade the account); the daemon refuses to start otherwise.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from core.errors import FatalError

START = "START_TRADING"
FLATTEN = "FLATTEN"


@dataclass(frozen=True)
class ControlState:
    start_trading: bool
    start_mtime_ns: int
    flatten: bool


class ControlFiles:
    def __init__(self, directory: str | Path, create: bool = True) -> None:
        self.dir = Path(directory)
        if create:
            make_control_dir(self.dir)
        check_private(self.dir)

    def poll(self) -> ControlState:
        try:
            st = os.stat(self.dir / START)
            start, mtime = True, st.st_mtime_ns
        except FileNotFoundError:
            start, mtime = False, 0
        return ControlState(start, mtime, (self.dir / FLATTEN).exists())

    def consume_flatten(self) -> None:
        (self.dir / FLATTEN).unlink(missing_ok=True)

    def stop_trading(self) -> None:
        (self.dir / START).unlink(missing_ok=True)


def make_control_dir(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    except FileExistsError:
        raise FatalError(f"{directory}: control directory path exists but is not a directory") from None
    except OSError as e:
        raise FatalError(f"{directory}: cannot create the control directory: {e.strerror or e}") from None


def check_private(directory: Path) -> None:
    try:
        mode = directory.stat().st_mode
    except FileNotFoundError:
        raise FatalError(f"{directory}: control directory does not exist") from None
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise FatalError(f"{directory}: control directory is writable by group or others "
                         f"(mode {stat.filemode(mode)}); chmod go-w it before starting the daemon")


def ctl(directory: str | Path, action: str, status_file: Path | None = None) -> str:
    """`stairway ctl start|stop|flatten|status`."""
    d = Path(directory)
    if action in ("start", "flatten"):
        make_control_dir(d)
        check_private(d)
        name = START if action == "start" else FLATTEN
        tmp = d / f".{name}.tmp"
        tmp.write_text("")
        tmp.chmod(0o600)
        os.replace(tmp, d / name)
        return f"{d / name} written: " + ("the daemon may open positions" if action == "start"
                                          else "the daemon will close everything and remove the file")
    if action == "stop":
        (d / START).unlink(missing_ok=True)
        return f"{d / START} removed: observe only (positions are kept; use flatten to close them)"
    if action == "status":
        s = ControlFiles(d, create=False).poll() if d.is_dir() else ControlState(False, 0, False)
        out = {"start_trading": s.start_trading, "flatten_pending": s.flatten}
        if status_file is not None and status_file.is_file():
            out["daemon"] = json.loads(status_file.read_text())
        return json.dumps(out, indent=2)
    raise ValueError(f"unknown ctl action {action!r}")
