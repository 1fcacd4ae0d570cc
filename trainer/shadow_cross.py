"""The shadow gate of a model with cross-instrument features (core.cross_features): the other
instruments' quotes over the same days, so the daemon's slots build their bars as they would
live. Recorded ticks when the gate replays recordings (a missing day is named), else the
bar-derived ticks of data.cross_bars_csv over the same hours."""

from __future__ import annotations

import numpy as np

from stairway.core.bar_ticks import bars_to_ticks
from stairway.core.config import MarketConfig, fx_pip_size
from stairway.core.errors import DataError
from stairway.core.features import FeatureSpec
from stairway.core.tick_files import day_path, read_tick_file
from stairway.core.types import NS_PER_DAY
from stairway.trainer.config import GateConfig


def cross_quotes(
    cfg: MarketConfig, spec: FeatureSpec, gates: GateConfig, ticks: np.ndarray, source: str
) -> dict[str, np.ndarray]:
    """symbol -> quotes over ``ticks``' span, for every cross instrument but this one."""
    import datetime as dt

    from stairway.trainer.history import cross_bars

    others = [s for s in spec.cross if s != cfg.instrument.symbol]
    if not others or not len(ticks):
        return {}
    lo, hi = int(ticks["ts_ns"][0]), int(ticks["ts_ns"][-1])
    out = {}
    if source == "recorded ticks":
        days = range(lo // NS_PER_DAY, hi // NS_PER_DAY + 1)
        for s in others:
            parts = []
            for d in days:
                path = day_path(gates.ticks_dir, s, dt.date(1970, 1, 1) + dt.timedelta(days=d))
                if not path.exists():
                    raise DataError(f"{path}: the shadow gate needs {s}'s recorded ticks (a cross instrument)")
                parts.append(read_tick_file(path)[0])
            out[s] = np.concatenate(parts)
        return out
    bars = cross_bars(cfg, spec, np.empty(0))
    assert bars is not None
    period = cfg.bars.period_ns
    for s in others:
        b = bars[s]
        b = b[(b["ts_ns"] >= lo - lo % period) & (b["ts_ns"] <= hi)]
        pip = fx_pip_size(s) if cfg.instrument.market == "fx" and "_" in s else cfg.instrument.pip_size
        out[s] = bars_to_ticks(b, period, cfg.data.bars_side, cfg.data.modelled_spread_pips * pip)
    return out
