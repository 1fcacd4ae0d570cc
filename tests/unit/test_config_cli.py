"""Issue 22 §1, §3: `stairway config check|show`, STAIRWAY_CONFIG as every command's default
config, `daemon run` refusing to guess one, an environment variable's error naming it, and
`stairway --version`."""

from __future__ import annotations

import json
import re

import pytest

from stairway.cli import main
from tests.helpers import ROOT, shipped_text


@pytest.fixture(autouse=True)
def _at_root(monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("STAIRWAY_CONFIG", raising=False)


def test_check_a_valid_config_of_either_program(capsys):
    assert main(["config", "check", "config/paper.toml"]) == 0
    assert capsys.readouterr().out.strip() == "config/paper.toml: a valid daemon config"
    assert main(["config", "check", "config/trainer-muzero.toml"]) == 0
    assert "a valid trainer config" in capsys.readouterr().out


def test_check_lists_every_problem_and_exits_2(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    text = shipped_text("paper.toml")
    text = text.replace("max_trades_per_day = ", "max_trades_per_day = -3 #", 1)
    text = text.replace("initial_equity = 100000.0", 'initial_equity = "lots"', 1)
    assert text.count("-3 #") == 1 and '"lots"' in text
    bad.write_text(text)
    assert main(["config", "check", str(bad)]) == 2
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{bad}: invalid configuration"
    assert any(line.startswith("  risk.max_trades_per_day = -3:") for line in out), out
    assert any(line.startswith("  account.initial_equity = 'lots':") for line in out), out


def test_a_directory_or_an_unreadable_file_is_one_line(tmp_path, capsys):
    assert main(["config", "check", str(tmp_path)]) == 2
    assert capsys.readouterr().out.strip() == f"{tmp_path}: is a directory, not a config file"
    assert main(["daemon", "run", "--config", str(tmp_path)]) == 2
    assert f"{tmp_path}: is a directory, not a config file" in capsys.readouterr().err
    assert main(["config", "check"]) == 2  # no file and no STAIRWAY_CONFIG
    assert capsys.readouterr().out.strip() == "config: name a file, or set STAIRWAY_CONFIG"


def test_an_environment_variables_error_names_the_variable(monkeypatch, capsys):
    monkeypatch.setenv("STAIRWAY_RISK__MAX_TRADES_PER_DAY", "many")
    assert main(["config", "check", "config/paper.toml"]) == 2
    out = capsys.readouterr().out
    assert "environment variable STAIRWAY_RISK__MAX_TRADES_PER_DAY (risk.max_trades_per_day) = 'many'" in out


def test_show_applies_the_environment_and_masks_secrets(tmp_path, monkeypatch, capsys):
    cfg = tmp_path / "paper.toml"
    cfg.write_text(
        shipped_text("paper.toml").replace('"data/', f'"{ROOT}/data/')
        + '\n[alerts]\nurls = ["tgram://123456:SECRET-TOKEN/987", "json://127.0.0.1:8080/alerts"]\n'
    )
    monkeypatch.setenv("STAIRWAY_RISK__MAX_TRADES_PER_DAY", "7")
    assert main(["config", "show", str(cfg), "--json"]) == 0
    out = capsys.readouterr().out
    data = json.loads(out)
    assert data["risk"]["max_trades_per_day"] == 7
    assert data["alerts"]["urls"] == ["tgram://***", "json://***"]
    assert "SECRET-TOKEN" not in out
    assert data["execution"]["stop_atr_multiple"] == 3.0  # the file's, with the defaults filled in
    assert data["execution"]["safe_f_sizing"] is False
    assert main(["config", "show", str(cfg)]) == 0
    text = capsys.readouterr().out
    assert "[risk]" in text and "max_trades_per_day = 7" in text and "SECRET-TOKEN" not in text


def test_stairway_config_is_every_commands_default(monkeypatch, capsys):
    monkeypatch.setenv("STAIRWAY_CONFIG", "config/trainer.toml")
    assert main(["config", "check"]) == 0
    assert capsys.readouterr().out.startswith("config/trainer.toml: a valid trainer config")
    monkeypatch.setenv("STAIRWAY_CONFIG", "config/no-such.toml")
    assert main(["models", "list"]) == 2  # the trainer command reads it, and says which file is missing
    assert "config/no-such.toml: config file not found" in capsys.readouterr().err


def test_daemon_run_without_a_config_refuses(capsys):
    assert main(["daemon", "run"]) == 2
    err = capsys.readouterr().err
    assert "daemon run: which config? --config FILE or STAIRWAY_CONFIG" in err


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip().startswith("stairway 0.")


def test_relative_paths_start_at_the_configs_root_not_the_working_directory(tmp_path, monkeypatch):
    """Issue 22 §3: the shipped config read from another directory names the repository's
    files; a copy with no root resolves against its own folder; an absolute root wins; a root
    that is not a folder path is one line naming it."""
    from stairway.core.config import load_config
    from stairway.core.errors import ConfigError
    from stairway.daemon.config import DaemonConfig

    monkeypatch.chdir(tmp_path)
    cfg = load_config(DaemonConfig, ROOT / "config" / "paper.toml", environ={})
    assert cfg.data.bars_csv == ROOT / "data" / "FOREX_EURUSD_1H_ASK.csv" and cfg.data.bars_csv.is_file()
    assert cfg.service.state_dir == ROOT / "state" and cfg.service.gate_db == ROOT / "state" / "gate.db"
    env = {"STAIRWAY_SERVICE__STATE_DIR": "elsewhere"}
    assert (
        load_config(DaemonConfig, ROOT / "config" / "paper.toml", environ=env).service.state_dir == ROOT / "elsewhere"
    )
    (tmp_path / "site").mkdir()
    text = (ROOT / "config" / "paper.toml").read_text()
    (tmp_path / "site" / "a.toml").write_text(re.sub(r"^root = .*\n", "", text, flags=re.M))
    own = load_config(DaemonConfig, tmp_path / "site" / "a.toml", environ={})
    assert own.service.state_dir == tmp_path / "site" / "state"
    (tmp_path / "site" / "b.toml").write_text(text.replace('root = ".."', f'root = "{tmp_path}/var"'))
    assert (
        load_config(DaemonConfig, tmp_path / "site" / "b.toml", environ={}).service.models_dir
        == tmp_path / "var" / "models"
    )
    (tmp_path / "site" / "c.toml").write_text(text.replace('root = ".."', "root = 3"))
    with pytest.raises(ConfigError, match=r"c\.toml: root = 3: a folder path"):
        load_config(DaemonConfig, tmp_path / "site" / "c.toml", environ={})


def test_every_commands_help_shows_its_defaults(capsys):
    """Issue 22 §1: --help names each option's default, in every subcommand."""
    for argv, shown in (
        (["sim", "oanda", "--help"], "(default: 1.0)"),
        (["models", "prune", "--help"], "(default: 10)"),
    ):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 0 and shown in capsys.readouterr().out
