"""The daemon's configuration: the shared market sections plus service settings."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, StrictBool, field_validator, model_validator

from stairway.core.config import DataConfig, DateRange, InstrumentConfig, MarketConfig, Strict, instrument_in_file_name


class ServiceConfig(Strict):
    state_dir: Path = Field(Path("state"), description="Databases, recordings, control files.")
    models_dir: Path = Field(Path("models"), description="Checkpoint registry and the current link.")
    db_name: str = Field("live.db", description="SQLite file inside state_dir.")
    log_json: StrictBool | None = Field(None, description="JSON logs; default: JSON unless stdout is a TTY.")
    gate_db: Path = Field(Path("state/gate.db"), description="The trainer's registry (read-only here).")
    require_gate_record: StrictBool = Field(True, description="Only run checkpoints that passed gates or were forced.")
    require_start_file: StrictBool = Field(True, description="Open positions only while control/START_TRADING exists.")
    http_port: int | None = Field(8787, ge=0, le=65535, description="127.0.0.1 port; 0 = any free; null = off.")
    record_ticks: StrictBool = Field(True, description="Record every quote under state_dir/ticks.")
    recorder_flush_secs: float = Field(2.0, gt=0)
    tick_retention_days: int = Field(30, gt=0)
    backup_keep: int = Field(7, gt=0)
    backup_hour_utc: int = Field(0, ge=0, le=23)
    reconcile_secs: float = Field(300.0, gt=0)
    inference_budget_ms: float = Field(
        500.0, gt=0, le=60_000, description="A checkpoint whose smoke inference takes longer is refused."
    )
    model_poll_secs: float = Field(1.0, gt=0, description="How often models/current is checked.")
    control_poll_secs: float = Field(0.25, gt=0, description="How often control files are checked (<= 1 s).")
    flush_secs: float = Field(
        0.25,
        gt=0,
        le=10,
        description="Bar, decision and position rows wait at most this long to be committed (fills, orders, "
        "risk events and the book never wait).",
    )
    control_check_secs: float = Field(
        5.0,
        gt=0,
        description="How often the control directory's owner and "
        "permissions (and its parents') are re-checked while running.",
    )
    feed_stale_secs: float = Field(60.0, gt=0, description="/health fails when no quote arrived for this long.")
    max_model_age_days: float = Field(30.0, gt=0, description="/health fails for an older model.")
    expired_model_action: Literal["alert", "stop_opening"] = Field(
        "alert",
        description="A model older than max_model_age_days: 'alert' (/health and the alert only) or "
        "'stop_opening' (also no new positions with it; closing and reducing go on) until a newer one is swapped in.",
    )
    shutdown_timeout_secs: float = Field(10.0, gt=0)
    warm_start: StrictBool = Field(
        True, description="Fill feature and regime buffers from history at start-up (broker, then stored bars)."
    )
    warm_start_max_days: int = Field(60, gt=0, le=400, description="Most calendar days of history asked for.")
    warm_start_timeout_secs: float = Field(60.0, gt=0, description="Per history source; a slower one is skipped.")

    @field_validator("db_name")
    @classmethod
    def _plain_file_name(cls, v: str) -> str:
        if not v or v in (".", "..") or "/" in v or "\\" in v or "\x00" in v:
            raise ValueError(f"{v!r} must be a plain file name inside state_dir (no directories, no '..')")
        return v

    @property
    def db_path(self) -> Path:
        return self.state_dir / self.db_name

    @property
    def control_dir(self) -> Path:
        return self.state_dir / "control"

    @property
    def ticks_dir(self) -> Path:
        return self.state_dir / "ticks"

    @property
    def status_file(self) -> Path:
        return self.state_dir / "status.json"


class ReplayConfig(Strict):
    """Paper replay of bar-derived quotes from ``data.bars_csv``."""

    range: DateRange
    batch_ticks: int = Field(65_536, gt=0, description="Quotes handed to the slot at once.")
    speed: float = Field(0.0, ge=0, description="Paced at real time x speed; 0 replays as fast as possible.")


class OandaConfig(Strict):
    """OANDA v20. The token and account id are secrets: read from systemd credentials
    ($CREDENTIALS_DIRECTORY/<name>) or the environment, never from this file."""

    rest_url: str = Field("https://api-fxpractice.oanda.com", description="REST base (practice by default).")
    stream_url: str = Field("https://stream-fxpractice.oanda.com", description="Streaming base.")
    token_credential: str = Field("oanda-token", description="Credential file name holding the token.")
    token_env: str = Field("OANDA_TOKEN", description="Environment variable used when no credential file exists.")
    account_credential: str = Field("oanda-account", description="Credential file name holding the account id.")
    account_env: str = Field("OANDA_ACCOUNT", description="Environment variable fallback for the account id.")
    heartbeat_timeout_secs: float = Field(10.0, gt=0, description="No stream line for this long: reconnect.")
    price_stale_secs: float = Field(30.0, gt=0, description="No PRICE for the instrument while open: stale.")
    request_timeout_secs: float = Field(10.0, gt=0)
    backoff_base_secs: float = Field(0.5, gt=0)
    backoff_cap_secs: float = Field(30.0, gt=0)


class IBConfig(Strict):
    host: str = "127.0.0.1"
    port: int = Field(4002, ge=1, le=65535, description="IB Gateway paper port by default.")
    client_id: int = Field(17, ge=0)
    account: str = Field("", description="Empty: the gateway's only account.")
    symbol: str = Field("EUR", description="Contract symbol (Forex: base currency).")
    currency: str = "USD"
    sec_type: Literal["CASH", "STK"] = "CASH"
    exchange: str = "IDEALPRO"
    fill_timeout_secs: float = Field(10.0, gt=0, description="How long submit waits for a market order to finish.")
    price_stale_secs: float = Field(30.0, gt=0, description="No quote for this long while open: stale.")
    backoff_base_secs: float = Field(1.0, gt=0)
    backoff_cap_secs: float = Field(60.0, gt=0)


class BrokerConfig(Strict):
    kind: Literal["paper", "oanda", "ib"] = Field("paper", description="paper = replay of bundled bars.")
    fills: Literal["broker", "paper"] = Field(
        "broker", description="paper: broker prices, paper fills (paper-live); broker: real orders."
    )
    unknown_positions: Literal["adopt", "flatten"] = Field(
        "flatten", description="A position at the broker we did not open: adopt it or close it."
    )
    emergency_check_secs: float = Field(30.0, gt=0, description="Position-size check against the maximum.")
    oanda: OandaConfig = OandaConfig()
    ib: IBConfig = IBConfig()


class AlertsConfig(Strict):
    """Alert delivery (daemon.alerts). URLs are apprise URLs; one holding a token belongs in
    the credential file (one URL per line), not here."""

    urls: tuple[str, ...] = Field((), description="apprise URLs, e.g. json://host/path, ntfys://topic, mailto://...")
    urls_credential: str = Field("alert-urls", description="Credential file with more URLs, one per line.")
    min_interval_secs: float = Field(300.0, gt=0, description="One alert per kind and instrument within this.")
    max_per_minute: int = Field(10, gt=0, description="At most this many alerts accepted in any 60 s.")
    timeout_secs: float = Field(10.0, gt=0, description="Per delivery.")
    hold_secs: float = Field(
        60.0, ge=0, description="A /health reason or a drawdown tier is alerted once it has held this long."
    )
    disconnect_alert_secs: float = Field(
        60.0, ge=0, description="The broker disconnected this long is a critical alert (none at a normal start-up)."
    )

    @field_validator("urls")
    @classmethod
    def _urls(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        bad = [u for u in v if "://" not in u]
        if bad:
            raise ValueError(f"{bad}: not URLs (apprise form scheme://..., e.g. json://127.0.0.1:8080/alerts)")
        return v


class GuardsConfig(Strict):
    """Live-performance guards (daemon.live_guard), per instrument."""

    live_sharpe_window_days: int = Field(30, ge=2, description="Sessions the live Sharpe is measured over.")
    min_live_sharpe: float = Field(0.5, description="Below this for breach_days sessions in a row: breach.")
    breach_days: int = Field(7, gt=0)
    min_days: int = Field(10, ge=2, description="Sessions needed before the live Sharpe is judged.")
    rollback_on_breach: StrictBool = Field(True, description="A breach rolls the instrument's model back to gold.")
    pnl_z_limit: float = Field(
        2.0,
        gt=0,
        description="Live mean daily PnL this many standard errors below the validation's: below expectation.",
    )
    pnl_expectation_action: Literal["alert", "rollback"] = Field(
        "alert", description="Live PnL below the model's validation expectation: alert, or also roll back to gold."
    )
    trade_band_action: Literal["alert", "stop_opening"] = Field(
        "alert", description="Trades per session out of band for N sessions: alert, or also stop opening (a halt)."
    )
    feature_drift_window_bars: int = Field(
        240,
        ge=20,
        le=100_000,
        description="Live bars each feature's distribution is measured over (daemon.feature_watch).",
    )
    feature_outside_max: float = Field(
        0.25, gt=0, le=1, description="Share of that window outside the trained range, for any feature: drift."
    )
    feature_drift_action: Literal["alert", "observe_only"] = Field(
        "alert", description="Inputs outside the trained range: alert, or also stop opening on that instrument."
    )
    balance_tolerance: float = Field(
        50.0,
        gt=0,
        description="Account currency: the broker's cash balance and the book's realised PnL may move apart by this "
        "much since the daemon started, compared whenever both are flat (daemon.reconcile_runner); more is "
        "an account_pnl_mismatch event and an alert.",
    )


class LegConfig(InstrumentConfig):
    """One instrument of a portfolio: its identity, its replay data and its own limits."""

    bars_csv: Path | None = Field(None, description="Replay data for this instrument (paper replays need it).")
    max_position_lots: float | None = Field(None, gt=0, description="Per-instrument limit; default [risk]'s.")
    margin_rate: float = Field(0.02, gt=0, le=1, description="Margin per unit of notional (0.02 = 50:1).")
    ib_symbol: str | None = Field(None, description="IB contract symbol; default: the pair's base currency.")
    ib_currency: str | None = Field(None, description="IB contract currency; default: the pair's quote currency.")


class PortfolioConfig(Strict):
    """Several instruments in one daemon: one broker connection, one store, one account.
    Models live under models_dir/<symbol>/ (current, gold, previous)."""

    instruments: tuple[LegConfig, ...] = Field(min_length=1, description="The instruments traded.")
    max_margin_pct: float | None = Field(
        None, gt=0, le=100, description="No new positions while margin used exceeds this % of account equity."
    )

    @field_validator("instruments")
    @classmethod
    def _unique(cls, v: tuple[LegConfig, ...]) -> tuple[LegConfig, ...]:
        seen = [leg.symbol for leg in v]
        dup = sorted({s for s in seen if seen.count(s) > 1})
        if dup:
            raise ValueError(f"{dup} listed more than once")
        for leg in v:
            named = instrument_in_file_name(leg.bars_csv) if leg.bars_csv is not None else None
            if leg.market == "fx" and named is not None and named != leg.symbol:
                raise ValueError(f"{leg.symbol}: bars_csv {str(leg.bars_csv)!r} holds {named} bars")
        return v


class Leg:
    """One instrument as the daemon runs it: its full config (the shared sections with this
    instrument's identity, data and limits) and where its models are."""

    def __init__(self, cfg: DaemonConfig, models_dir: Path, margin_rate: float = 0.02) -> None:
        self.cfg, self.models_dir, self.margin_rate = cfg, models_dir, margin_rate
        self.symbol = cfg.instrument.symbol


class BotConfig(Strict):
    """`stairway bot`: Telegram remote control, a process of its own (stairway/bot.py). It acts
    only through the control files, reads /status and the database, never the broker."""

    allowed_chat_ids: tuple[int, ...] = Field((), description="The only chats obeyed; others are ignored and counted.")
    token_env: str = Field("TELEGRAM_BOT_TOKEN", description="Environment variable holding the bot's token.")
    base_url: str = Field("https://api.telegram.org/bot", description="Bot API base URL (a local server for tests).")
    confirm_secs: float = Field(60.0, gt=0, le=3600, description="A /flatten waits this long for its /confirm.")
    max_commands_per_minute: int = Field(
        10, gt=0, description="Per chat; more in a minute are refused once, then ignored."
    )


class DaemonConfig(MarketConfig):
    service: ServiceConfig = ServiceConfig()
    broker: BrokerConfig = BrokerConfig()
    replay: ReplayConfig | None = None
    portfolio: PortfolioConfig | None = None
    alerts: AlertsConfig = AlertsConfig()
    guards: GuardsConfig = GuardsConfig()
    bot: BotConfig = BotConfig()

    @model_validator(mode="after")
    def _check(self) -> DaemonConfig:
        if self.broker.kind == "paper" and self.replay is None:
            raise ValueError("broker.kind = 'paper' replays bundled bars: a [replay] section with range is required")
        if self.portfolio is not None and self.broker.kind == "paper":
            missing = [leg.symbol for leg in self.portfolio.instruments if leg.bars_csv is None]
            if missing:
                raise ValueError(f"portfolio.instruments {missing}: a paper replay needs bars_csv for each")
        if self.execution.stop_trailing and self.broker.kind == "ib" and self.broker.fills != "paper":
            raise ValueError(
                "execution.stop_trailing: trailing stops are kept at OANDA (trailingStopLossOnFill) and by the "
                "paper broker, not at Interactive Brokers: set it false, or fills = 'paper'"
            )
        traded = [leg.symbol for leg in self.portfolio.instruments] if self.portfolio else [self.instrument.symbol]
        absent = [s for s in self.features.cross_instruments if s not in traded]
        if absent:
            raise ValueError(
                f"features.cross_instruments {absent}: the daemon reads another instrument's bars from its own "
                f"feed, so each must be an instrument it trades ({', '.join(traded)}; add it to "
                "[portfolio] instruments)"
            )
        return self

    def legs(self, look_on_disk: bool = True) -> list[Leg]:
        """The instruments this daemon trades. Without [portfolio], the one [instrument], whose
        models are in models_dir (or models_dir/<symbol> when that holds a current link; with
        ``look_on_disk`` False, models_dir without looking)."""
        svc = self.service
        if self.portfolio is None:
            own = svc.models_dir / self.instrument.symbol
            models = own if look_on_disk and (own / "current").is_symlink() else svc.models_dir
            return [Leg(self, models)]
        out = []
        for leg in self.portfolio.instruments:
            ident = InstrumentConfig(**leg.model_dump(include=set(InstrumentConfig.model_fields)))
            data = self.data if leg.bars_csv is None else self.data.model_copy(update={"bars_csv": leg.bars_csv})
            risk = self.risk
            if leg.max_position_lots is not None:
                risk = risk.model_copy(update={"max_position_lots": leg.max_position_lots})
            base, _, quote = leg.symbol.partition("_")
            ib = self.broker.ib.model_copy(
                update={
                    "symbol": leg.ib_symbol or base,
                    "currency": leg.ib_currency or quote or self.broker.ib.currency,
                }
            )
            cross = {  # the cross-instrument features' bars (a replay's baselines read them)
                o.symbol: o.bars_csv
                for o in self.portfolio.instruments
                if o.symbol != leg.symbol and o.symbol in self.features.cross_instruments and o.bars_csv is not None
            }
            cfg = self.model_copy(
                update={
                    "instrument": ident,
                    "data": DataConfig(
                        **{
                            **data.model_dump(),
                            "bars_csv": data.bars_csv,
                            "cross_bars_csv": {**cross, **data.cross_bars_csv},
                        }
                    ),
                    "risk": risk,
                    "broker": self.broker.model_copy(update={"ib": ib}),
                    "portfolio": None,
                }
            )
            out.append(Leg(cfg, svc.models_dir / leg.symbol, leg.margin_rate))
        return out

    @property
    def live(self) -> bool:
        return self.broker.kind != "paper"

    @property
    def real_orders(self) -> bool:
        return self.live and self.broker.fills == "broker"
