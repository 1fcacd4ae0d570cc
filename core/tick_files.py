"""Recorded quote ticks: ``<root>/<instrument>/<YYYY-MM-DD>.csv.gz``, lines ``ts_ns,bid,ask``.

Prices are written with 8 fixed decimals by a numba kernel (exact for any quote that
arrived as a decimal of up to 8 places, which every broker quote is); NaN and infinities
are written as ``nan``/``inf`` so bad quotes stay on record. The writer appends one
complete gzip member per flush, so a crash loses at most what was
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

import numba
import numpy as np

from stairway.core.errors import DataError
from stairway.core.types import NS_PER_DAY, TICK_DTYPE


def day_of(ts_ns: int) -> dt.date:
    return dt.date(1970, 1, 1) + dt.timedelta(days=int(ts_ns // NS_PER_DAY))


def day_path(root: Path, instrument: str, day: dt.date) -> Path:
    return Path(root) / instrument / f"{day.isoformat()}.csv.gz"


@numba.njit(cache=True)
def _put_uint(buf: np.ndarray, pos: int, v: int) -> int:
    if v == 0:
        buf[pos] = 48
        return pos + 1
    start = pos
    while v > 0:
        buf[pos] = 48 + v % 10
        v //= 10
        pos += 1
    i, j = start, pos - 1
    while i < j:
        buf[i], buf[j] = buf[j], buf[i]
        i += 1
        j -= 1
    return pos


@numba.njit(cache=True)
def _put_price(buf: np.ndarray, pos: int, x: float) -> int:
    if x != x:
        buf[pos], buf[pos + 1], buf[pos + 2] = 110, 97, 110  # nan
        return pos + 3
    if x < 0:
        buf[pos] = 45
        pos += 1
        x = -x
    if x > 9e10:
        buf[pos], buf[pos + 1], buf[pos + 2] = 105, 110, 102  # inf (or absurd)
        return pos + 3
    v = np.int64(round(x * 1e8))
    pos = _put_uint(buf, pos, int(v // 100_000_000))
    buf[pos] = 46
    frac = v % 100_000_000
    for k in range(8):
        buf[pos + 8 - k] = 48 + frac % 10
        frac //= 10
    return pos + 9


@numba.njit(cache=True)
def format_ticks(ts: np.ndarray, bid: np.ndarray, ask: np.ndarray, buf: np.ndarray) -> int:
    """CSV lines ``ts_ns,bid,ask`` into ``buf`` (64 bytes per tick is enough); returns length."""
    pos = 0
    for i in range(ts.shape[0]):
        t = ts[i]
        if t < 0:
            buf[pos] = 45
            pos += 1
            t = -t
        pos = _put_uint(buf, pos, t)
        buf[pos] = 44
        pos = _put_price(buf, pos + 1, bid[i])
        buf[pos] = 44
        pos = _put_price(buf, pos + 1, ask[i])
        buf[pos] = 10
        pos += 1
    return pos


def encode_ticks(ticks: np.ndarray) -> bytes:
    buf = np.empty(64 * len(ticks) + 64, dtype=np.uint8)
    n = format_ticks(
        np.ascontiguousarray(ticks["ts_ns"]),
        np.ascontiguousarray(ticks["bid"]),
        np.ascontiguousarray(ticks["ask"]),
        buf,
    )
    return buf[:n].tobytes()


class TickFileWriter:
    """Buffers ticks and appends them, one gzip member per ``flush``, to per-day files."""

    def __init__(self, root: str | Path, instrument: str, fsync: bool = True, max_pending: int = 65_536) -> None:
        self.root, self.instrument, self.fsync = Path(root), instrument, fsync
        self.max_pending = max_pending  # flush by size too: bounded buffers whatever the tick rate
        self._pending: list[np.ndarray] = []
        self._n_pending = 0
        self.written = 0

    def write(self, ticks: np.ndarray) -> None:
        if len(ticks):
            self._pending.append(np.asarray(ticks, dtype=TICK_DTYPE).copy())
            self._n_pending += len(ticks)
            if self._n_pending >= self.max_pending:
                self.flush()

    @property
    def pending(self) -> int:
        """Ticks buffered, not yet written."""
        return self._n_pending

    def flush(self) -> int:
        if not self._pending:
            return 0
        ticks = np.concatenate(self._pending)
        self._pending.clear()
        self._n_pending = 0
        days = ticks["ts_ns"] // NS_PER_DAY
        for d in np.unique(days):  # rotate at UTC midnight
            part = ticks[days == d]
            path = day_path(self.root, self.instrument, day_of(int(d) * NS_PER_DAY))
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "ab") as fh:
                fh.write(gzip.compress(encode_ticks(part), compresslevel=1, mtime=0))
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
