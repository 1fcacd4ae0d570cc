import pytest

from core.config import load_config
from core.errors import ConfigError, DataError
from tests.helpers import ROOT
from trainer.config import TrainerConfig
from trainer.run import run_training


def cfg(tmp_path, **env):
    return load_config(TrainerConfig, ROOT / "config/trainer.toml",
                       environ={"STAIRWAY_TRAIN__MODELS_DIR": str(tmp_path), **env})


def test_session_longer_than_training_range_is_a_clear_config_error(tmp_path):
    c = cfg(tmp_path, STAIRWAY_TRAIN__RANGE='{"start": "2017-03-01", "end": "2017-03-20"}')
    with pytest.raises(ConfigError, match=r"train.session_minutes = 21600 \(360 bars\) is longer than the \d+ usable"):
        run_training(c)
    assert not (tmp_path / "current").exists()


def test_range_without_enough_bars_names_the_file(tmp_path):
    c = cfg(tmp_path, STAIRWAY_TRAIN__RANGE='{"start": "2018-03-01", "end": "2018-04-01"}')
    with pytest.raises(DataError, match="FOREX_EURUSD_1H_ASK.csv: only 0 bars in the requested range"):
        run_training(c)


def test_wrong_bar_period_for_file_is_refused(tmp_path):
    c = cfg(tmp_path, STAIRWAY_BARS__PERIOD_MINUTES="30", STAIRWAY_FEATURES__VOL_WINDOW_MINUTES="1440")
    with pytest.raises(DataError, match="bars are 60-minute but the config says bars.period_minutes = 30"):
        run_training(c)
