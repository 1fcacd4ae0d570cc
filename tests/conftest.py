import os

import pytest

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
