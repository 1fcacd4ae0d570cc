"""Signal-file control: ``state/control/START_TRADING`` present = may open positions,
absent = observe only; ``FLATTEN`` = close everything, then the daemon removes the file.
A portfolio daemon also reads ``FLATTEN_<INSTRUMENT>`` (``FLATTEN_EUR_USD``): close that
instrument only (``stairway ctl flatten --instrument EUR_USD`` writes it).

Anyone who can write the directory can trade the account, so it must be owned by the
daemon's user and not writable by group or others, and so must every directory above it
be (owned by root or that user; group/other-writable only with the sticky bit, like /tmp).
The daemon refuses to start otherwise, and re-checks while running: an unsafe directory
stops new positions until it is fixed. Other names in the directory (``FLATEN``, ``STOP``,
``start_trading``) are not commands: they are logged once and shown by ``ctl status``.
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

from stairway.core.errors import ConfigError, FatalError
from stairway.core.pids import pid_alive

START = "START_TRADING"
FLATTEN = "FLATTEN"
KNOWN = (START, FLATTEN)


def flatten_file(instrument: str | None = None) -> str:
    return FLATTEN if instrument is None else f"{FLATTEN}_{instrument}"


@dataclass(frozen=True)
class ControlState:
    start_trading: bool
    start_mtime_ns: int
    flatten: bool
    unknown: tuple[str, ...] = field(default_factory=tuple)  # names that are not commands
    flatten_instruments: tuple[str, ...] = ()  # FLATTEN_<instrument> files present
    odd: tuple[str, ...] = ()  # "NAME: why" for a command name that is not a regular file

    def flatten_requests(self, instruments: list[str]) -> list[tuple[str, list[str]]]:
        """(file name, the instruments it closes) for every flatten file present."""
        out = [(FLATTEN, list(instruments))] if self.flatten else []
        return out + [(flatten_file(i), [i]) for i in self.flatten_instruments]


def unknown_names(directory: Path, known: tuple[str, ...] = KNOWN) -> tuple[str, ...]:
    """Entries that are not control files (dot-files are ctl's own temporaries)."""
    try:
        names = os.listdir(directory)
    except OSError:
        return ()
    return tuple(sorted(n for n in names if n not in known and not n.startswith(".")))


def hint(name: str, known: tuple[str, ...] = KNOWN) -> str:
    close = difflib.get_close_matches(name.upper(), known, n=1, cutoff=0.6)
    return f"{name} (did you mean {close[0]}?)" if close else name


@dataclass(frozen=True)
class Entry:
    """What is at a command's name: nothing, a regular file, or something else (``odd``)."""

    present: bool
    regular: bool = False
    mtime_ns: int = 0
    ident: tuple[int, int] = (0, 0)  # (inode, mtime): the same entry seen again
    odd: str = ""


def entry(path: Path) -> Entry:
    """``path`` as it is, never following a link: a symbolic link could point anywhere, and a
    file outside the private directory could be created or removed by someone else."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return Entry(False)
    except OSError as e:
        return Entry(True, odd=f"cannot be read ({e.strerror or e})")
    ident = (st.st_ino, st.st_mtime_ns)
    if stat.S_ISREG(st.st_mode):
        return Entry(True, True, st.st_mtime_ns, ident)
    if stat.S_ISLNK(st.st_mode):
        try:
            target = os.readlink(path)
        except OSError:
            target = "?"
        dangling = "" if os.path.exists(path) else ", dangling"
        return Entry(True, mtime_ns=st.st_mtime_ns, ident=ident, odd=f"a symbolic link to {target}{dangling}")
    what = "a directory" if stat.S_ISDIR(st.st_mode) else f"not a regular file ({stat.filemode(st.st_mode)})"
    return Entry(True, mtime_ns=st.st_mtime_ns, ident=ident, odd=what)


class ControlFiles:
    """The control directory. A command name must be a regular file: ``START_TRADING`` as
    anything else (a directory, a symbolic link) is not honoured (observe only); ``FLATTEN``
    as anything else still flattens, once per entry (it is a safety command), and is removed
    if it can be (an empty directory, a link), else left and reported. Nothing in the directory
    is ever fatal: what is odd is in ``ControlState.odd``, logged once by the daemon and listed
    by ``ctl status``."""

    def __init__(self, directory: str | Path, create: bool = True, instruments=()) -> None:
        self.dir = Path(directory)
        self.instruments = tuple(instruments)  # a portfolio's: FLATTEN_<instrument> files are commands too
        self.known = KNOWN + tuple(flatten_file(i) for i in self.instruments)
        self.stuck: dict[str, tuple[int, int]] = {}  # flatten entries acted on that could not be removed
        if create:
            make_control_dir(self.dir)
        check_private(self.dir)

    def poll(self) -> ControlState:
        odd: list[str] = []

        def look(name: str) -> Entry:
            e = entry(self.dir / name)
            if e.odd:
                what = "ignored: observe only" if name == START else "flattened once; cannot be a command"
                odd.append(f"{name}: {e.odd}, not a regular file ({what})")
            return e

        start = look(START)

        def flatten_pending(name: str) -> bool:
            e = look(name)
            return e.present and self.stuck.get(name) != e.ident

        per = tuple(i for i in self.instruments if flatten_pending(flatten_file(i)))
        flat = flatten_pending(FLATTEN)
        return ControlState(
            start.regular, start.mtime_ns if start.regular else 0, flat, unknown_names(self.dir, self.known), per,
            tuple(odd),
        )  # fmt: skip

    def consume(self, name: str) -> str:
        """Remove a flatten file once its positions are being closed; "" when removed, else why
        not (the entry is then not acted on again until it changes). Never raises."""
        path = self.dir / name
        e = entry(path)
        try:
            if e.odd.startswith("a directory"):
                path.rmdir()  # an empty directory made by `mkdir` instead of `touch`
            else:
                path.unlink(missing_ok=True)
        except OSError as err:
            self.stuck[name] = e.ident
            return f"{path} could not be removed ({err.strerror or err}); remove it by hand"
        self.stuck.pop(name, None)
        return ""

    def consume_flatten(self) -> str:
        return self.consume(FLATTEN)

    def stop_trading(self) -> None:
        """Remove START_TRADING (the flatten tier, a halt); an odd entry there is not honoured
        anyway, so one that cannot be removed is left."""
        path = self.dir / START
        try:
            if entry(path).odd.startswith("a directory"):
                path.rmdir()
            else:
                path.unlink(missing_ok=True)
        except OSError:
            pass


def make_control_dir(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    except FileExistsError:
        raise FatalError(f"{directory}: control directory path exists but is not a directory") from None
    except OSError as e:
        raise FatalError(f"{directory}: cannot create the control directory: {e.strerror or e}") from None


def check_private(directory: Path) -> None:
    """Raise FatalError unless only this user (and root) can change what is in ``directory``."""
    try:
        st = directory.stat()
    except FileNotFoundError:
        raise FatalError(f"{directory}: control directory does not exist") from None
    if not stat.S_ISDIR(st.st_mode):
        raise FatalError(f"{directory}: control directory path exists but is not a directory")
    me = os.geteuid()
    if st.st_uid != me:
        raise FatalError(
            f"{directory}: control directory is owned by uid {st.st_uid}, not by this user (uid {me}); "
            "chown it to the daemon's user"
        )
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise FatalError(
            f"{directory}: control directory is writable by group or others "
            f"(mode {stat.filemode(st.st_mode)}); chmod go-w it before starting the daemon"
        )
    # the directories above the path as given (where a symbolic link to the control directory
    # lives, and could be replaced) and above where it leads
    parents = dict.fromkeys([*Path(os.path.abspath(directory)).parents, *directory.resolve().parents])
    for parent in parents:
        pst = parent.stat()
        if pst.st_uid not in (0, me):
            raise FatalError(
                f"{directory}: parent directory {parent} is owned by uid {pst.st_uid} (neither root nor "
                "this user), who could replace the control directory"
            )
        if pst.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not pst.st_mode & stat.S_ISVTX:
            raise FatalError(
                f"{directory}: parent directory {parent} is writable by group or others "
                f"(mode {stat.filemode(pst.st_mode)}) without the sticky bit; chmod go-w it"
            )


def ctl(directory: str | Path, action: str, status_file: Path | None = None, instrument: str | None = None) -> str:
    """`stairway ctl start|stop|flatten [--instrument X]|status`."""
    d = Path(directory)
    if instrument is not None and action != "flatten":
        raise ConfigError(f"--instrument goes with flatten only, not {action!r}")
    if action in ("start", "flatten"):
        make_control_dir(d)
        check_private(d)
        name = START if action == "start" else flatten_file(instrument)
        tmp = d / f".{name}.tmp"
        tmp.write_text("")
        tmp.chmod(0o600)
        os.replace(tmp, d / name)
        return f"{d / name} written: " + (
            "the daemon may open positions"
            if action == "start"
            else f"the daemon will close {instrument or 'everything'} and remove the file"
        )
    if action == "stop":
        (d / START).unlink(missing_ok=True)
        return f"{d / START} removed: observe only (positions are kept; use flatten to close them)"
    if action == "status":
        if d.exists() and not d.is_dir():
            raise FatalError(f"{d}: control directory path exists but is not a directory")
        s = ControlFiles(d, create=False).poll() if d.is_dir() else ControlState(False, 0, False)
        out: dict = {"start_trading": s.start_trading, "flatten_pending": s.flatten}
        if s.unknown:
            out["ignored_files"] = [hint(n) for n in s.unknown]
        if s.odd:
            out["not_regular_files"] = list(s.odd)
        out.update(daemon_status(status_file))
        return json.dumps(out, indent=2)
    raise ValueError(f"unknown ctl action {action!r}")


def daemon_status(status_file: Path | None, stale_secs: float = 60.0) -> dict:
    """The daemon's last snapshot, and whether that daemon is still running: a snapshot is
    only current while its pid is alive and it was written recently."""
    if status_file is None or not status_file.is_file():
        return {"daemon_running": False, "daemon_state": "no status file: the daemon has not run here"}
    try:
        snap = json.loads(status_file.read_text())
    except (OSError, ValueError) as e:
        return {"daemon_running": False, "daemon_state": f"{status_file}: unreadable status ({e})"}
    pid, written = snap.get("pid"), snap.get("written_at")
    age = time.time() - written if isinstance(written, (int, float)) else None
    if snap.get("stopped"):
        state, running = "stopped cleanly", False
    elif not isinstance(pid, int) or not pid_alive(pid):
        state, running = f"NOT RUNNING: pid {pid} is gone (killed or crashed); the snapshot below is its last", False
    elif age is not None and age > stale_secs:
        state, running = f"NOT RESPONDING: pid {pid} alive but its status is {age:.0f} s old", False
    else:
        life = snap.get("state")  # daemon.lifecycle: trading, halted, observe_only, ...
        why = f" ({snap['state_reason']})" if life and snap.get("state_reason") else ""
        state, running = f"running as pid {pid}" + (f": {life}{why}" if life else ""), True
    out: dict = {"daemon_running": running, "daemon_state": state}
    if isinstance(written, (int, float)):  # people read this: UTC ISO 8601 beside the snapshot's epoch seconds
        out["status_written"] = dt.datetime.fromtimestamp(written, dt.UTC).isoformat(timespec="seconds")
        out["status_age_s"] = round(age or 0.0, 1)
    return {**out, "daemon": snap}
