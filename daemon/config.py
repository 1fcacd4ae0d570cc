"""The daemon's configuration: the shared market sections plus service settings."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, StrictBool, field_validator, model_validator

from stairway.core.config import DateRange, MarketConfig, Strict


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
    model_poll_secs: float = Field(1.0, gt=0, description="How often models/current is checked.")
    control_poll_secs: float = Field(0.25, gt=0, description="How often control files are checked (<= 1 s).")
    control_check_secs: float = Field(
        5.0,
        gt=0,
        description="How often the control directory's owner and "
        "permissions (and its parents') are re-checked while running.",
    )
    feed_stale_secs: float = Field(60.0, gt=0, description="/health fails when no quote arrived for this long.")
    max_model_age_days: float = Field(30.0, gt=0, description="/health fails for an older model.")
    shutdown_timeout_secs: float = Field(10.0, gt=0)

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


class DaemonConfig(MarketConfig):
    service: ServiceConfig = ServiceConfig()
    broker: BrokerConfig = BrokerConfig()
    replay: ReplayConfig | None = None

    @model_validator(mode="after")
    def _check(self) -> DaemonConfig:
        if self.broker.kind == "paper" and self.replay is None:
            raise ValueError("broker.kind = 'paper' replays bundled bars: a [replay] section with range is required")
        return self

    @property
    def live(self) -> bool:
        return self.broker.kind != "paper"

    @property
    def real_orders(self) -> bool:
        return self.live and self.broker.fills == "broker"
