"""Issue 9.7: configuration that would change trading is refused with the field and the value
named, never accepted silently."""

import pytest

from stairway.core.checkpoint import CheckpointMeta, publish, save_checkpoint
from stairway.core.config import ALL_SECTIONS, load_config
from stairway.core.errors import CheckpointError, ConfigError
from stairway.daemon.config import DaemonConfig
from stairway.daemon.hot_swap import load_verified
from stairway.trainer.config import TrainerConfig
from tests.helpers import ROOT, shipped_text, tiny_checkpoint

PAPER = shipped_text("paper.toml")


def load(tmp_path, old=None, new=None, environ=None):
    text = PAPER if old is None else PAPER.replace(old, new, 1)
    assert old is None or text != PAPER, old
    p = tmp_path / "c.toml"
    p.write_text(text)
    return load_config(DaemonConfig, p, environ=environ or {})


CASES = [
    (
        "drawdown_tiers_pct = [1.5, 1.8, 2.0, 2.5]",
        "drawdown_tiers_pct = [-1.5, 1.8, 2.0, 2.5]",
        ["risk.drawdown_tiers_pct", "-1.5"],
    ),
    (
        "drawdown_tiers_pct = [1.5, 1.8, 2.0, 2.5]",
        "drawdown_tiers_pct = [1.8, 1.5, 2.0, 2.5]",
        ["risk.drawdown_tiers_pct", "strictly increasing"],
    ),
    ('symbol = "EUR_USD"', 'symbol = ""', ["symbol = ''"]),
    ('symbol = "EUR_USD"', 'symbol = "EUR_USDD"', ["symbol = 'EUR_USDD'"]),
    (
        'symbol = "EUR_USD"\npip_size = 0.0001',
        'symbol = "XAU_USD"\npip_size = 0.01',
        ["'XAU_USD'", "holds EUR_USD bars"],
    ),
    ("pip_size = 0.0001", "pip_size = 0.01", ["pip_size = 0.01", "EUR_USD"]),
    ('db_name = "paper-replay.db"', 'db_name = "../outside.db"', ["service.db_name", "'../outside.db'"]),
    ('db_name = "paper-replay.db"', 'db_name = "/tmp/x.db"', ["service.db_name"]),
    ("require_start_file = false", 'require_start_file = "no"', ["service.require_start_file", "'no'"]),
    ("record_ticks = false", "record_ticks = 0", ["service.record_ticks", "= 0"]),
]


@pytest.mark.parametrize("old,new,fragments", CASES, ids=[c[1] for c in CASES])
def test_trading_config_refused_naming_field_and_value(tmp_path, old, new, fragments):
    with pytest.raises(ConfigError) as e:
        load(tmp_path, old, new)
    msg = str(e.value)
    assert str(tmp_path / "c.toml") in msg
    for frag in fragments:
        assert frag in msg, (frag, msg)


def test_environment_overrides_unknown_section_and_coerced_booleans_refused(tmp_path):
    with pytest.raises(ConfigError, match="STAIRWAY_RISKK__"):
        load(tmp_path, environ={"STAIRWAY_RISKK__MAX_POSITION_LOTS": "0.5"})
    with pytest.raises(
        ConfigError, match=r"environment variable STAIRWAY_SERVICE__RECORD_TICKS \(service.record_ticks\) = 0"
    ):
        load(tmp_path, environ={"STAIRWAY_SERVICE__RECORD_TICKS": "0"})
    with pytest.raises(
        ConfigError, match=r"STAIRWAY_SERVICE__REQUIRE_START_FILE \(service.require_start_file\) = 'no'"
    ):
        load(tmp_path, environ={"STAIRWAY_SERVICE__REQUIRE_START_FILE": "no"})
    # the other program's sections are still fine (one environment configures both)
    cfg = load(tmp_path, environ={"STAIRWAY_TRAIN__SEED": "3", "STAIRWAY_SERVICE__RECORD_TICKS": "true"})
    assert cfg.service.record_ticks is True


def test_known_sections_are_the_daemons_and_the_trainers():
    assert ALL_SECTIONS == set(DaemonConfig.model_fields) | set(TrainerConfig.model_fields)


def test_good_variants_still_load(tmp_path):
    usdjpy = PAPER.replace('symbol = "EUR_USD"', 'symbol = "USD_JPY"').replace("pip_size = 0.0001", "pip_size = 0.01")
    usdjpy = usdjpy.replace('bars_csv = "data/FOREX_EURUSD_1H_ASK.csv"', 'bars_csv = "data/usdjpy.csv"')
    p = tmp_path / "j.toml"
    p.write_text(usdjpy)
    assert load_config(DaemonConfig, p, environ={}).instrument.pip_size == 0.01


@pytest.mark.parametrize(
    "field,value,fragment",
    [
        ("pip_size", 0.01, "pip size 0.01 (checkpoint) != 0.0001 (ours)"),
        ("instrument", "USD_CHF", "instrument USD_CHF (checkpoint) != EUR_USD (ours)"),
        ("period_minutes", 1, "bar period 1 min (checkpoint) != 60 min (ours)"),
    ],
)
def test_checkpoint_of_another_market_refused_naming_both_sides(tmp_path, spec, field, value, fragment):
    cfg = load(tmp_path)
    _, net = tiny_checkpoint(tmp_path / "models", spec)
    ident = cfg.market_identity() | {field: value}
    meta = CheckpointMeta(
        "ppo", spec.hash, spec.to_json(), (spec.obs_dim,), ("HOLD", "BUY", "SELL", "CLOSE"), 16, **ident
    )
    ck = save_checkpoint(tmp_path / "models", net.state_dict(), meta)
    publish(tmp_path / "models", ck.sha)
    with pytest.raises(CheckpointError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        load_verified(tmp_path / "models" / "current", spec, None, None, cfg.market_identity())
    # the same checkpoint, recorded for our market, loads
    ok = save_checkpoint(
        tmp_path / "models",
        net.state_dict(),
        CheckpointMeta(
            "ppo",
            spec.hash,
            spec.to_json(),
            (spec.obs_dim,),
            ("HOLD", "BUY", "SELL", "CLOSE"),
            16,
            **cfg.market_identity(),
        ),
    )
    publish(tmp_path / "models", ok.sha)
    assert load_verified(tmp_path / "models" / "current", spec, None, None, cfg.market_identity()).sha == ok.sha


def test_a_model_without_a_safe_f_is_refused_where_sizing_needs_one(tmp_path, spec):
    """execution.safe_f_sizing (issue 21 §5): the daemon sizes with the model's safe-f, so a
    checkpoint that records none (trained without it) is refused, naming the setting; one that
    records it loads with it; a malformed one is refused naming the field."""
    cfg = load(tmp_path)
    need = cfg.market_identity() | {"needs_safe_f": True}
    tiny_checkpoint(tmp_path / "models", spec)
    with pytest.raises(CheckpointError, match="execution.safe_f_sizing is on but .* records no safe-f"):
        load_verified(tmp_path / "models" / "current", spec, None, None, need)
    assert load_verified(tmp_path / "models" / "current", spec, None, None, cfg.market_identity()).card.safe_f is None
    tiny_checkpoint(tmp_path / "models", spec, seed=1, validation={"sharpe": 1.0, "safe_f": 0.35})
    assert load_verified(tmp_path / "models" / "current", spec, None, None, need).card.safe_f == 0.35
    tiny_checkpoint(tmp_path / "models", spec, seed=2, validation={"sharpe": 1.0, "safe_f": 1.5})
    with pytest.raises(CheckpointError, match=r"validation.safe_f = 1.5 must be a number in \[0, 1\]"):
        load_verified(tmp_path / "models" / "current", spec, None, None, need)


def test_trainer_does_not_warm_start_from_another_instruments_model(tmp_path, spec, capsys):
    from stairway.trainer.cycles import _warm_start

    tcfg = load_config(
        TrainerConfig,
        ROOT / "config" / "trainer.toml",
        environ={"STAIRWAY_TRAIN__MODELS_DIR": str(tmp_path / "models")},
    )
    _, net = tiny_checkpoint(tmp_path / "models", spec, hidden=tcfg.ppo.hidden)

    def publish_for(**market):
        meta = CheckpointMeta(
            "ppo",
            spec.hash,
            spec.to_json(),
            (spec.obs_dim,),
            ("HOLD", "BUY", "SELL", "CLOSE"),
            tcfg.ppo.hidden,
            **(tcfg.market_identity() | market),
        )
        ck = save_checkpoint(tmp_path / "models", net.state_dict(), meta)
        publish(tmp_path / "models", ck.sha)
        return ck

    publish_for(instrument="USD_CHF")
    assert _warm_start(tcfg, spec) is None
    out = capsys.readouterr().out
    assert "warm_start_refused" in out and "instrument USD_CHF (checkpoint) != EUR_USD (ours)" in out
    same = publish_for()
    assert _warm_start(tcfg, spec).sha == same.sha
    publish_for(period_minutes=1)
    assert _warm_start(tcfg, spec) is None
    assert "bar period 1 min (checkpoint) != 60 min (ours)" in capsys.readouterr().out


def test_a_trailing_stop_is_refused_where_it_cannot_be_kept(tmp_path):
    """execution.stop_trailing: OANDA keeps a trailing stop with the trade and the paper broker
    and the env model it; Interactive Brokers is not emulated with one, so a live IB config
    asking for it is refused by name, as is a trailing stop without a stop to trail."""
    text = shipped_text("live-ib.toml").replace(
        "stop_atr_multiple = 3.0", "stop_atr_multiple = 3.0\nstop_trailing = true"
    )
    p = tmp_path / "ib.toml"
    p.write_text(text)
    env = {"IB_ACCOUNT": "DU1234567", "IB_HOST": "127.0.0.1", "IB_PORT": "4002"}
    with pytest.raises(ConfigError, match="execution.stop_trailing: trailing stops are kept at OANDA"):
        load_config(DaemonConfig, p, environ=env)
    with pytest.raises(ConfigError, match="stop_trailing needs a stop"):
        load(tmp_path, "stop_atr_multiple = 3.0\nstop_atr_bars = 24\nstop_max_loss = 500.0", "stop_trailing = true")
    paper = load(tmp_path, "stop_atr_multiple = 3.0", "stop_atr_multiple = 3.0\nstop_trailing = true")
    assert paper.execution.stop_trailing
