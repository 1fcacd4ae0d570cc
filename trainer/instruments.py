"""Training a portfolio: one trainer config per instrument.

``--instrument SYMBOL=BARS_CSV`` (repeatable) turns one trainer config into one per
instrument: the instrument (its pip size from the symbol), its own bar file, and its own
models directory (``models_dir/<SYMBOL>``: current, gold, previous, where a portfolio daemon
looks) and reports directory. Everything else (features, costs, gates, walk-forward) is
shared, and every instrument passes its own gates: a model is published for an instrument
only when that instrument's candidate passes. The gate database is shared (it is keyed by
checkpoint hash).
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import ValidationError

from stairway.core.config import format_validation_error, fx_pip_size
from stairway.core.errors import ConfigError
from stairway.trainer.config import TrainerConfig

_SPEC = re.compile(r"^([A-Z0-9][A-Z0-9._-]{0,29})=(.+)$")


def parse_instrument(spec: str) -> tuple[str, Path]:
    m = _SPEC.match(spec)
    if m is None:
        raise ConfigError(f"--instrument {spec!r}: expected SYMBOL=BARS_CSV, e.g. GBP_USD=data/FOREX_GBPUSD_1H_ASK.csv")
    return m.group(1), Path(m.group(2))


def for_instrument(
    cfg: TrainerConfig, symbol: str, bars_csv: Path, others: dict[str, Path] | None = None
) -> TrainerConfig:
    """``cfg`` for one instrument of a portfolio (validated as a whole: the bar file must name
    the pair, the symbol must be one of its market's). ``others``: the portfolio's other bar
    files, the cross-instrument features' bars where data.cross_bars_csv does not name one."""
    raw = cfg.model_dump()
    cross = {s: p for s, p in (others or {}).items() if s != symbol and s in cfg.features.cross_instruments}
    raw["data"]["cross_bars_csv"] = {**cross, **cfg.data.cross_bars_csv}
    inst = raw["instrument"]
    inst["symbol"] = symbol
    if inst["market"] == "fx" and "_" in symbol:
        inst["pip_size"] = fx_pip_size(symbol)
    raw["data"]["bars_csv"] = bars_csv
    raw["train"]["models_dir"] = cfg.train.models_dir / symbol
    raw["train"]["reports_dir"] = cfg.train.reports_dir / symbol
    try:
        return TrainerConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(format_validation_error(f"--instrument {symbol}={bars_csv}", e)) from None


def models_of(cfg: TrainerConfig, symbol: str) -> TrainerConfig:
    """``cfg`` for the model commands on one instrument of a portfolio: its models directory
    (``models_dir/<SYMBOL>``, which must exist) and its market (the pip size from the symbol)."""
    if not re.fullmatch(r"[A-Z0-9][A-Z0-9._-]{0,29}", symbol) or ".." in symbol:
        raise ConfigError(f"--instrument {symbol!r}: not an instrument symbol (e.g. GBP_USD)")
    root = cfg.train.models_dir
    if not (root / symbol).is_dir():
        here = sorted(p.name for p in root.iterdir() if (p / "registry").is_dir()) if root.is_dir() else []
        raise ConfigError(
            f"--instrument {symbol}: no {root / symbol} (instruments with models here: {', '.join(here) or 'none'})"
        )
    inst = cfg.instrument
    pip = fx_pip_size(symbol) if inst.market == "fx" and "_" in symbol else inst.pip_size
    return cfg.model_copy(
        update={
            "instrument": inst.model_copy(update={"symbol": symbol, "pip_size": pip}),
            "train": cfg.train.model_copy(update={"models_dir": root / symbol}),
        }
    )


def per_instrument(cfg: TrainerConfig, specs: list[str]) -> list[tuple[str, TrainerConfig]]:
    """(symbol, config) for each ``SYMBOL=BARS_CSV``; a symbol given twice or a missing bar
    file is refused before anything trains."""
    out: list[tuple[str, Path]] = []
    if cfg.train.data_store is not None:
        raise ConfigError(
            f"--instrument gives each instrument's bar file, but train.data_store = {cfg.train.data_store} "
            "gives the bars: import the files into the store (stairway data import FILE --instrument SYMBOL) "
            "or train without a data store"
        )
    for spec in specs:
        symbol, path = parse_instrument(spec)
        if symbol in [s for s, _ in out]:
            raise ConfigError(f"--instrument {symbol}: given more than once")
        if not path.is_file():
            raise ConfigError(f"--instrument {symbol}={path}: no such bar file")
        out.append((symbol, path))
    files = dict(out)
    return [(symbol, for_instrument(cfg, symbol, path, files)) for symbol, path in out]
