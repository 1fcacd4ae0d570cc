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
        q = "SELECT bar_ts_ns, action, order_units, risk_note, model_sha FROM decisions WHERE instrument = ? ORDER BY bar_ts_ns"
        assert _rows(res.db_path, q, sym) == _rows(solo.db_path, q, sym)
        q = "SELECT ts_ns, units, price, commission FROM fills WHERE instrument = ? ORDER BY ts_ns, seq"
        assert _rows(res.db_path, q, sym) == _rows(solo.db_path, q, sym)
        assert res.summary["instruments"][sym]["pnl"] == pytest.approx(solo.summary["pnl"])
    assert res.counters["fills"] == sum(res.instruments[s]["counters"]["fills"] for s in PORTFOLIO_WEEKS)
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
