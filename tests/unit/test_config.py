import pytest

from stairway.core.config import load_config
from stairway.core.errors import ConfigError
from stairway.daemon.config import DaemonConfig
from stairway.trainer.config import TrainerConfig
from tests.helpers import ROOT


def test_shipped_configs_load_and_share_the_feature_spec():
    from stairway.core.features import FeatureSpec

    t = load_config(TrainerConfig, ROOT / "config/trainer.toml", environ={})
    d = load_config(DaemonConfig, ROOT / "config/paper.toml", environ={})
    assert FeatureSpec.from_config(t).hash == FeatureSpec.from_config(d).hash
    assert d.replay.range.start >= t.train.range.end  # the daemon's period is out of sample


def write(tmp_path, text):
    p = tmp_path / "c.toml"
    p.write_text(text)
    return p


BASE = "[train]\nrange = { start = 2017-01-01, end = 2017-10-01 }\n"


def test_unknown_key_is_named(tmp_path):
    p = write(tmp_path, BASE + "[execution]\nspred_pips = 1\n")
    with pytest.raises(ConfigError) as e:
        load_config(TrainerConfig, p, environ={})
    assert str(p) in str(e.value) and "execution.spred_pips = 1: Extra inputs are not permitted" in str(e.value)


def test_bad_value_names_file_key_and_value(tmp_path):
    p = write(tmp_path, BASE + "[execution]\ncommission_pips = -0.5\n")
    with pytest.raises(
        ConfigError, match=r"execution.commission_pips = -0.5: Input should be greater than or equal to 0"
    ):
        load_config(TrainerConfig, p, environ={})


def test_inverted_date_range_rejected(tmp_path):
    p = write(tmp_path, "[train]\nrange = { start = 2017-10-01, end = 2017-01-01 }\n")
    with pytest.raises(ConfigError, match="end 2017-01-01 must be after start 2017-10-01"):
        load_config(TrainerConfig, p, environ={})


def test_environment_overrides_file_and_is_validated(tmp_path):
    p = write(tmp_path, BASE + "[ppo]\ntotal_steps = 100\n")
    cfg = load_config(
        TrainerConfig, p, environ={"STAIRWAY_PPO__TOTAL_STEPS": "2048", "STAIRWAY_DATA__BARS_CSV": "x.csv"}
    )
    assert cfg.ppo.total_steps == 2048 and cfg.data.bars_csv == p.parent / "x.csv"  # relative: from the file's folder
    with pytest.raises(ConfigError, match=r"variable STAIRWAY_PPO__NUM_ENVS \(ppo.num_envs\) = 'many'"):
        load_config(TrainerConfig, p, environ={"STAIRWAY_PPO__NUM_ENVS": "many"})


def test_toml_syntax_error_and_missing_file_named(tmp_path):
    p = write(tmp_path, "[train\n")
    with pytest.raises(ConfigError, match=f"{p}: not valid TOML"):
        load_config(TrainerConfig, p, environ={})
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(TrainerConfig, tmp_path / "missing.toml", environ={})


def test_missing_required_section_named(tmp_path):
    p = write(tmp_path, "[ppo]\ntotal_steps = 100\n")
    with pytest.raises(ConfigError, match="train: Field required"):
        load_config(TrainerConfig, p, environ={})


def test_environment_for_the_other_program_is_ignored_but_typos_in_known_sections_are_not(tmp_path):
    env = {"STAIRWAY_TRAIN__SEED": "5", "STAIRWAY_REPLAY__BATCH_TICKS": "10"}
    d = load_config(DaemonConfig, ROOT / "config/paper.toml", environ=env)
    assert d.replay.batch_ticks == 10
    with pytest.raises(
        ConfigError,
        match=r"variable STAIRWAY_REPLAY__BATCH_TICK \(replay.batch_tick\) = 10: Extra inputs are not permitted",
    ):
        load_config(DaemonConfig, ROOT / "config/paper.toml", environ={"STAIRWAY_REPLAY__BATCH_TICK": "10"})
