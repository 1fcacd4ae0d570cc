"""Configuration models shared by the daemon and the trainer, and the TOML loader.

Every model forbids unknown keys. Values are given in time units (minutes, days) and
converted to bars with the bar period, so one config works for 1-minute and 1-hour bars.
Environment variables ``STAIRWAY_<SECTION>__<KEY>=value`` override file values (JSON
literals are parsed, anything else is taken as a string). Variables naming a section of the
other program (daemon or trainer) are ignored (one host environment configures both); a
section neither has, or an unknown key inside a known section, is an error. Booleans are
``true``/``false`` only: "no", 0 and the like are refused, not coerced.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, field_validator, model_validator

from stairway.core.bar_builder import BarBuilder
from stairway.core.calendar import Calendar
from stairway.core.errors import ConfigError

ENV_PREFIX = "STAIRWAY_"
CONFIG_ENV = "STAIRWAY_CONFIG"  # the config file a command reads when --config is not given (not an override)
ENV_DELIMITER = "__"
# Every top-level section of the daemon's and the trainer's configs (a test keeps this equal to
# the union of DaemonConfig's and TrainerConfig's fields; core cannot import either).
ALL_SECTIONS = frozenset(
    {
        "account",
        "alerts",
        "bars",
        "bot",
        "broker",
        "cycles",
        "data",
        "execution",
        "features",
        "gates",
        "guards",
        "instrument",
        "muzero",
        "portfolio",
        "ppo",
        "regime",
        "replay",
        "risk",
        "service",
        "shaping",
        "train",
    }
)

# Pip size by quote currency (FX) and by base for metals; everything else quoted in 1e-4.
_PIP_BY_QUOTE = {"JPY": 0.01, "HUF": 0.01}
_PIP_BY_BASE = {"XAU": 0.01, "XPT": 0.01, "XPD": 0.01, "XAG": 0.0001}
_FX_SYMBOL = re.compile(r"^[A-Z]{3}_[A-Z]{3}$")
_EQUITY_SYMBOL = re.compile(r"^[A-Z][A-Z0-9.]{0,9}$")
_ANY_SYMBOL = re.compile(r"^[A-Z0-9][A-Z0-9._-]{0,29}$")


def fx_pip_size(symbol: str) -> float:
    base, quote = symbol.split("_")
    return _PIP_BY_BASE.get(base, _PIP_BY_QUOTE.get(quote, 0.0001))


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InstrumentConfig(Strict):
    symbol: str = Field("EUR_USD", description="Broker symbol: BASE_QUOTE for fx (EUR_USD), a ticker for equities.")
    pip_size: float = Field(0.0001, gt=0, description="Price units per pip (fx: 0.01 for JPY quotes, else 0.0001).")
    lot_units: float = Field(100_000, gt=0, description="Units in one lot (position sizes are in lots).")
    market: Literal["fx", "us_equity", "always"] = Field("fx", description="Trading-hours calendar (core.calendar).")
    holidays: tuple[dt.date, ...] = Field((), description="Closed all day (exchange local date).")

    @model_validator(mode="after")
    def _check(self) -> InstrumentConfig:
        pattern = {"fx": _FX_SYMBOL, "us_equity": _EQUITY_SYMBOL}.get(self.market, _ANY_SYMBOL)
        if not pattern.match(self.symbol):
            raise ValueError(
                f"symbol = {self.symbol!r} is not a {self.market} symbol "
                f"(expected {'BASE_QUOTE, e.g. EUR_USD' if self.market == 'fx' else pattern.pattern})"
            )
        if self.market == "fx" and abs(self.pip_size / fx_pip_size(self.symbol) - 1.0) > 1e-9:
            raise ValueError(
                f"pip_size = {self.pip_size:g} does not match {self.symbol} "
                f"(a pip of {self.symbol} is {fx_pip_size(self.symbol):g})"
            )
        return self

    def calendar(self) -> Calendar:
        return Calendar(self.market, tuple(self.holidays))


class BarConfig(Strict):
    period_minutes: int = Field(1, gt=0, description="Bar period.")
    price: Literal["ask", "bid", "mid"] = Field(
        "mid", description="Quote side bars are built from; must match the history the model saw."
    )

    max_jump_pct: float = Field(
        10.0,
        gt=0,
        le=1000,
        description="A quote whose mid moves more than this from the last accepted one, or a "
        "bar-file price this far from the previous close, is implausible: the quote is rejected (and counted) until "
        "jump_confirm_quotes in a row confirm the new level; the bar file is refused with its line.",
    )
    jump_confirm_quotes: int = Field(3, ge=2, description="Agreeing quotes that make a jump a real move.")

    @property
    def period_ns(self) -> int:
        return self.period_minutes * 60_000_000_000

    @property
    def max_jump(self) -> float:
        return self.max_jump_pct / 100.0

    def builder(self) -> BarBuilder:
        """A bar builder of these settings (one per instrument: it keeps the bar in progress)."""
        return BarBuilder(self.period_ns, self.price, self.max_jump, self.jump_confirm_quotes)

    def bars(self, minutes: int, field: str) -> int:
        """Convert a duration to a whole number of bars, or explain why it cannot be."""
        if minutes % self.period_minutes:
            raise ConfigError(f"{field} = {minutes} minutes is not a whole number of {self.period_minutes}-minute bars")
        return minutes // self.period_minutes


class FeatureConfig(Strict):
    """Market-feature windows, in minutes. See core.features for the definitions."""

    return_lags_minutes: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
    vol_window_minutes: int = Field(30, gt=0)
    short_window_minutes: int = Field(12, gt=0)
    long_window_minutes: int = Field(48, gt=0)
    rsi_window_minutes: int = Field(14, gt=0)
    include: tuple[str, ...] | None = Field(
        None, description="Market features to use, by name (core.features); default: all of them."
    )
    plugins: tuple[str, ...] = Field(
        (), description="Feature plug-in files (.py) or modules to import; they register features by name."
    )
    extra: tuple[str, ...] = Field(
        (), description="Registered features to add (built-in families: mtf, tod_harmonics; or a plug-in's)."
    )
    params: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Per extra feature, its parameters: [features.params.<name>]."
    )
    cross_instruments: tuple[str, ...] = Field(
        (),
        description="Instruments whose recent returns every policy sees, aligned at bar closes (core.cross_features); "
        "the daemon needs each as an instrument of its portfolio, the trainer its bars (data.cross_bars_csv).",
    )
    cross_lags_minutes: tuple[int, ...] | None = Field(
        None, description="Return lags of the cross-instrument features; default: the first three return lags."
    )

    @field_validator("plugins")
    @classmethod
    def _absolute(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        """Plug-in files are made absolute by load_config (against the config's root), so a Ray
        actor (another working directory) loads the same ones; here only their form is checked."""
        return tuple(v)

    @model_validator(mode="after")
    def _check(self) -> FeatureConfig:
        if not self.return_lags_minutes or min(self.return_lags_minutes) <= 0:
            raise ValueError("return_lags_minutes must be a non-empty list of positive minutes")
        if self.short_window_minutes >= self.long_window_minutes:
            raise ValueError("short_window_minutes must be shorter than long_window_minutes")
        if len(set(self.extra)) != len(self.extra):
            raise ValueError(f"extra = {list(self.extra)} lists a feature twice")
        bad = [s for s in self.cross_instruments if not _ANY_SYMBOL.match(s)]
        if bad or len(set(self.cross_instruments)) != len(self.cross_instruments):
            raise ValueError(f"cross_instruments = {list(self.cross_instruments)}: not broker symbols, or a duplicate")
        lags = self.cross_lags_minutes
        if lags is not None and (not lags or min(lags) <= 0 or len(set(lags)) != len(lags)):
            raise ValueError(f"cross_lags_minutes = {list(lags)}: must be distinct positive minutes")
        return self

    @property
    def cross_lags(self) -> tuple[int, ...]:
        return self.cross_lags_minutes or self.return_lags_minutes[:3]


class ExecutionConfig(Strict):
    """Costs and fills. Used by the trainer's environment and by the paper broker alike."""

    commission_pips: float = Field(0.2, ge=0, description="Commission per side, in pips per unit.")
    slippage_pips: float = Field(0.1, ge=0, description="Adverse slippage per fill, in pips.")
    latency_ms: float = Field(250.0, ge=0, description="Decision-to-exchange latency.")
    liquidity_lots_per_quote: float = Field(5.0, gt=0, description="Most lots one quote can fill.")
    max_position_lots: float = Field(1.0, gt=0, description="Largest absolute position.")
    trade_lots: float = Field(1.0, gt=0, description="Size of a BUY/SELL target position.")
    financing_long_pct_per_year: float = Field(
        0.0,
        ge=-100,
        le=100,
        description="Holding cost of a long position, % of its notional a year (negative: paid to you).",
    )
    financing_short_pct_per_year: float = Field(
        0.0,
        ge=-100,
        le=100,
        description="Holding cost of a short position, % of its notional a year (negative: paid to you).",
    )
    financing_roll_hour_utc: float = Field(
        21.0, ge=0, lt=24, description="When the daily financing is charged (OANDA: 17:00 New York, 21:00/22:00 UTC)."
    )
    financing_triple_weekday: Literal["monday", "tuesday", "wednesday", "thursday", "friday"] = Field(
        "wednesday", description="The weekday whose roll also charges the weekend (3 days); weekend rolls charge none."
    )
    stop_pips: float | None = Field(
        None,
        gt=0,
        description="A protective stop this many pips from the decision's quote (below its bid for a long, above "
        "its ask for a short), armed by each opening fill; simulated by the env and the paper broker alike.",
    )
    stop_atr_multiple: float | None = Field(
        None,
        gt=0,
        description="Instead of stop_pips: the stop this many average true ranges (of the last stop_atr_bars "
        "closed bars) from the decision's quote.",
    )
    stop_atr_bars: int = Field(24, ge=1, le=1000, description="Bars the average true range of stop_atr_multiple spans.")
    stop_max_loss: float | None = Field(
        None,
        gt=0,
        description="Caps the stop's distance: at most this loss (account currency) per position if the stop fills "
        "at its price.",
    )
    stop_trailing: StrictBool = Field(
        False,
        description="The protective stop trails the price by its distance (a long's follows the bid up, a short's "
        "the ask down), armed at the fill quote; OANDA trailingStopLossOnFill, the paper broker and the env alike. "
        "Not at Interactive Brokers.",
    )
    risk_per_trade_pct: float | None = Field(
        None,
        gt=0,
        le=10,
        description="Size each entry to lose this % of the balance at its stop (capped by max_position_lots) "
        "instead of trading trade_lots; needs a stop.",
    )
    safe_f_sizing: StrictBool = Field(
        False,
        description="Scale risk_per_trade_pct by the model's safe-f (the trainer's Monte Carlo of its selection-"
        "window trades: the largest fraction whose 95th-percentile drawdown over two years stays within "
        "gates.max_dd95_pct; at most 1); needs risk_per_trade_pct. A model without a safe-f is refused.",
    )
    price_bound_pips: float | None = Field(
        None,
        gt=0,
        description="A decision's market order fills no worse than the decision's quote (the bar's last ask to buy, "
        "bid to sell) by this many pips (OANDA priceBound, IB a marketable limit); none: unbounded.",
    )

    @model_validator(mode="after")
    def _check(self) -> ExecutionConfig:
        if self.trade_lots > self.max_position_lots:
            raise ValueError("trade_lots must not exceed max_position_lots")
        if self.stop_pips is not None and self.stop_atr_multiple is not None:
            raise ValueError("stop_pips and stop_atr_multiple: set one (a fixed stop, or one from the range)")
        if (self.stop_max_loss is not None or self.risk_per_trade_pct is not None) and not self.stops:
            field = "stop_max_loss" if self.stop_max_loss is not None else "risk_per_trade_pct"
            raise ValueError(f"{field} needs a stop: set stop_pips or stop_atr_multiple")
        if self.stop_trailing and not self.stops:
            raise ValueError("stop_trailing needs a stop: set stop_pips or stop_atr_multiple")
        if self.safe_f_sizing and self.risk_per_trade_pct is None:
            raise ValueError("safe_f_sizing scales risk_per_trade_pct: set it too")
        return self

    @property
    def stops(self) -> bool:
        """Whether entries carry a protective stop."""
        return self.stop_pips is not None or self.stop_atr_multiple is not None


class AccountConfig(Strict):
    initial_equity: float = Field(100_000.0, gt=0, description="Account equity in quote currency.")


class DataConfig(Strict):
    """Historical bars, and how bar-derived quote ticks are made from them."""

    bars_csv: Path = Field(Path("data/FOREX_EURUSD_1H_ASK.csv"))
    bars_side: Literal["ask", "bid", "mid"] = Field("ask", description="Which side of the quote the file's prices are.")
    modelled_spread_pips: float = Field(1.0, ge=0, description="Spread used for bar-derived ticks.")
    cross_bars_csv: dict[str, Path] = Field(
        default_factory=dict,
        description="Bar files of features.cross_instruments, by symbol (the trainer's; an instrument's own file is "
        "data.bars_csv, and train run --instrument fills in the other instruments').",
    )


class RegimeConfig(Strict):
    """Regime detector (core.regime). Durations in days/minutes, converted with the bar period."""

    window_days: int = Field(30, gt=0, description="Rolling z-score window.")
    warmup_days: int = Field(5, gt=0, description="Neutral until this many days of signals.")
    momentum_minutes: int = Field(60, gt=0, description="Momentum lookback.")
    divergence_minutes: int = Field(240, gt=0, description="Moving average for divergence.")
    weights: tuple[float, float, float] = Field((0.4, 0.3, 0.3), description="Momentum, volatility, divergence.")

    @model_validator(mode="after")
    def _check(self) -> RegimeConfig:
        if self.warmup_days > self.window_days:
            raise ValueError(
                f"warmup_days ({self.warmup_days}) must not exceed window_days ({self.window_days}): "
                "the detector could never warm up"
            )
        return self


_CURRENCIES = frozenset(
    "USD EUR JPY GBP CHF AUD NZD CAD SEK NOK DKK HKD SGD CNH CNY MXN ZAR TRY PLN HUF CZK THB INR KRW TWD BRL "
    "RUB ILS SAR XAU XAG XPT XPD".split()
)


def instrument_in_file_name(path: Path) -> str | None:
    """The currency pair a data file's name declares (FOREX_EURUSD_1H_ASK.csv -> EUR_USD), if
    exactly one pair of known currency codes appears in it."""
    names = {
        f"{a}_{b}"
        for a, b in re.findall(r"(?<![A-Z])([A-Z]{3})_?([A-Z]{3})(?![A-Z])", path.name.upper())
        if a in _CURRENCIES and b in _CURRENCIES and a != b
    }
    return names.pop() if len(names) == 1 else None


class RiskConfig(Strict):
    """The daemon's risk limits. Shared: the trainer's environment applies the same tiers, caps
    and halts (core.risk_rules), so a policy is evaluated under the limits it will trade with."""

    max_position_lots: float = Field(1.0, gt=0, description="Per instrument.")
    max_total_lots: float = Field(1.0, gt=0, description="Sum of absolute positions over instruments.")
    max_order_lots: float = Field(2.0, gt=0, description="Largest single order (a reversal is 2 lots).")
    drawdown_tiers_pct: tuple[float, float, float, float] = Field(
        (1.5, 1.8, 2.0, 2.5), description="warn, halve size, stop opening, flatten (intraday, % of session open)."
    )
    tier_exit_fraction: float = Field(
        0.05,
        ge=0,
        lt=1,
        description="Hysteresis: a tier is left only below (1 - this) x its threshold (1.5 % warn: below 1.425 %).",
    )
    halt_resume: Literal["next_session", "operator"] = Field(
        "next_session",
        description=(
            "After the flatten tier's halt: 'next_session' resumes at the next UTC session (day), "
            "'operator' only when an operator runs `stairway ctl start` (the trainer's env, having no "
            "operator, then stays halted to the end of the window it evaluates). The daemon and the env "
            "follow the same setting."
        ),
    )
    overfill_tolerance: float = Field(0.10, ge=0, description="A fill this much over the request is refused.")
    max_overfill_violations: int = Field(3, gt=0, description="Violations before trading stops.")
    max_trades_per_day: int = Field(50, gt=0, description="Orders per instrument per UTC day.")
    trades_per_session_minute_bars: tuple[int, int] = Field((5, 25), description="Alert band, scaled to the bar.")
    alert_after_sessions: int = Field(3, gt=0, description="Consecutive sessions outside the band before alerting.")
    stale_after_secs: float = Field(120.0, gt=0, description="No entries after a quote gap longer than this.")
    size_ramp: tuple[float, ...] = Field((0.5, 0.75, 1.0), description="Size after a hot swap, per session.")
    regime_bands: tuple[float, ...] = Field(
        (), description="Daemon only: composite-regime band edges, increasing (empty: no regime sizing)."
    )
    regime_size_scales: tuple[float, ...] = Field(
        (), description="Daemon only: the size scale in each band (one more than the edges)."
    )

    @model_validator(mode="after")
    def _regime_sizing(self) -> RiskConfig:
        b, s = self.regime_bands, self.regime_size_scales
        if len(s) != (len(b) + 1 if b else 0) or any(x >= y for x, y in zip(b, b[1:])):
            raise ValueError(
                f"regime_bands {list(b)} / regime_size_scales {list(s)}: give increasing edges and one scale more "
                "than edges (or neither)"
            )
        if not all(0 <= x <= 1 for x in s):
            raise ValueError(f"regime_size_scales {list(s)}: scales in [0, 1] (regime sizing only shrinks)")
        return self

    @field_validator("drawdown_tiers_pct")
    @classmethod
    def _tiers(cls, v: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        if not all(0 < t <= 100 for t in v) or any(a >= b for a, b in zip(v, v[1:])):
            raise ValueError(
                f"{list(v)} must be four percentages in (0, 100], strictly increasing "
                "(warn < halve size < stop opening < flatten)"
            )
        return v

    @field_validator("size_ramp")
    @classmethod
    def _ramp(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if not v or not all(0 < x <= 1 for x in v):
            raise ValueError(f"{list(v)} must be fractions in (0, 1]")
        return v

    @field_validator("trades_per_session_minute_bars")
    @classmethod
    def _band(cls, v: tuple[int, int]) -> tuple[int, int]:
        if v[0] < 0 or v[0] > v[1]:
            raise ValueError(f"{list(v)} must be (low, high) with 0 <= low <= high")
        return v


class MarketConfig(Strict):
    """Everything the trainer and the daemon must agree on."""

    instrument: InstrumentConfig = InstrumentConfig()
    bars: BarConfig = BarConfig()
    features: FeatureConfig = FeatureConfig()
    execution: ExecutionConfig = ExecutionConfig()
    account: AccountConfig = AccountConfig()
    data: DataConfig = DataConfig()
    regime: RegimeConfig = RegimeConfig()
    risk: RiskConfig = RiskConfig()

    def market_identity(self) -> dict[str, Any]:
        """What a checkpoint records of the market it was trained on (check_compatible's kwargs)."""
        return {
            "instrument": self.instrument.symbol,
            "pip_size": self.instrument.pip_size,
            "period_minutes": self.bars.period_minutes,
        }

    def model_requirements(self) -> dict[str, Any]:
        """What a model must bring to trade here: the market it was trained on, and a safe-f
        where sizing asks for one (daemon.hot_swap.load_verified's ``market``)."""
        return self.market_identity() | {"needs_safe_f": self.execution.safe_f_sizing}

    @model_validator(mode="after")
    def _check_data_instrument(self) -> MarketConfig:
        named = instrument_in_file_name(self.data.bars_csv)
        if self.instrument.market == "fx" and named is not None and named != self.instrument.symbol:
            raise ValueError(
                f"instrument.symbol = {self.instrument.symbol!r} but data.bars_csv "
                f"{str(self.data.bars_csv)!r} holds {named} bars"
            )
        return self


class DateRange(Strict):
    start: dt.date
    end: dt.date = Field(description="Exclusive.")

    @model_validator(mode="after")
    def _check(self) -> DateRange:
        if self.end <= self.start:
            raise ValueError(f"end {self.end} must be after start {self.start}")
        return self

    def ns(self) -> tuple[int, int]:
        def to_ns(d: dt.date) -> int:
            return int(dt.datetime(d.year, d.month, d.day, tzinfo=dt.UTC).timestamp()) * 10**9

        return to_ns(self.start), to_ns(self.end)


M = TypeVar("M", bound=BaseModel)


def env_overrides(environ: dict[str, str] | None = None) -> dict[str, Any]:
    """Nested dict from ``STAIRWAY_A__B=value`` variables."""
    out: dict[str, Any] = {}
    for key, raw in (os.environ if environ is None else environ).items():
        if not key.startswith(ENV_PREFIX) or key == CONFIG_ENV:
            continue
        parts = [p.lower() for p in key[len(ENV_PREFIX) :].split(ENV_DELIMITER)]
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"environment variable {key}: {p} is not a section")
        node[parts[-1]] = value
    return out


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in top.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def env_variables(overrides: dict[str, Any], prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], str]:
    """Each overridden field's path and the environment variable that set it."""
    out: dict[tuple[str, ...], str] = {}
    for k, v in overrides.items():
        path = (*prefix, k)
        if isinstance(v, dict) and v:
            out |= env_variables(v, path)
        else:
            out[path] = ENV_PREFIX + ENV_DELIMITER.join(p.upper() for p in path)
    return out


def format_validation_error(source: str, err: ValidationError, env: dict[tuple[str, ...], str] | None = None) -> str:
    """Every problem on its own line, naming the field and its value; a value that came from an
    environment variable (``env``: env_variables) names the variable, not the file."""
    lines = [f"{source}: invalid configuration"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        value = e.get("input")
        shown = "" if isinstance(value, dict) else f" = {value!r}"
        path = tuple(str(p) for p in e["loc"])
        var = next((v for k, v in (env or {}).items() if path[: len(k)] == k), None)
        where = f"environment variable {var} ({loc})" if var else loc
        lines.append(f"  {where}{shown}: {e['msg']}")
    return "\n".join(lines)


def _root(path: Path, root: object) -> Path:
    """Where a config's relative paths start: the top-level ``root`` (itself relative to the
    config file's folder unless absolute), else the config file's folder."""
    here = path.resolve().parent
    if root is None:
        return here
    if not isinstance(root, str) or not root.strip():
        raise ConfigError(f"{path}: root = {root!r}: a folder path (relative to this file, or absolute)")
    return (here / root).resolve()


def resolve_paths(cfg: M, base: Path) -> M:
    """Every relative path in ``cfg`` (Path fields, dicts of them, ``.py`` feature plug-ins)
    made absolute against ``base``: a config means the same files from any working directory."""

    def fix(v: Any) -> Any:
        if isinstance(v, Path):
            return v if v.is_absolute() else base / v
        if isinstance(v, BaseModel):
            return resolve_paths(v, base)
        if isinstance(v, dict):
            return {k: fix(x) for k, x in v.items()}
        if isinstance(v, tuple):
            return tuple(fix(x) for x in v)
        return v

    update = {}
    for name in type(cfg).model_fields:
        v = getattr(cfg, name)
        new = fix(v)
        if name == "plugins" and isinstance(v, tuple):
            new = tuple(x if not x.endswith(".py") or Path(x).is_absolute() else str(base / x) for x in v)
        if new is not v and new != v:
            update[name] = new
    return cfg.model_copy(update=update) if update else cfg


def load_config(model: type[M], path: str | Path, environ: dict[str, str] | None = None) -> M:
    """Load ``model`` from a TOML file plus environment overrides, or raise ConfigError.
    Relative paths in it are resolved against its ``root`` (core.config._root), not the
    working directory."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a config file") from None
    except OSError as e:  # unreadable by this user, an I/O error, ...
        raise ConfigError(f"{path}: cannot read the config: {e.strerror or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    # The daemon and the trainer share one environment: a variable for a section this model
    # does not have belongs to the other one. Unknown keys inside a known section are errors.
    overrides = env_overrides(environ)
    unknown = sorted(k for k in overrides if k not in ALL_SECTIONS and k not in model.model_fields)
    if unknown:
        raise ConfigError(
            f"environment: {', '.join(ENV_PREFIX + k.upper() + ENV_DELIMITER + '...' for k in unknown)} "
            f"names no config section (sections: {', '.join(sorted(ALL_SECTIONS))})"
        )
    env = {k: v for k, v in overrides.items() if k in model.model_fields}
    data = _merge(data, env)
    base = _root(path, data.pop("root", None))
    try:
        return resolve_paths(model.model_validate(data), base)
    except ValidationError as e:
        raise ConfigError(format_validation_error(str(path), e, env_variables(env))) from None
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
