"""Loading and validating OHLCV bar files.

Understands what users bring:
- the gym-anytrading layout (``Time,Open,High,Low,Close,Volume`` with day-first
  ``DD.MM.YYYY HH:MM:SS.fff`` UTC timestamps), ISO 8601 times (``YYYY-MM-DD[ T]HH:MM[:SS]``,
  optionally with ``Z`` or an offset like ``+02:00``, converted to UTC; a bare date for daily
  bars), Dukascopy (``Gmt time``, or ``Local time`` with its ``GMT+0200``) and MetaTrader
  (``2017.01.02`` dates, separate ``Date`` and ``Time`` columns, MT5's tab-separated
  ``<DATE>`` header, MT4's headerless export); other date layouts with an explicit strptime
  format, and a file clock other than UTC with its offset (core.bar_formats.TimeFormat);
- the time column named ``time``, ``date``, ``datetime``, ``timestamp``, ``date_time``,
  ``gmt time`` or ``local time``, any case, or ``date`` and ``time`` together; an unnamed first
  column (a pandas index) is ignored unless it is the only time column;
- gzip or bz2 compressed files, detected from their first bytes (not their names);
- a ``symbol`` (or ``instrument``/``ticker``) column: rows of the configured instrument are
  kept (``EUR_USD``, ``EURUSD`` and ``EUR/USD`` are the same); a file with several symbols and
  no instrument to filter by is refused;
- volume is optional. A close-only series is refused with the conversion it would need.
Every problem is reported as a DataError naming the file, the line and what is wrong.
"""

from __future__ import annotations

import csv
import itertools
import math
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast

import numpy as np

from stairway.core.bar_builder import DEFAULT_MAX_JUMP
from stairway.core.bar_formats import (
    MT4_COLUMNS,
    TimeFormat,
    delimiter_of,
    header_name,
    is_mt4_row,
)
from stairway.core.errors import DataError
from stairway.core.types import BAR_DTYPE, NS_PER_MINUTE

REQUIRED = ("time", "open", "high", "low", "close")
TIME_NAMES = ("time", "date", "datetime", "timestamp", "date_time", "gmt time", "local time")
SYMBOL_NAMES = ("symbol", "instrument", "ticker")


def _norm_symbol(s: str) -> str:
    return re.sub(r"[^A-Z0-9]", "", s.upper())


def _open_binary(path: Path) -> IO[bytes]:
    """A binary handle, decompressing gzip or bz2 by their magic bytes (not the name)."""
    with path.open("rb") as fh:
        head = fh.read(3)
    if head[:2] == b"\x1f\x8b":
        import gzip

        return cast(IO[bytes], gzip.open(path, "rb"))
    if head == b"BZh":
        import bz2

        return cast(IO[bytes], bz2.open(path, "rb"))
    return path.open("rb")


MAX_LINE_BYTES = 1 << 20  # a bar row is ~100 bytes; a longer "line" is not a bar file


def _raw_lines(path: Path, raw: IO[bytes]) -> Iterator[bytes]:
    """The file's lines as bytes, each read with a bounded length before anything decodes it
    (a small gzip can expand to one line of gigabytes)."""
    line = 0
    while True:
        chunk = raw.readline(MAX_LINE_BYTES + 1)
        if not chunk:
            return
        line += 1
        if len(chunk) > MAX_LINE_BYTES:
            raise DataError(f"{path}: line {line} is longer than {MAX_LINE_BYTES} bytes: not a bar file")
        yield chunk


def _text_lines(path: Path, raw: IO[bytes]) -> Iterator[str]:
    for chunk in _raw_lines(path, raw):
        yield chunk.decode("utf-8")


@dataclass(frozen=True)
class Gap:
    start_ns: int
    end_ns: int
    weekend: bool

    @property
    def minutes(self) -> float:
        return (self.end_ns - self.start_ns) / NS_PER_MINUTE


@dataclass
class BarFileReport:
    """What the loader found, for logs and summaries."""

    path: Path
    rows: int
    period_minutes: int
    gaps: list[Gap] = field(default_factory=list)

    @property
    def weekend_gaps(self) -> int:
        return sum(g.weekend for g in self.gaps)

    @property
    def other_gaps(self) -> int:
        return sum(not g.weekend for g in self.gaps)

    def log_fields(self) -> dict[str, Any]:
        """Key/value fields for a ``bar_file_loaded`` log event."""
        other = [g for g in self.gaps if not g.weekend]
        return {
            "file": str(self.path),
            "rows": self.rows,
            "period_minutes": self.period_minutes,
            "weekend_gaps": self.weekend_gaps,
            "other_gaps": len(other),
            "other_gap_examples": [f"{_iso(g.start_ns)} ({g.minutes:.0f} min)" for g in other[:3]],
        }


def _iso(ts_ns: int) -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(ts_ns // 1_000_000_000))


def _price(path: Path, line: int, name: str, text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise DataError(f"{path}: line {line}: {name} {text!r} is not a number") from None
    if not math.isfinite(v) or v <= 0:
        raise DataError(f"{path}: line {line}: {name} {text!r} must be a positive finite price")
    return v


def _first_bad_utf8_line(path: Path) -> tuple[int, bytes]:
    with _open_binary(path) as fh:
        for line, raw in enumerate(_raw_lines(path, fh), start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as e:
                return line, raw[e.start : e.end]
    return 0, b""


def load_bars(
    path: str | Path,
    max_jump: float | None = DEFAULT_MAX_JUMP,
    symbol: str | None = None,
    times: TimeFormat | None = None,
) -> tuple[np.ndarray, BarFileReport]:
    """Read and validate a bar file. Returns a BAR_DTYPE array sorted by time and a report.

    A price more than ``max_jump`` (relative; None = no check) away from the previous row's
    close is implausible (a mis-scaled or corrupt row) and refuses the file with its line.
    ``symbol`` selects the rows of one instrument in a file with a symbol column; ``times``
    says how its times are written where they are not recognised (core.bar_formats)."""
    path = Path(path)
    try:
        return _load_bars(path, max_jump, symbol, times or TimeFormat())
    except UnicodeDecodeError:
        line, raw = _first_bad_utf8_line(path)
        raise DataError(f"{path}: line {line}: bytes {raw!r} are not UTF-8 text") from None
    except csv.Error as e:  # NUL bytes and the like: a binary file
        raise DataError(f"{path}: not a text CSV file ({e})") from None
    except EOFError as e:
        raise DataError(f"{path}: truncated compressed file ({e})") from None
    except zlib.error as e:  # gzip's inflater: not an OSError
        raise DataError(f"{path}: corrupt compressed file ({e})") from None
    except FileNotFoundError:
        raise DataError(f"{path}: bar file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, not a bar file") from None
    except OSError as e:
        if e.errno is None:  # gzip/bz2 decompression errors carry no errno
            raise DataError(f"{path}: corrupt compressed file ({e})") from None
        raise DataError(f"{path}: cannot read the bar file: {e.strerror or e}") from None


def _columns(path: Path, header: list[str]) -> tuple[dict[str, int], int | None, int | None]:
    """(indexes of time/open/high/low/close, volume index, symbol index) from a header."""
    cols = [header_name(h) for h in header]
    times = [k for k, c in enumerate(cols) if c in TIME_NAMES]
    if not times and cols and cols[0] in ("", "unnamed: 0", "index"):
        times = [0]  # a pandas index holding the times
    idx = {}
    if len(times) == 2 and [cols[k] for k in times] == ["date", "time"]:
        idx["clock"] = times.pop()  # MetaTrader: the day in one column, the time of day in the next
    if len(times) > 1:
        raise DataError(f"{path}: line 1: several time columns {[header[k] for k in times]}; keep one")
    if not times:
        raise DataError(f"{path}: line 1: no time column (one of {', '.join(TIME_NAMES)}); header is {header}")
    idx["time"] = times[0]
    ohlc = [c for c in ("open", "high", "low", "close") if c in cols]
    if ohlc == ["close"] or (not ohlc and ("price" in cols or "adj close" in cols)):
        raise DataError(
            f"{path}: line 1: close-only series (header {header}): bars need open, high, low and close; "
            "resample the ticks/closes into OHLC bars first (e.g. pandas "
            "df.resample('1h').ohlc()) — a close alone cannot give the intrabar path fills need"
        )
    missing = [c for c in REQUIRED if c not in cols and c != "time"]
    if missing:
        raise DataError(f"{path}: line 1: missing required column(s) {missing}; header is {header}")
    idx.update({c: cols.index(c) for c in ("open", "high", "low", "close")})
    if "volume" not in cols and "tickvol" in cols:  # MT5: tick volume (VOL is real volume, mostly 0 in FX)
        cols[cols.index("tickvol")] = "volume"
    syms = [k for k, c in enumerate(cols) if c in SYMBOL_NAMES]
    return idx, (cols.index("volume") if "volume" in cols else None), (syms[0] if syms else None)


def _load_bars(
    path: Path, max_jump: float | None, symbol: str | None, times: TimeFormat
) -> tuple[np.ndarray, BarFileReport]:
    with _open_binary(path) as raw:
        if b"\x00" in raw.read(65536):
            raise DataError(f"{path}: binary content (NUL bytes), not a text CSV file")
    with _open_binary(path) as fh:
        lines = _text_lines(path, fh)
        first = next(lines, "")
        reader: Iterator[list[str]] = csv.reader(itertools.chain([first], lines), delimiter=delimiter_of(first))
        header = next(reader, None)
        if not header:
            raise DataError(f"{path}: file is empty (expected a header {','.join(REQUIRED)},volume)")
        start = 2
        if is_mt4_row(header):  # MT4's headerless export: the first line is a bar
            reader, header, start = itertools.chain([header], reader), MT4_COLUMNS, 1
        cols = header
        idx, vol_idx, sym_idx = _columns(path, header)
        want = _norm_symbol(symbol) if symbol else None
        seen_symbols: set[str] = set()
        rows: list[tuple[Any, ...]] = []
        prev_ts: int | None = None
        prev_close: float | None = None
        clock = idx.get("clock")
        for line, rec in enumerate(reader, start=start):
            if not rec or all(not x.strip() for x in rec):
                continue
            if len(rec) != len(cols):
                raise DataError(f"{path}: line {line}: expected {len(cols)} fields, found {len(rec)}")
            if sym_idx is not None:
                sym = _norm_symbol(rec[sym_idx])
                if want is None:
                    seen_symbols.add(sym)
                    if len(seen_symbols) > 1:
                        raise DataError(
                            f"{path}: line {line}: several symbols ({', '.join(sorted(seen_symbols))}) "
                            "and no instrument to select: set instrument.symbol, or one symbol a file"
                        )
                elif sym != want:
                    continue
            when = rec[idx["time"]].strip() if clock is None else f"{rec[idx['time']].strip()} {rec[clock].strip()}"
            try:
                ts = times.parse(when)
            except ValueError as e:
                raise DataError(f"{path}: line {line}: {e}") from None
            o, h, lo, c = (_price(path, line, n, rec[idx[n]].strip()) for n in ("open", "high", "low", "close"))
            if not (lo <= o <= h and lo <= c <= h):
                raise DataError(
                    f"{path}: line {line}: inconsistent OHLC (open={o}, high={h}, low={lo}, close={c}); "
                    "need low <= open, close <= high"
                )
            vol = 0.0
            if vol_idx is not None:
                try:
                    vol = float(rec[vol_idx])
                except ValueError:
                    raise DataError(f"{path}: line {line}: volume {rec[vol_idx]!r} is not a number") from None
                if not math.isfinite(vol) or vol < 0:
                    raise DataError(f"{path}: line {line}: volume {rec[vol_idx]!r} must be finite and >= 0")
            if prev_ts is not None:
                if ts == prev_ts:
                    raise DataError(f"{path}: line {line}: duplicate timestamp {when!r}")
                if ts < prev_ts:
                    raise DataError(
                        f"{path}: line {line}: timestamp {when!r} is earlier than the row "
                        "before it (file must be sorted by time)"
                    )
            if prev_close is not None and max_jump is not None:
                for name, x in (("open", o), ("high", h), ("low", lo), ("close", c)):
                    if x > prev_close * (1.0 + max_jump) or x * (1.0 + max_jump) < prev_close:
                        raise DataError(
                            f"{path}: line {line}: {name} {x!r} is {100.0 * (x / prev_close - 1.0):+.4g} % from the "
                            f"previous close {prev_close!r}, beyond bars.max_jump_pct = {100.0 * max_jump:g}: an "
                            "implausible price (fix or remove the row, or raise bars.max_jump_pct)"
                        )
            prev_ts, prev_close = ts, c
            rows.append((ts, o, h, lo, c, vol))
    if not rows:
        if want is not None and sym_idx is not None:
            raise DataError(f"{path}: no rows for symbol {symbol} (symbols are matched ignoring '_', '/' and case)")
        raise DataError(f"{path}: no data rows after the header")
    bars = np.array(rows, dtype=BAR_DTYPE)
    return bars, BarFileReport(path, len(bars), *_period_and_gaps(bars["ts_ns"]))


def _period_and_gaps(ts: np.ndarray) -> tuple[int, list[Gap]]:
    if len(ts) < 2:
        return 0, []
    diffs = np.diff(ts)
    values, counts = np.unique(diffs, return_counts=True)
    period = int(values[np.argmax(counts)])
    gaps = []
    for i in np.nonzero(diffs > period)[0]:
        start, end = int(ts[i]), int(ts[i + 1])
        # A weekend gap starts on Friday or Saturday and ends on Saturday, Sunday or Monday (UTC).
        wd_start = (start // 86_400_000_000_000 + 3) % 7  # 0 = Monday
        wd_end = (end // 86_400_000_000_000 + 3) % 7
        weekend = wd_start in (4, 5) and wd_end in (5, 6, 0) and end - start <= 4 * 86_400_000_000_000
        gaps.append(Gap(start + period, end, weekend))
    return period // NS_PER_MINUTE, gaps


def load_period_bars(
    path: str | Path,
    period_minutes: int,
    max_jump: float | None = DEFAULT_MAX_JUMP,
    symbol: str | None = None,
    times: TimeFormat | None = None,
) -> tuple[np.ndarray, BarFileReport]:
    """``load_bars`` plus the check every user needs: the file's bar period is the config's."""
    bars, report = load_bars(path, max_jump, symbol, times)
    if report.period_minutes != period_minutes:
        raise DataError(
            f"{path}: bars are {report.period_minutes}-minute but the config says "
            f"bars.period_minutes = {period_minutes}"
        )
    return bars, report


def select_range(bars: np.ndarray, start_ns: int, end_ns: int) -> np.ndarray:
    """Bars whose open time lies in [start_ns, end_ns)."""
    ts = bars["ts_ns"]
    lo, hi = np.searchsorted(ts, start_ns, "left"), np.searchsorted(ts, end_ns, "left")
    return bars[lo:hi]


def _utc(ns: int, fmt: str = "%Y-%m-%d %H:%M") -> str:
    import time

    return time.strftime(fmt, time.gmtime(int(ns) // 1_000_000_000))


def span_text(bars: np.ndarray) -> str:
    """The file's first and last bar, for error messages."""
    if len(bars) == 0:
        return "no bars"
    return f"{_utc(bars['ts_ns'][0])} .. {_utc(bars['ts_ns'][-1])} UTC"


def select_warm_range(
    path: str | Path, bars: np.ndarray, start_ns: int, end_ns: int, warmup_bars: int, what: str
) -> np.ndarray:
    """Bars in [start, end), refused (naming the range, the file's span and the warm-up) when
    there are not enough for the features to warm up and decide at least once."""
    sel = select_range(bars, start_ns, end_ns)
    if len(sel) < warmup_bars + 3:
        raise DataError(
            f"{path}: {what} {_utc(start_ns, '%Y-%m-%d')} .. {_utc(end_ns, '%Y-%m-%d')} holds {len(sel)} bars; the features need "
            f"{warmup_bars} to warm up plus 3 to decide; the file spans {span_text(bars)}"
        )
    return sel


def merge_bars(parts: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Bars from several sources as one series: a union by bar time, sorted, the earlier
    part winning where times coincide; and for each bar the index of the part it came from.
    (The daemon's warm start and the trainer's data store merge their sources with it.)"""
    if not any(len(p) for p in parts):
        return np.empty(0, dtype=BAR_DTYPE), np.empty(0, dtype=np.int8)
    allb = np.concatenate(parts)
    origin = np.concatenate([np.full(len(p), k, dtype=np.int8) for k, p in enumerate(parts)])
    order = np.argsort(allb["ts_ns"], kind="stable")  # stable: the earlier part first on ties
    allb, origin = allb[order], origin[order]
    keep = np.ones(len(allb), dtype=bool)
    keep[1:] = allb["ts_ns"][1:] != allb["ts_ns"][:-1]
    return allb[keep], origin[keep]


def write_bars_csv(path: str | Path, bars: np.ndarray) -> Path:
    """Write bars as a CSV ``load_bars`` reads back exactly (ISO UTC times, repr() prices),
    atomically: a temporary file, fsync'd, renamed over ``path``. A crash leaves the old file
    or the new one, never half of one."""
    import os
    import time

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as fh:
        fh.write("time,open,high,low,close,volume\n")
        for ts, o, h, lo, c, v in bars.tolist():
            fh.write(
                f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(ts // 1_000_000_000))},{o!r},{h!r},{lo!r},{c!r},{v!r}\n"
            )
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path
