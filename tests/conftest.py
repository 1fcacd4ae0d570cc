import os

import pytest
import structlog

from core.config import MarketConfig, load_config
from core.features import FeatureSpec
from tests.helpers import ROOT

os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".cache" / "numba"))


@pytest.fixture(scope="session")
def market_cfg() -> MarketConfig:
    from trainer.config import TrainerConfig

    return load_config(TrainerConfig, ROOT / "config" / "trainer.toml", environ={})


@pytest.fixture(scope="session")
def spec(market_cfg) -> FeatureSpec:
    return FeatureSpec.from_config(market_cfg)


@pytest.fixture(autouse=True)
def _fresh_logging():
    """A CLI test configures structlog globally (level, renderer): undo it after every test so
    no later test depends on which ran before it."""
    yield
    structlog.reset_defaults()
