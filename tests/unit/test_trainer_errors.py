import pytest

from stairway.core.config import load_config
from stairway.core.errors import ConfigError, DataError
from stairway.trainer.config import TrainerConfig
from stairway.trainer.cycles import run_cycles
from tests.helpers import ROOT


def cfg(tmp_path, **env):
    return load_config(
        TrainerConfig,
        ROOT / "config/trainer.toml",
        environ={
            "STAIRWAY_TRAIN__MODELS_DIR": str(tmp_path),
            "STAIRWAY_TRAIN__GATE_DB": str(tmp_path / "g.db"),
            "STAIRWAY_TRAIN__REPORTS_DIR": str(tmp_path / "runs"),
            "STAIRWAY_GATES__TICKS_DIR": str(tmp_path / "ticks"),
            **env,
        },
    )


def test_session_longer_than_training_range_is_a_clear_config_error(tmp_path):
    c = cfg(tmp_path, STAIRWAY_TRAIN__RANGE='{"start": "2017-03-01", "end": "2017-03-20"}')
    with pytest.raises(ConfigError, match=r"train.session_minutes = 21600 \(360 bars\) is longer than the \d+ usable"):
        run_cycles(c, progress=False)
    assert not (tmp_path / "current").exists()


def test_range_without_enough_bars_names_the_file(tmp_path):
    c = cfg(tmp_path, STAIRWAY_TRAIN__RANGE='{"start": "2018-03-01", "end": "2018-04-01"}')
    with pytest.raises(
        DataError, match="FOREX_EURUSD_1H_ASK.csv: the range .* holds 0 bars; the features need 97 to warm up"
    ):
        run_cycles(c, progress=False)


def test_wrong_bar_period_for_file_is_refused(tmp_path):
    c = cfg(tmp_path, STAIRWAY_BARS__PERIOD_MINUTES="30", STAIRWAY_FEATURES__VOL_WINDOW_MINUTES="1440")
    with pytest.raises(DataError, match="bars are 60-minute but the config says bars.period_minutes = 30"):
        run_cycles(c, progress=False)


def test_unwritable_models_dir_is_a_clear_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")  # fails for root as well as for a service user
    c = cfg(tmp_path, STAIRWAY_TRAIN__MODELS_DIR=str(blocker / "models"))
    with pytest.raises(ConfigError, match="train.models_dir = .*a-file/models: not writable"):
        run_cycles(c, progress=False)


def test_a_run_that_fails_records_why_at_once(tmp_path, monkeypatch):
    """A training run that raises after it was recorded ends as 'failed: <error>' then and
    there (it used to be left open and marked 'crashed' by the next run)."""
    import sqlite3

    import stairway.trainer.cycles as cycles

    def broken(*a, **k):
        raise RuntimeError("out of memory (injected)")

    monkeypatch.setattr(cycles, "make_algorithm", broken)
    c = cfg(tmp_path, STAIRWAY_TRAIN__RANGE='{"start": "2017-01-01", "end": "2017-04-01"}')
    with pytest.raises(RuntimeError, match="injected"):
        run_cycles(c, progress=False)
    with sqlite3.connect(tmp_path / "g.db") as db:
        rows = db.execute("SELECT ended_ns, outcome FROM training_runs").fetchall()
    assert len(rows) == 1 and rows[0][0] is not None
    assert rows[0][1] == "failed: RuntimeError: out of memory (injected)"
