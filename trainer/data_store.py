"""The trainer's data store: every bar it may learn from, per instrument, from three sources,
read with the one loader (core.bar_files) and built with the one bar builder (core.bar_builder).

    <store>/<INSTRUMENT>/imported/<name>.csv   `stairway data import FILE`: any file load_bars reads
    <store>/<INSTRUMENT>/fetched/<from>_<to>.csv `stairway data fetch`: OANDA candles / IB historical bars
    <ticks_dir>/<INSTRUMENT>/<day>.csv.gz      the daemon's recorded quotes, built into bars here

Where sources overlap, recorded bars win over fetched ones and fetched over imported (what the
daemon saw is what it trades on). Only complete days of recordings are used: a day is complete
once it is over (UTC) as of the ``as_of`` date. ``materialize`` writes the merged bars as one CSV
(atomically) that the trainer reads in place of ``data.bars_csv``, so everything downstream
(training, validation, walk-forward, baselines, the shadow gate's fallback) sees the same bars.
Memory: recordings are read one day file at a time; only bars are kept.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import structlog

from stairway.core.bar_builder import BarBuilder
from stairway.core.bar_files import load_period_bars, merge_bars, write_bars_csv
from stairway.core.bar_formats import TimeFormat
from stairway.core.config import instrument_in_file_name
from stairway.core.errors import DataError
from stairway.core.tick_files import day_path, read_tick_file, recorded_days
from stairway.core.types import BAR_DTYPE, NS_PER_DAY

log = structlog.get_logger("data_store")
SOURCES = ("recorded", "fetched", "imported")  # precedence where they overlap
GAP_BARS = 4  # a weekday hole longer than this many bars is reported as a gap
_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass
class SourceSpan:
    source: str
    bars: int
    first: str | None
    last: str | None
    files: int
    gaps: list[str] = field(default_factory=list)  # weekday holes of more than GAP_BARS bars


@dataclass
class Merged:
    bars: np.ndarray
    used: dict[str, int]  # source -> bars taken from it
    spans: dict[str, SourceSpan]
    recorded_days: list[dt.date]  # the complete days the recordings gave
    origin: np.ndarray  # per bar: its source's index in SOURCES

    @property
    def last_recorded_day(self) -> dt.date | None:
        return self.recorded_days[-1] if self.recorded_days else None


def _iso(ts: int) -> str:
    return dt.datetime.fromtimestamp(ts / 1e9, dt.UTC).strftime("%Y-%m-%d %H:%M")


def _weekday_gaps(ts: np.ndarray, limit_ns: int) -> list[str]:
    """Holes longer than ``limit_ns`` that are not a weekend (Friday evening to Sunday evening)."""
    out: list[str] = []
    if len(ts) < 2:
        return out
    for i in np.flatnonzero(np.diff(ts) > limit_ns):
        a, b = int(ts[i]), int(ts[i + 1])
        wd_a, wd_b = (a // NS_PER_DAY + 3) % 7, (b // NS_PER_DAY + 3) % 7
        if wd_a in (4, 5) and wd_b in (5, 6, 0) and b - a <= 3 * NS_PER_DAY:
            continue
        out.append(f"{_iso(a)} .. {_iso(b)}")
    return out


class DataStore:
    def __init__(
        self,
        root: Path,
        ticks_dir: Path,
        period_minutes: int,
        price: str,
        max_jump: float = 0.1,
        jump_confirm: int = 3,
    ) -> None:
        self.root, self.ticks_dir = Path(root), Path(ticks_dir)
        self.period_minutes, self.price = period_minutes, price
        self.max_jump, self.jump_confirm = max_jump, jump_confirm
        self.gap_ns = GAP_BARS * period_minutes * 60 * 10**9

    def folder(self, instrument: str, source: str) -> Path:
        return self.root / instrument / source

    def instruments(self) -> list[str]:
        names = {p.name for p in self.root.iterdir() if p.is_dir()} if self.root.is_dir() else set()
        if self.ticks_dir.is_dir():
            names |= {p.name for p in self.ticks_dir.iterdir() if p.is_dir() and any(p.glob("*.csv.gz"))}
        return sorted(names)

    # -- writing ---------------------------------------------------------------------------
    def import_file(
        self, path: Path, instrument: str, side: str | None = None, times: TimeFormat | None = None
    ) -> tuple[Path, int]:
        """Copy a bar file into the store in the canonical layout, after the loader has read
        and checked it (period, prices, the instrument's rows of a multi-symbol file) and it
        has been checked to be this instrument's, at this store's quote side: the pair its
        name declares, its price level against the bars already stored, its side (``side``,
        else the one its name declares, else the store's). The side is recorded with it, and
        the bars are stored in UTC whatever ``times`` said the file's clock was."""
        path = Path(path)
        named = instrument_in_file_name(path)
        if named is not None and named != instrument:
            raise DataError(f"{path}: the file is named for {named}, not {instrument}: refused (wrong instrument?)")
        file_side = side or side_in_name(path)
        if file_side is not None and file_side != self.price:
            how = "given" if side else "named in the file name"
            raise DataError(
                f"{path}: {file_side} prices ({how}), but this store holds {self.price} bars (bars.price): refused"
            )
        bars, report = load_period_bars(path, self.period_minutes, self.max_jump, instrument, times)
        if not len(bars):
            raise DataError(f"{path}: no bars for {instrument}")
        out = self.folder(instrument, "imported") / f"{_SAFE.sub('_', path.name.split('.')[0])}.csv"
        why = level_mismatch(bars, self._reference_bars(instrument, exclude=out), self.max_jump)
        if why:
            raise DataError(f"{path}: {why}: not {instrument} at the store's level (wrong instrument or scale?)")
        replaced = out.exists()  # the same name imported again: the newer file replaces the older
        write_bars_csv(out, bars)
        _write_side(out, self.price, str(path))
        log.info(
            "data_imported", file=str(path), instrument=instrument, bars=len(bars), stored=str(out), replaced=replaced
        )
        return out, len(bars)

    def add_fetched(self, instrument: str, bars: np.ndarray, start: dt.date, end: dt.date) -> Path | None:
        """The fetched bars as one file; None and nothing written when there are none (a span
        the market was closed: a header-only file would make every later training run refuse
        the store)."""
        if len(bars) == 0:
            return None
        out = self.folder(instrument, "fetched") / f"{start.isoformat()}_{end.isoformat()}.csv"
        write_bars_csv(out, bars)
        _write_side(out, self.price, "broker history")
        return out

    def _reference_bars(self, instrument: str, exclude: Path) -> np.ndarray:
        """What the store already holds for ``instrument`` (files that do not read are left
        out: `data coverage` reports them)."""
        parts = []
        for source in ("fetched", "imported"):
            for p in self._files(instrument, source):
                if p != exclude:
                    try:
                        parts.append(self._read(p))
                    except DataError:
                        continue
        try:
            parts.append(self.recorded_bars(instrument, dt.date.max)[0])
        except (DataError, OSError):
            pass
        return merge_bars(parts)[0] if parts else np.zeros(0, dtype=BAR_DTYPE)

    # -- reading ---------------------------------------------------------------------------
    def _files(self, instrument: str, source: str) -> list[Path]:
        folder = self.folder(instrument, source)
        return sorted(folder.glob("*.csv")) if folder.is_dir() else []

    def _read(self, p: Path) -> np.ndarray:
        side = _read_side(p)
        if side is not None and side != self.price:
            raise DataError(f"{p}: stored as {side} bars, but bars.price is {self.price}: refused")
        return load_period_bars(p, self.period_minutes, self.max_jump)[0]

    def file_bars(self, instrument: str, source: str, errors: list[str] | None = None) -> tuple[np.ndarray, int]:
        """A file source's bars (later files win on overlap), and how many files. A file that
        does not read raises DataError, or, given ``errors``, is left out and named there."""
        files = self._files(instrument, source)
        parts = []
        for p in files:
            try:
                parts.append(self._read(p))
            except DataError as e:
                if errors is None:
                    raise
                errors.append(str(e))
        return merge_bars(parts[::-1])[0], len(files)

    def complete_days(self, instrument: str, as_of: dt.date) -> list[dt.date]:
        return [d for d in recorded_days(self.ticks_dir, instrument) if d < as_of]

    def recorded_bars(self, instrument: str, as_of: dt.date) -> tuple[np.ndarray, list[dt.date]]:
        """Bars built from the complete recorded days, one day file at a time, through one
        builder (a bar spanning midnight is whole); the last bar closes with its day."""
        days = self.complete_days(instrument, as_of)
        b = BarBuilder(self.period_minutes * 60 * 10**9, self.price, self.max_jump, self.jump_confirm)
        parts = []
        for d in days:
            ticks, rep = read_tick_file(day_path(self.ticks_dir, instrument, d))
            if rep.truncated_bytes:
                log.warning(
                    "recorded_day_truncated",
                    instrument=instrument,
                    day=d.isoformat(),
                    ticks=len(ticks),
                    lost_bytes=rep.truncated_bytes,
                )
            parts.append(b.push(ticks).bars)
        parts.append(b.flush())
        return np.concatenate(parts), days

    def merged(self, instrument: str, as_of: dt.date, errors: list[str] | None = None) -> Merged:
        rec, days = self.recorded_bars(instrument, as_of)
        fet, n_fet = self.file_bars(instrument, "fetched", errors)
        imp, n_imp = self.file_bars(instrument, "imported", errors)
        by_source = {"recorded": (rec, len(days)), "fetched": (fet, n_fet), "imported": (imp, n_imp)}
        bars, origin = merge_bars([rec, fet, imp])  # SOURCES' order
        used = {s: int((origin == k).sum()) for k, s in enumerate(SOURCES)}  # the bars each source gave
        spans = {
            s: SourceSpan(
                s,
                len(b),
                _iso(int(b["ts_ns"][0])) if len(b) else None,
                _iso(int(b["ts_ns"][-1])) if len(b) else None,
                n,
                _weekday_gaps(b["ts_ns"], self.gap_ns),
            )
            for s, (b, n) in by_source.items()
        }
        return Merged(bars, used, spans, days, origin)

    def coverage(self, instrument: str, as_of: dt.date) -> dict:
        """Per source and merged: bars, span, files (or recorded days), weekday gaps, and the
        bars each source gave to the merge (`stairway data coverage`)."""
        errors: list[str] = []
        m = self.merged(instrument, as_of, errors)
        ts = m.bars["ts_ns"]
        return {
            "bad_files": errors,  # left out here; a training run refuses them
            "merged": {
                "bars": len(m.bars),
                "first": _iso(int(ts[0])) if len(ts) else None,
                "last": _iso(int(ts[-1])) if len(ts) else None,
                "gaps": _weekday_gaps(ts, self.gap_ns),
                "last_complete_recorded_day": str(m.last_recorded_day) if m.last_recorded_day else None,
            },
            "sources": {s: {**vars(span), "used": m.used[s]} for s, span in m.spans.items()},
        }

    def materialize(self, instrument: str, as_of: dt.date) -> tuple[Path, Merged]:
        m = self.merged(instrument, as_of)
        if not len(m.bars):
            raise DataError(
                f"data store {self.root}: no bars for {instrument} (import a file with `stairway data import`, "
                f"fetch with `stairway data fetch`, or let the daemon record into {self.ticks_dir})"
            )
        out = write_bars_csv(self.root / instrument / f"merged_{self.period_minutes}m.csv", m.bars)
        return out, m


def side_in_name(path: Path) -> str | None:
    """The quote side a file's name declares (FOREX_EURUSD_1H_ASK.csv -> ask), if exactly one."""
    tokens = set(re.split(r"[^A-Z]+", Path(path).name.upper()))
    sides = [s for s in ("BID", "ASK", "MID") if s in tokens]
    return sides[0].lower() if len(sides) == 1 else None


def _side_file(stored: Path) -> Path:
    return stored.with_name(stored.name + ".side")


def _write_side(stored: Path, side: str, origin: str) -> None:
    """The quote side of a stored file, beside it (``<name>.csv.side``: side, then where from)."""
    tmp = _side_file(stored).with_suffix(".tmp")
    tmp.write_text(f"{side}\n{origin}\n")
    tmp.replace(_side_file(stored))


def _read_side(stored: Path) -> str | None:
    """A stored file's recorded side (None for a file stored before sides were recorded)."""
    try:
        return _side_file(stored).read_text().split("\n", 1)[0].strip() or None
    except FileNotFoundError:
        return None
    except OSError as e:
        raise DataError(f"{_side_file(stored)}: cannot read the stored file's side: {e.strerror or e}") from None


LEVEL_TOLERANCE = 0.02  # median relative difference of closes at common times; bid vs ask is ~0.01 %
NEAR_NS = 7 * NS_PER_DAY  # bars this close in time are compared when no time is common


def level_mismatch(new: np.ndarray, ref: np.ndarray, max_jump: float) -> str:
    """Why ``new`` cannot be the same instrument as ``ref`` at the same scale ("" when it can):
    at their common bar times, closes differing by a median of more than 2 %; with none in
    common, the nearest bars (within 7 days) further apart than ``max_jump``."""
    if not len(new) or not len(ref):
        return ""
    _, i, j = np.intersect1d(new["ts_ns"], ref["ts_ns"], return_indices=True)
    if len(i) >= 10:
        rel = float(np.median(np.abs(new["close"][i] / ref["close"][j] - 1.0)))
        if rel > LEVEL_TOLERANCE:
            return (
                f"at {len(i)} bar times the store already holds, its closes differ from the store's by a median "
                f"{100 * rel:.1f} % (e.g. {new['close'][i[0]]:g} vs {ref['close'][j[0]]:g} at {_iso(int(new['ts_ns'][i[0]]))})"
            )
        return ""
    for k in (0, len(new) - 1):
        t = int(new["ts_ns"][k])
        m = int(np.argmin(np.abs(ref["ts_ns"] - t)))
        if abs(int(ref["ts_ns"][m]) - t) <= NEAR_NS:
            a, b = float(new["close"][k]), float(ref["close"][m])
            if abs(a / b - 1.0) > max_jump:
                return (
                    f"its close {a:g} at {_iso(t)} is {100 * (a / b - 1):+.1f} % from the store's {b:g} at "
                    f"{_iso(int(ref['ts_ns'][m]))}"
                )
    return ""


def resolve_training_data(cfg):
    """A trainer config (trainer.config.TrainerConfig) that reads the data store: the merged
    bars as ``data.bars_csv``, the rolling window as ``train.range`` (ending where the shadow
    days, the last ``gates.shadow_days`` complete recorded days, begin; without recordings, at
    the store's last day: the shadow gate then takes the range's last days), and the shadow
    gate limited to complete days. Returns (config, a description of the data for the run's
    record). A config without a data store comes back unchanged."""
    from stairway.core.config import DateRange

    t = cfg.train
    if t.data_store is None:
        return cfg, ""
    inst = cfg.instrument.symbol
    as_of = t.as_of or dt.datetime.now(dt.UTC).date()
    store = DataStore(
        t.data_store, cfg.gates.ticks_dir, cfg.bars.period_minutes, cfg.bars.price, cfg.bars.max_jump,
        cfg.bars.jump_confirm_quotes,
    )  # fmt: skip
    path, m = store.materialize(inst, as_of)
    update: dict = {"data": cfg.data.model_copy(update={"bars_csv": path})}
    train = {"data_store": None}
    days = m.recorded_days
    if t.rolling_days is not None:
        if days:
            end = days[-cfg.gates.shadow_days :][0]
            update["gates"] = cfg.gates.model_copy(update={"last_day": days[-1]})
        else:
            last = dt.datetime.fromtimestamp(int(m.bars["ts_ns"][-1]) / 1e9, dt.UTC).date()
            end = last + dt.timedelta(days=1)
        train |= {"range": DateRange(start=end - dt.timedelta(days=t.rolling_days), end=end), "rolling_days": None}
    elif days:
        update["gates"] = cfg.gates.model_copy(update={"last_day": days[-1]})
    update["train"] = t.model_copy(update=train)
    out = cfg.model_copy(update=update)
    assert out.train.range is not None  # fixed, or the rolling window just set
    lo, hi = out.train.range.ns()
    inside = m.origin[(m.bars["ts_ns"] >= lo) & (m.bars["ts_ns"] < hi)]
    used = ", ".join(f"{s} {int((inside == k).sum())}" for k, s in enumerate(SOURCES))
    desc = (
        f"data store {t.data_store} as of {as_of}: bars in the range by source: {used}; "
        f"last complete recorded day {m.last_recorded_day}"
    )
    log.info("training_data", instrument=inst, as_of=as_of.isoformat(), merged=str(path), bars=m.used,
             range=f"{out.train.range.start}..{out.train.range.end}", last_recorded_day=str(m.last_recorded_day))  # fmt: skip
    return out, desc
