"""One daemon, three instruments (paper replay): each instrument trades as it would alone,
the account's limits hold across them, per-instrument models, and a bad portfolio config
is refused in one line."""

import asyncio
import sqlite3

import pytest

from stairway.core.config import load_config
from stairway.core.errors import ConfigError
from stairway.daemon.app import run_daemon
from stairway.daemon.config import DaemonConfig
from tests.helpers import PORTFOLIO_WEEKS, daemon_config, portfolio_bars, portfolio_config, tiny_checkpoint

pytestmark = pytest.mark.usefixtures("no_blocking")  # fail on blocking calls in the event loop

START, END = "2017-10-01", "2017-10-28"
LOT = 100_000


def _config(tmp, files, **risk):
    cfg, _ = daemon_config(tmp, files["EUR_USD"], START, END)
    r = cfg.risk.model_copy(update=risk)
    return cfg.model_copy(update={"risk": r})


def _rows(db, sql, *args):
    with sqlite3.connect(db) as c:
        return c.execute(sql, args).fetchall()


@pytest.fixture()
def files(tmp_path):
    return portfolio_bars(tmp_path)


def test_each_instrument_of_a_portfolio_trades_exactly_as_it_would_alone(tmp_path, spec, files):
    """With limits that do not bind across instruments, a portfolio run is the three
    single-instrument runs side by side: same decisions, same fills, per instrument."""
    wide = {"max_total_lots": 3.0, "drawdown_tiers_pct": (50.0, 60.0, 70.0, 80.0)}
    shas = {}
    for k, sym in enumerate(PORTFOLIO_WEEKS):
        shas[sym] = tiny_checkpoint(tmp_path / "models" / sym, spec, seed=11 + k)[0].sha
    both = portfolio_config(_config(tmp_path, files, **wide), files)
    res = asyncio.run(run_daemon(both))
    assert set(res.instruments) == set(PORTFOLIO_WEEKS)
    for sym in PORTFOLIO_WEEKS:
        got = res.instruments[sym]
        assert got["model_sha"] == shas[sym]  # each its own model, from models/<symbol>
        assert got["counters"]["fills"] > 5
        alone_dir = tmp_path / f"alone-{sym}"
        alone_dir.mkdir()
        (alone_dir / "models").symlink_to(tmp_path / "models")
        one = portfolio_config(_config(alone_dir, files, **wide), {sym: files[sym]})
        solo = asyncio.run(run_daemon(one))
        assert solo.instruments[sym]["counters"] == got["counters"]
        assert (got["first_decision"], got["last_bar"]) == (solo.first_decision, solo.last_bar)
        assert solo.tracker.summary() == got["tracker"].summary()
        q = "SELECT bar_ts_ns, action, order_units, risk_note, model_sha FROM decisions WHERE instrument = ? ORDER BY bar_ts_ns"
        assert _rows(res.db_path, q, sym) == _rows(solo.db_path, q, sym)
        q = "SELECT ts_ns, units, price, commission FROM fills WHERE instrument = ? ORDER BY ts_ns, seq"
        assert _rows(res.db_path, q, sym) == _rows(solo.db_path, q, sym)
        assert res.summary["instruments"][sym]["pnl"] == pytest.approx(solo.summary["pnl"])
    assert res.counters["fills"] == sum(res.instruments[s]["counters"]["fills"] for s in PORTFOLIO_WEEKS)
    # the run's own figures are every instrument's, not the first one's
    assert res.tracker is None and all(f"{s} {shas[s][:12]}" in res.model_sha for s in PORTFOLIO_WEEKS)
    assert res.first_decision == min(res.instruments[s]["first_decision"] for s in PORTFOLIO_WEEKS)
    assert res.last_bar == max(res.instruments[s]["last_bar"] for s in PORTFOLIO_WEEKS)
    assert res.summary["pnl"] == pytest.approx(sum(res.summary["instruments"][s]["pnl"] for s in PORTFOLIO_WEEKS))


def test_the_account_limit_holds_across_instruments(tmp_path, spec, files):
    """max_total_lots = 2 with three instruments that each want a lot: at no bar are more
    than two lots open in all, and the refusals name the instrument and the limit."""
    for k, sym in enumerate(PORTFOLIO_WEEKS):
        tiny_checkpoint(tmp_path / "models" / sym, spec, seed=11 + k)
    cfg = portfolio_config(_config(tmp_path, files, max_total_lots=2.0), files)
    res = asyncio.run(run_daemon(cfg))
    held: dict[str, float] = {}
    peak = 0.0
    fills = _rows(res.db_path, "SELECT ts_ns, instrument, units FROM fills ORDER BY ts_ns, seq")
    for _, inst, units in fills:
        held[inst] = held.get(inst, 0.0) + units
        peak = max(peak, sum(abs(u) for u in held.values()) / LOT)
    assert {inst for _, inst, _ in fills} == set(PORTFOLIO_WEEKS)  # every instrument traded
    assert peak <= 2.0 + 1e-9
    cut = _rows(res.db_path, "SELECT instrument, detail FROM risk_events WHERE kind = 'position_limit'")
    assert cut and all("position limit" in d for _, d in cut)
    assert len({i for i, _ in cut}) >= 2  # the limit is the account's, not one instrument's


def test_a_portfolio_config_is_checked_in_one_line(tmp_path, files):
    base = (tmp_path / "paper.toml").read_text() if (tmp_path / "paper.toml").exists() else None
    cfg, path = daemon_config(tmp_path, files["EUR_USD"], START, END)
    text = path.read_text() if base is None else base

    def refusal(extra: str) -> str:
        p = tmp_path / "bad.toml"
        p.write_text(text + "\n" + extra)
        with pytest.raises(ConfigError) as e:
            load_config(DaemonConfig, p, environ={})
        return str(e.value)

    eur, gbp = files["EUR_USD"], files["GBP_USD"]
    msg = refusal(
        f'[portfolio]\ninstruments = [{{ symbol = "EUR_USD", bars_csv = "{eur}" }}, '
        f'{{ symbol = "EUR_USD", bars_csv = "{eur}" }}]'
    )
    assert "portfolio.instruments" in msg and "EUR_USD" in msg and "more than once" in msg
    msg = refusal(f'[portfolio]\ninstruments = [{{ symbol = "GBP_USD", bars_csv = "{eur}" }}]')
    assert "GBP_USD" in msg and "EUR_USD bars" in msg
    msg = refusal('[portfolio]\ninstruments = [{ symbol = "GBP_USD" }]')
    assert "bars_csv" in msg and "GBP_USD" in msg
    msg = refusal(f'[portfolio]\ninstruments = [{{ symbol = "GBP_USD", bars_csv = "{gbp}", lots = 1 }}]')
    assert "lots" in msg
    msg = refusal("[portfolio]\ninstruments = []")
    assert "portfolio.instruments" in msg


def test_a_portfolio_without_a_model_for_one_instrument_does_not_start(tmp_path, spec, files):
    for sym in ("EUR_USD", "GBP_USD"):
        tiny_checkpoint(tmp_path / "models" / sym, spec, seed=3)
    cfg = portfolio_config(_config(tmp_path, files), files)
    from stairway.core.errors import CheckpointError

    with pytest.raises(CheckpointError, match="AUD_USD/current: no current model"):
        asyncio.run(run_daemon(cfg))


def test_a_portfolio_is_given_its_policies_by_instrument(tmp_path, spec, files):
    """One policy (or one tick array) for a portfolio would silently go to its first
    instrument: refused in one line instead."""
    from stairway.core.policy import ScriptedPolicy

    cfg = portfolio_config(_config(tmp_path, files), files)
    with pytest.raises(ValueError, match="a portfolio's policies are given by instrument"):
        asyncio.run(run_daemon(cfg, policy=ScriptedPolicy([])))


def test_train_a_list_of_instruments_then_trade_them_together(tmp_path, spec, files, monkeypatch, capsys):
    """`train run --instrument A=... --instrument B=...` trains, gates and publishes each into
    models/<symbol>; the portfolio daemon then starts from exactly those models (gate records
    required) and trades both."""
    from stairway.cli import main as cli_main
    from tests.helpers import ROOT
    from tests.integration.test_gates import LENIENT, SMALL

    _, daemon_toml = daemon_config(tmp_path, files["EUR_USD"], START, END)
    legs = ", ".join(f'{{ symbol = "{s}", bars_csv = "{files[s]}" }}' for s in ("EUR_USD", "GBP_USD"))
    daemon_toml.write_text(daemon_toml.read_text() + f"\n[portfolio]\ninstruments = [{legs}]\n")
    env = {
        **SMALL,
        **LENIENT,
        "STAIRWAY_GATES__DAEMON_CONFIG": str(daemon_toml),  # pre-flight: each candidate against its own leg
        "STAIRWAY_TRAIN__RANGE": '{"start": "2017-04-03", "end": "2017-07-01"}',  # both series cover it
        "STAIRWAY_TRAIN__MODELS_DIR": str(tmp_path / "models"),
        "STAIRWAY_TRAIN__GATE_DB": str(tmp_path / "state" / "gate.db"),
        "STAIRWAY_TRAIN__REPORTS_DIR": str(tmp_path / "runs"),
        "STAIRWAY_GATES__TICKS_DIR": str(tmp_path / "ticks"),
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    two = {s: files[s] for s in ("EUR_USD", "GBP_USD")}
    args = ["train", "run", "--config", str(ROOT / "config/trainer.toml")]
    for s, p in two.items():
        args += ["--instrument", f"{s}={p}"]
    assert cli_main(args) == 0
    out = capsys.readouterr().out
    assert "EUR_USD: published; GBP_USD: published" in out
    for s in two:
        assert (tmp_path / "models" / s / "current").is_symlink() and (tmp_path / "runs" / s).is_dir()
    assert not (tmp_path / "models" / "current").exists()  # nothing in the single-instrument place
    # `daemon run` on the portfolio: the account's result, then each instrument next to its own
    # baselines (its bars, its model), never the first instrument's standing for all
    monkeypatch.setenv("STAIRWAY_SERVICE__REQUIRE_GATE_RECORD", "true")
    assert cli_main(["daemon", "run", "--config", str(daemon_toml)]) == 0
    out = capsys.readouterr().out
    monkeypatch.delenv("STAIRWAY_SERVICE__REQUIRE_GATE_RECORD")
    cfg = load_config(DaemonConfig, daemon_toml)
    assert "paper replay (account)" in out
    for s in two:
        link = (tmp_path / "models" / s / "current").resolve().stem
        section = out.split(f"\n{s} (model {link[:12]}):\n", 1)[1].split("\nrisk: ", 1)[0]
        assert section.split()[:3] == ["paper", "replay", "flat"] and "sma_cross" in section  # its own baselines
        run_line = next(line for line in out.splitlines() if line.startswith("Paper replay"))
        assert f"{s} {link[:12]}" in run_line  # the run line names each instrument's model
        with sqlite3.connect(cfg.service.db_path) as c:
            n = c.execute("SELECT COUNT(*) FROM decisions WHERE instrument = ? AND model_sha = ?", (s, link)).fetchone()
        assert n[0] > 100
    # refused in one line: a malformed spec, a missing file, a file of another pair
    monkeypatch.delenv("STAIRWAY_TRAIN__RANGE")
    for bad, words in (
        ("GBP_USD", ["SYMBOL=BARS_CSV"]),
        (f"GBP_USD={tmp_path / 'nope.csv'}", ["nope.csv", "no such bar file"]),
        (f"GBP_USD={files['EUR_USD']}", ["GBP_USD", "EUR_USD bars"]),
    ):
        assert cli_main(["train", "run", "--config", str(ROOT / "config/trainer.toml"), "--instrument", bad]) == 2
        err = capsys.readouterr().err
        assert all(w in err for w in words), err
    # with a data store the store gives the bars: a bar file per instrument would be ignored, so it is refused
    monkeypatch.setenv("STAIRWAY_TRAIN__DATA_STORE", str(tmp_path / "store"))
    assert (
        cli_main(
            [
                "train",
                "run",
                "--config",
                str(ROOT / "config/trainer.toml"),
                "--instrument",
                f"EUR_USD={files['EUR_USD']}",
            ]
        )
        == 2
    )
    assert "import the files into the store" in capsys.readouterr().err


def test_preflight_checks_a_candidate_against_its_own_instrument_of_a_portfolio(tmp_path, spec, files):
    from stairway.core.checkpoint import CheckpointMeta
    from stairway.core.types import ACTION_NAMES
    from stairway.trainer.config import GateConfig
    from stairway.trainer.gates import preflight

    _, daemon_toml = daemon_config(tmp_path, files["EUR_USD"], START, END)
    legs = ", ".join(f'{{ symbol = "{s}", bars_csv = "{files[s]}" }}' for s in ("EUR_USD", "GBP_USD"))
    daemon_toml.write_text(daemon_toml.read_text() + f"\n[portfolio]\ninstruments = [{legs}]\n")
    gates = GateConfig(daemon_config=daemon_toml)

    def meta(inst):
        return CheckpointMeta(
            "ppo", spec.hash, spec.to_json(), (spec.obs_dim,), ACTION_NAMES, 16, instrument=inst, pip_size=1e-4
        )

    assert preflight(meta("GBP_USD"), gates)[0]
    ok, why = preflight(meta("AUD_USD"), gates)
    assert not ok and "does not trade AUD_USD" in why and "GBP_USD" in why


def test_the_shipped_portfolio_config(monkeypatch):
    from tests.helpers import ROOT

    cfg = load_config(DaemonConfig, ROOT / "config" / "portfolio-oanda.toml", environ={})
    legs = {leg.symbol: leg for leg in cfg.legs(look_on_disk=False)}
    assert list(legs) == ["EUR_USD", "GBP_USD", "USD_JPY"]
    assert legs["USD_JPY"].cfg.instrument.pip_size == 0.01 and legs["USD_JPY"].cfg.risk.max_position_lots == 0.5
    assert legs["GBP_USD"].models_dir == cfg.service.models_dir / "GBP_USD"
    assert (legs["USD_JPY"].cfg.broker.ib.symbol, legs["USD_JPY"].cfg.broker.ib.currency) == ("USD", "JPY")
    assert cfg.portfolio.max_margin_pct == 30.0 and cfg.risk.max_total_lots == 2.0


def test_walk_forward_per_instrument(tmp_path, files, monkeypatch, capsys):
    """`validate --folds N --instrument A=.. --instrument B=..`: each instrument its own folds,
    retrained on its own data, with its own report."""
    from stairway.cli import main as cli_main
    from tests.integration.test_walk_forward import TINY

    for k, v in TINY.items():
        monkeypatch.setenv(k, v)
    args = ["validate", "--range", "2017-05-01..2017-10-01", "--folds", "2", "--train-windows", "2", "--draws", "5"]
    args += ["--out", str(tmp_path / "wf")]
    for s in ("EUR_USD", "GBP_USD"):
        args += ["--instrument", f"{s}={files[s]}"]
    assert cli_main(args) == 0
    out = capsys.readouterr().out
    assert out.index("== EUR_USD") < out.index("== GBP_USD") and out.count("2 rolling folds") == 2
    for s in ("EUR_USD", "GBP_USD"):
        assert any((tmp_path / "wf" / s).rglob("*.md")), s
    bad = ["validate", "--range", "2017-05-01..2017-10-01", "--checkpoint", "abcdef"]
    assert cli_main([*bad, "--instrument", f"EUR_USD={files['EUR_USD']}"]) == 2
    assert "--instrument goes with --folds" in capsys.readouterr().err


def test_hot_swap_per_instrument(tmp_path, spec, files):
    """A model published for one instrument swaps that instrument's model only, between two
    of its bars; the other keeps its own."""
    from tests.helpers import tiny_checkpoint as tiny
    from tests.integration.test_service import until

    two = {s: files[s] for s in ("EUR_USD", "GBP_USD")}
    first = {s: tiny(tmp_path / "models" / s, spec, seed=20 + k)[0].sha for k, s in enumerate(two)}
    cfg, _ = daemon_config(tmp_path, files["EUR_USD"], START, END, batch_ticks=16, speed=150_000, model_poll_secs=0.05)
    cfg = portfolio_config(cfg.model_copy(update={"risk": cfg.risk.model_copy(update={"max_total_lots": 2.0})}), two)

    async def scenario():
        from stairway.daemon.app import Daemon

        d = Daemon(cfg)
        task = asyncio.create_task(d.run())
        await until(lambda: d.setup_done and d.parts.slots["GBP_USD"].counters.decisions > 20)
        new = (await asyncio.to_thread(tiny, tmp_path / "models" / "GBP_USD", spec, seed=99))[0]
        await until(lambda: d.parts.slots["GBP_USD"].counters.swaps == 1)
        return await task, new

    res, new = asyncio.run(scenario())
    q = "SELECT model_sha FROM decisions WHERE instrument = ? ORDER BY bar_ts_ns"
    gbp = [r[0] for r in _rows(res.db_path, q, "GBP_USD")]
    eur = [r[0] for r in _rows(res.db_path, q, "EUR_USD")]
    k = gbp.index(new.sha)
    assert set(gbp[:k]) == {first["GBP_USD"]} and set(gbp[k:]) == {new.sha}  # one swap, between bars
    assert set(eur) == {first["EUR_USD"]}  # the other instrument kept its model
    assert res.instruments["EUR_USD"]["counters"]["swaps"] == 0
