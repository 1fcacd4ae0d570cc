"""The daemon's configuration: the shared market sections plus service settings."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from core.config import DateRange, MarketConfig, Strict
from daemon.risk import RiskConfig


class ServiceConfig(Strict):
    state_dir: Path = Field(Path("state"), description="Databases, recordings, control files.")
    models_dir: Path = Field(Path("models"), description="Checkpoint registry and the current link.")
    db_name: str = Field("live.db", description="SQLite file inside state_dir.")
    log_json: bool | None = Field(None, description="JSON logs; default: JSON unless stdout is a TTY.")

    @property
    def db_path(self) -> Path:
        return self.state_dir / self.db_name


class ReplayConfig(Strict):
    """Paper replay of bar-derived quotes from ``data.bars_csv``."""

    range: DateRange
    batch_ticks: int = Field(65_536, gt=0, description="Quotes handed to the slot at once.")
    ticks_per_second: float = Field(0.0, ge=0, description="Pacing; 0 replays as fast as possible.")


class DaemonConfig(MarketConfig):
    service: ServiceConfig = ServiceConfig()
    risk: RiskConfig = RiskConfig()
    replay: ReplayConfig
