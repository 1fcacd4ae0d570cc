"""How a bar file writes its times and lays out its header (core.bar_files reads the rows).

Recognised without being told:
- day-first ``DD.MM.YYYY HH:MM[:SS[.fff]]`` (gym-anytrading, Dukascopy's ``Gmt time``), with an
  optional ``GMT+0200`` suffix (Dukascopy's ``Local time``), converted to UTC;
- ISO 8601 ``YYYY-MM-DD[ T]HH:MM[:SS[.fff]]`` with an optional ``Z`` or offset; a bare date;
- MetaTrader's year-first dotted ``YYYY.MM.DD HH:MM[:SS]``, in one column or as separate
  ``Date`` and ``Time`` columns (MT5's ``<DATE>``/``<TIME>`` header, tab-separated), or MT4's
  headerless history export ``2017.01.02,00:00,open,high,low,close,volume``.
Anything else (a US ``M/D/YYYY`` date is ambiguous with ``D/M/YYYY``) needs an explicit
``TimeFormat.date_format`` (strptime directives, e.g. ``%m/%d/%Y %H:%M``). MetaTrader writes
its server's clock, not UTC: ``TimeFormat.utc_offset_minutes`` says what the file's clock is
ahead of UTC (+120 for GMT+2), and is subtracted from every time without an offset of its own.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from dataclasses import dataclass

_DAY_FIRST = re.compile(r"^(\d{2})\.(\d{2})\.(\d{4}) (\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(?: GMT([+-]\d{4}))?$")
_YEAR_DOTTED = re.compile(r"^(\d{4})\.(\d{2})\.(\d{2})(?:[ T](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?$")
_ISO = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})(?:[ T](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?"
    r"(Z|[+-]\d{2}:?\d{2})?$"
)
_SLASHED = re.compile(r"^\d{1,2}/\d{1,2}/\d{2,4}")
# MT4's headerless history export: date, time, open, high, low, close, volume
_MT4_ROW = re.compile(r"^\d{4}\.\d{2}\.\d{2}$")
MT4_COLUMNS = ["date", "time", "open", "high", "low", "close", "volume"]


@dataclass(frozen=True)
class TimeFormat:
    """What the user told us about a file's times (``stairway data import --date-format
    --utc-offset``): strptime directives (None: recognised as above) and the file clock's
    offset from UTC in minutes."""

    date_format: str | None = None
    utc_offset_minutes: int = 0

    def __post_init__(self) -> None:
        if self.date_format is not None and "%" not in self.date_format:
            raise ValueError(f"date format {self.date_format!r} has no strptime directive (e.g. %m/%d/%Y %H:%M)")
        if abs(self.utc_offset_minutes) > 14 * 60:
            raise ValueError(f"UTC offset {self.utc_offset_minutes} minutes is beyond +-14 hours")

    def parse(self, text: str) -> int:
        """UTC nanoseconds of one time field (ValueError naming the text and what was expected)."""
        if self.date_format is None:
            return parse_timestamp_ns(text, self.utc_offset_minutes)
        try:
            t = dt.datetime.strptime(text, self.date_format)
        except ValueError:
            raise ValueError(f"timestamp {text!r} does not match the date format {self.date_format!r}") from None
        if t.tzinfo is None:
            t = t.replace(tzinfo=dt.UTC) - dt.timedelta(minutes=self.utc_offset_minutes)
        delta = t - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
        return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def parse_utc_offset(text: str) -> int:
    """Minutes from ``+02:00``, ``-0500``, ``+2`` or ``0``; ValueError otherwise."""
    m = re.fullmatch(r"([+-]?)(\d{1,2})(?::?(\d{2}))?", text.strip())
    if not m:
        raise ValueError(f"UTC offset {text!r} is not like +02:00, -0500 or +2")
    minutes = int(m.group(2)) * 60 + int(m.group(3) or 0)
    return -minutes if m.group(1) == "-" else minutes


def _offset_secs(text: str, tz: str) -> int:
    sign = 1 if tz[0] == "+" else -1
    oh, om = int(tz[1:3]), int(tz[-2:])
    if oh > 23 or om > 59:
        raise ValueError(f"timestamp {text!r}: offset {tz} is not a valid UTC offset")
    return sign * (oh * 3600 + om * 60)


def parse_timestamp_ns(text: str, utc_offset_minutes: int = 0) -> int:
    """UTC nanoseconds from a day-first, MetaTrader year-first or ISO 8601 timestamp; a time
    without an offset of its own is at ``utc_offset_minutes`` from UTC. ValueError if none."""
    offset = utc_offset_minutes * 60
    if m := _DAY_FIRST.match(text):
        d, mo, y, hh, mm, ss, frac, tz = m.groups()
    elif m := _YEAR_DOTTED.match(text):
        y, mo, d, hh, mm, ss, frac = m.groups()
        tz = None
    elif m := _ISO.match(text):
        y, mo, d, hh, mm, ss, frac, tz = m.groups()
        tz = "+0000" if tz == "Z" else tz
    else:
        hint = (
            " (D/M or M/D? give the format: stairway data import --date-format '%m/%d/%Y %H:%M')"
            if _SLASHED.match(text)
            else ""
        )
        raise ValueError(
            f"timestamp {text!r} is neither DD.MM.YYYY HH:MM:SS, YYYY.MM.DD HH:MM nor ISO 8601 "
            f"(YYYY-MM-DD HH:MM:SS, optionally with Z or an offset like +02:00){hint}"
        )
    if tz:
        offset = _offset_secs(text, tz)
    y, mo, d, hh, mm = int(y), int(mo), int(d), int(hh or 0), int(mm or 0)
    if not (1 <= mo <= 12 and 1 <= d <= calendar.monthrange(y, mo)[1] and hh < 24 and mm < 60):
        raise ValueError(f"timestamp {text!r} is not a valid date and time")
    secs = calendar.timegm((y, mo, d, hh, mm, int(ss or 0), 0, 0, 0)) - offset
    nanos = int((frac or "0").ljust(9, "0"))
    return secs * 1_000_000_000 + nanos


def header_name(h: str) -> str:
    """A header cell as the loader compares it: case, spaces, a BOM and MT5's <ANGLES> dropped."""
    return h.strip().lstrip("\ufeff").strip("<>").strip().lower()


def delimiter_of(first_line: str) -> str:
    """``,`` unless the first line has none and has tabs (MT5) or semicolons."""
    if "," in first_line:
        return ","
    if "\t" in first_line:
        return "\t"
    return ";" if ";" in first_line else ","


def is_mt4_row(fields: list[str]) -> bool:
    """A first line that is data, not a header: MT4's headerless history export."""
    return len(fields) == len(MT4_COLUMNS) and bool(_MT4_ROW.match(fields[0].strip()))
