"""Warm start: fill an instrument's feature and regime buffers from history before the first
quote, so a restarted daemon decides at its first bar close instead of a window of bars later.

Sources, in order: the broker's history (OANDA candles, IB historical bars, through the
adapter: paged and rate-limited there), then the bars this daemon built and stored in earlier
runs of the same kind (a replay never warms a live run, nor the reverse). Earlier sources win
where they overlap. Every source's bars are checked (time order, the bar grid, finite prices,
high/low around open and close); a source that fails is dropped whole with one line naming it
and the bar, never used. Only complete bars strictly before the bar in progress are used: the
bar in progress at a restart is built from the quotes after it (a partial bar).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import numpy as np
import structlog

from stairway.core.bar_files import merge_bars
from stairway.core.regime import RegimeDetector
from stairway.core.types import BAR_DTYPE, NS_PER_DAY
from stairway.daemon.aio import within

log = structlog.get_logger("warm_start")

Source = tuple[str, Callable[[int, int], Awaitable[np.ndarray]]]


class BadHistory(ValueError):
    """History bars that must not be used (named source, bar and reason)."""


def bars_needed(window: int, regime: RegimeDetector | None) -> int:
    """Bars that make the buffers what an uninterrupted run would hold: the features' window,
    and the regime's z-score window plus its longest lookback."""
    need = window
    if regime is not None:
        need = max(need, regime.window + max(regime.k, regime.n_div) + 1)
    return need


def lookback_ns(need: int, period_minutes: int, max_days: int) -> int:
    """Calendar time that holds ``need`` bars on a five-day week (plus holidays), capped."""
    days = math.ceil(need * period_minutes / 1440 * 7 / 5) + 4
    return min(days, max_days) * NS_PER_DAY


def check_bars(bars: np.ndarray, period_ns: int, where: str) -> None:
    """Raise BadHistory naming ``where`` and the first bad bar."""
    if bars.dtype != BAR_DTYPE:
        raise BadHistory(f"{where}: bars of dtype {bars.dtype}, expected {BAR_DTYPE}")
    ts = bars["ts_ns"]
    o, h, lo, c = (bars[k] for k in ("open", "high", "low", "close"))
    bad = (
        ~np.isfinite(o)
        | ~np.isfinite(h)
        | ~np.isfinite(lo)
        | ~np.isfinite(c)
        | (lo <= 0)
        | (h < np.maximum(o, c))
        | (lo > np.minimum(o, c))
        | (ts % period_ns != 0)
    )
    if len(ts) > 1:
        bad[1:] |= ts[1:] <= ts[:-1]
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise BadHistory(f"{where}: bar {k} (ts_ns {int(ts[k])}) {bars[k].tolist()} is not a usable bar")


@dataclass
class WarmStart:
    """What one instrument's warm start found."""

    bars: np.ndarray
    sources: dict[str, int] = field(default_factory=dict)  # source -> bars used from it
    refused: dict[str, str] = field(default_factory=dict)  # source -> why


async def gather(
    sources: list[Source], since_ns: int, until_ns: int, need: int, period_ns: int, timeout_secs: float = 60.0
) -> WarmStart:
    """The last ``need`` complete bars in [since, until) from the sources, earlier sources
    winning where they overlap; stops asking once the bars reach ``need`` and ``until``. A
    source that takes longer than ``timeout_secs`` counts as failed."""
    names: list[str] = []
    parts: list[np.ndarray] = []
    refused: dict[str, str] = {}
    bars, origin = merge_bars(parts)
    for name, fetch in sources:
        try:
            got = await within(fetch(since_ns, until_ns), timeout_secs)
            check_bars(got, period_ns, name)
        except Exception as e:  # a source that fails is skipped, never fatal and never half-used
            refused[name] = str(e) or repr(e)
            log.warning("warm_start_source_failed", source=name, error=refused[name])
            continue
        names.append(name)
        parts.append(got[(got["ts_ns"] >= since_ns) & (got["ts_ns"] < until_ns)])
        bars, origin = merge_bars(parts)  # earlier sources win
        if len(bars) >= need and int(bars["ts_ns"][-1]) + period_ns >= until_ns:
            break
    bars, origin = bars[-need:], origin[-need:]
    used = {names[k]: int((origin == k).sum()) for k in range(len(names)) if (origin == k).any()}
    return WarmStart(bars, used, refused)


async def warm_slot(
    slot,
    sources: list[Source],
    until_ns: int,
    period_minutes: int,
    max_days: int,
    timeout_secs: float,
    live: bool = True,
) -> WarmStart:
    """Fill one slot (daemon.slot.Slot) from history ending before ``until_ns``'s bar; logs
    what it found (sources, bars, whether features and regime are warm)."""
    period_ns = period_minutes * 60 * 10**9
    until = until_ns - until_ns % period_ns  # the bar in progress is never taken from history
    need = bars_needed(slot.spec.window, slot.watch.regime)
    since = until - lookback_ns(need, period_minutes, max_days)
    got = await gather(sources, since, until, need, period_ns, timeout_secs)
    prefill(slot, got.bars)
    fields = {
        "instrument": slot.instrument,
        "bars": len(got.bars),
        "needed": need,
        "sources": got.sources,
        "features_warm": slot.features.warm,
        "regime_warm": bool(slot.watch.regime.warm) if slot.watch.regime is not None else None,
        "last_bar_ts_ns": int(got.bars["ts_ns"][-1]) if len(got.bars) else None,
        "refused": got.refused or None,
    }
    if slot.features.warm:
        log.info("warm_start", **fields)
    else:  # a replay warms up on its own file's bars: not worth a warning there
        (log.warning if live else log.info)(
            "warm_start_short", **fields, reason="not enough history: decisions wait for the features to warm up"
        )
    return got


def prefill(slot, bars: np.ndarray) -> None:
    """Warm a slot's (daemon.slot.Slot) feature and regime buffers from history (BAR_DTYPE
    rows older than any quote it will see): no rows, no orders, no performance, as if those
    bars had been built there. The next bar the slot builds must be newer."""
    features, watch = slot.features, slot.watch
    for ts, o, h, lo, cl, _ in bars.tolist():
        features.push(ts, o, h, lo, cl)
        watch.on_close(cl)
    if len(bars):
        slot.counters.history_bars += len(bars)
