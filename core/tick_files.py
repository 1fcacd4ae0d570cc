"""Recorded quote ticks: ``<root>/<instrument>/<YYYY-MM-DD>.csv.gz``, lines ``ts_ns,bid,ask``.

The writer appends one complete gzip member per flush, so a crash loses at most what was
not yet flushed and never corrupts what was: the reader decodes member by member and
drops (and reports) a truncated last member. A line that does not parse in the middle of a
file is corruption and raises DataError naming the file and line. Quotes are stored as
received: crossed, zero or NaN quotes are kept for the bar builder to reject and count.
"""

from __future__ import annotations

import datetime as dt
import gzip
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.errors import DataError
from core.types import NS_PER_DAY, TICK_DTYPE


def day_of(ts_ns: int) -> dt.date:
    return dt.date(1970, 1, 1) + dt.timedelta(days=int(ts_ns // NS_PER_DAY))


def day_path(root: Path, instrument: str, day: dt.date) -> Path:
    return Path(root) / instrument / f"{day.isoformat()}.csv.gz"


class TickFileWriter:
    """Buffers ticks and appends them, one gzip member per ``flush``, to per-day files."""

    def __init__(self, root: str | Path, instrument: str, fsync: bool = True) -> None:
        self.root, self.instrument, self.fsync = Path(root), instrument, fsync
        self._pending: list[np.ndarray] = []
        self.written = 0

    def write(self, ticks: np.ndarray) -> None:
        if len(ticks):
            self._pending.append(np.asarray(ticks, dtype=TICK_DTYPE).copy())

    def flush(self) -> int:
        if not self._pending:
            return 0
        ticks = np.concatenate(self._pending)
        self._pending.clear()
        days = ticks["ts_ns"] // NS_PER_DAY
        for d in np.unique(days):  # rotate at UTC midnight
            part = ticks[days == d]
            path = day_path(self.root, self.instrument, day_of(int(d) * NS_PER_DAY))
            path.parent.mkdir(parents=True, exist_ok=True)
            text = "".join(f"{t},{b!r},{a!r}\n" for t, b, a in part.tolist())
            with open(path, "ab") as fh:
                fh.write(gzip.compress(text.encode(), compresslevel=6, mtime=0))
                fh.flush()
                if self.fsync:
                    os.fsync(fh.fileno())
        self.written += len(ticks)
        return len(ticks)


@dataclass(frozen=True)
class TickFileReport:
    path: Path
    ticks: int
    truncated_bytes: int


def read_tick_file(path: str | Path) -> tuple[np.ndarray, TickFileReport]:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: tick file not found") from None
    chunks, pos, truncated = [], 0, 0
    while pos < len(raw):
        d = zlib.decompressobj(wbits=31)
        try:
            out = d.decompress(raw[pos:])
        except zlib.error as e:
            raise DataError(f"{path}: corrupt gzip data at byte {pos}: {e}") from None
        if not d.eof:  # the last member was cut short (crash mid-write): drop it
            truncated = len(raw) - pos
            break
        chunks.append(out)
        pos = len(raw) - len(d.unused_data)
    lines = b"".join(chunks).decode().splitlines()
    ticks = np.empty(len(lines), dtype=TICK_DTYPE)
    for n, line in enumerate(lines):
        parts = line.split(",")
        try:
            if len(parts) != 3:
                raise ValueError(f"expected 3 fields, found {len(parts)}")
            ticks[n] = (int(parts[0]), float(parts[1]), float(parts[2]))
        except ValueError as e:
            raise DataError(f"{path}: line {n + 1}: {line[:60]!r}: {e} (expected ts_ns,bid,ask)") from None
    return ticks, TickFileReport(path, len(ticks), truncated)


def recorded_days(root: str | Path, instrument: str) -> list[dt.date]:
    folder = Path(root) / instrument
    days = []
    for p in folder.glob("*.csv.gz") if folder.is_dir() else []:
        try:
            days.append(dt.date.fromisoformat(p.name[: -len(".csv.gz")]))
        except ValueError:
            continue
    return sorted(days)
