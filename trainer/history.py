"""History prepared for training exactly as the daemon would see it live.

Bars from a file are turned into bar-derived quote ticks (core.bar_ticks) and rebuilt by
core's BarBuilder, so the trainer's bars, closing quotes and accepted-quote mask are the
ones the daemon's slot produces when it replays the same file.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import structlog

from stairway.core.bar_builder import S_LAST_ASK, S_LAST_BID, BarBuilder
from stairway.core.bar_files import load_period_bars, select_warm_range
from stairway.core.bar_ticks import bars_to_ticks
from stairway.core.calendar import open_mask
from stairway.core.config import MarketConfig, fx_pip_size
from stairway.core.errors import ConfigError
from stairway.core.features import FeatureSpec, batch_market_features
from stairway.core.regime import RegimeDetector


@dataclass(frozen=True)
class MarketHistory:
    ticks: np.ndarray
    accepted: np.ndarray
    bars: np.ndarray
    close_idx: np.ndarray  # index of the quote that closed each bar; len(ticks) for the last
    last_bid: np.ndarray
    last_ask: np.ndarray
    features: np.ndarray  # (n_bars, n_market), NaN before the warm-up
    regime: np.ndarray  # composite regime after each bar (training shaping only, never observed)
    can_open: np.ndarray  # market open at the bar's closing quote (core.calendar); else reduce-only

    def __len__(self) -> int:
        return len(self.bars)


def _rebuild(raw_bars: np.ndarray, cfg: MarketConfig, pip_size: float):
    """Bar-derived ticks of ``raw_bars`` through the daemon's BarBuilder: (ticks, closed, tail, builder)."""
    ticks = bars_to_ticks(raw_bars, cfg.bars.period_ns, cfg.data.bars_side, cfg.data.modelled_spread_pips * pip_size)
    builder = BarBuilder(cfg.bars.period_ns, cfg.bars.price, cfg.bars.max_jump, cfg.bars.jump_confirm_quotes)
    closed = builder.push(ticks)
    return ticks, closed, builder.flush(), builder


@functools.lru_cache(maxsize=16)
def _cross_file_bars(path: str, stamp: tuple[int, int], symbol: str, cfg_json: str) -> np.ndarray:
    cfg = MarketConfig.model_validate_json(cfg_json)
    raw, report = load_period_bars(path, cfg.bars.period_minutes, cfg.bars.max_jump, symbol)
    log.info("cross_bar_file_loaded", **report.log_fields())
    pip = fx_pip_size(symbol) if cfg.instrument.market == "fx" and "_" in symbol else cfg.instrument.pip_size
    _, closed, tail, _ = _rebuild(raw, cfg, pip)
    bars = np.concatenate([closed.bars, tail])
    bars.flags.writeable = False
    return bars


def cross_bars(cfg: MarketConfig, spec: FeatureSpec, own: np.ndarray) -> dict[str, np.ndarray] | None:
    """Each cross instrument's bars as the daemon builds them (core.cross_features): its file
    in data.cross_bars_csv, rebuilt through the BarBuilder; ``own`` (this history's bars) for
    the instrument itself. The whole file: the join reads only bars ending by each bar's end."""
    if not spec.cross:
        return None
    out = {}
    for sym in spec.cross:
        if sym == cfg.instrument.symbol:
            out[sym] = own
            continue
        path = cfg.data.cross_bars_csv.get(sym)
        if path is None:
            raise ConfigError(
                f"features.cross_instruments lists {sym}: data.cross_bars_csv has no bar file for it "
                f"(or train a portfolio with --instrument {sym}=BARS_CSV)"
            )
        try:
            st = Path(path).stat()
        except OSError as e:
            raise ConfigError(f"data.cross_bars_csv.{sym} = {path}: {e.strerror or e}") from None
        how = MarketConfig(instrument=cfg.instrument, bars=cfg.bars, data=cfg.data).model_dump_json()
        out[sym] = _cross_file_bars(str(path), (st.st_mtime_ns, st.st_size), sym, how)
    return out


def history_from_bars(raw_bars: np.ndarray, cfg: MarketConfig, spec: FeatureSpec) -> MarketHistory:
    ticks, closed, tail, builder = _rebuild(raw_bars, cfg, cfg.instrument.pip_size)
    bars = np.concatenate([closed.bars, tail])
    close_idx = np.concatenate([closed.close_idx, np.full(len(tail), len(ticks), dtype=np.int64)])
    s = builder.state
    last_bid = np.concatenate([closed.last_bid, np.full(len(tail), s[S_LAST_BID])])
    last_ask = np.concatenate([closed.last_ask, np.full(len(tail), s[S_LAST_ASK])])
    regime = RegimeDetector(cfg.regime, cfg.bars).series(bars["close"])
    closing_ts = np.where(close_idx < len(ticks), ticks["ts_ns"][np.minimum(close_idx, len(ticks) - 1)], 0)
    can_open = open_mask(closing_ts, cfg.instrument.market, cfg.instrument.holidays) & (close_idx < len(ticks))
    return MarketHistory(
        ticks,
        closed.accepted,
        bars,
        close_idx,
        last_bid,
        last_ask,
        batch_market_features(bars, spec, cross_bars(cfg, spec, bars)),
        regime,
        can_open,
    )


log = structlog.get_logger("trainer")


def load_history(cfg: MarketConfig, spec: FeatureSpec, start_ns: int, end_ns: int) -> MarketHistory:
    raw, report = load_period_bars(cfg.data.bars_csv, cfg.bars.period_minutes, cfg.bars.max_jump, cfg.instrument.symbol)
    log.info("bar_file_loaded", **report.log_fields())
    sel = select_warm_range(cfg.data.bars_csv, raw, start_ns, end_ns, spec.window, "the range")
    return history_from_bars(sel, cfg, spec)


def load_window(
    cfg: MarketConfig, spec: FeatureSpec, start_ns: int, end_ns: int, raw: np.ndarray | None = None
) -> tuple[MarketHistory, int]:
    """History for deciding on the bars of [start, end), with up to a warm-up's worth of the
    file's earlier bars in front (the past, as a running daemon would have it), and the index
    of the first decision bar. Nothing at or after ``end`` is read."""
    if raw is None:
        raw, _ = load_period_bars(cfg.data.bars_csv, cfg.bars.period_minutes, cfg.bars.max_jump, cfg.instrument.symbol)
    lo = int(np.searchsorted(raw["ts_ns"], start_ns))
    warm = raw[max(0, lo - (spec.window - 1)) : lo]
    sel = select_warm_range(cfg.data.bars_csv, raw, start_ns, end_ns, 0, "the window")
    h = history_from_bars(np.concatenate([warm, sel]), cfg, spec)
    first = max(int(np.searchsorted(h.bars["ts_ns"], start_ns)), spec.window - 1)
    return h, first
