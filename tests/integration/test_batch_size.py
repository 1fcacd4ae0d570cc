"""Issue 23 §4: a replay's results do not depend on how many quotes the feed hands over at
once. One quote at a time takes the slot's scalar path (Slot._on_one, BarBuilder.push_one),
other sizes the batch path: the same decisions, orders, fills, positions and risk events."""

import asyncio
import sqlite3

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stairway.core.features import FeatureSpec
from stairway.daemon.app import Daemon
from tests.helpers import EURUSD, daemon_config, tiny_checkpoint

TABLES = {
    "decisions": "bar_ts_ns, action, confidence, position_units, equity, order_units, risk_note",
    "orders": "client_order_id, bar_ts_ns, units, filled_units, status, not_before_ns",
    "fills": "client_order_id, seq, ts_ns, units, price, commission",
    "positions": "ts_ns, units, avg_price, realized, equity",
    "risk_events": "ts_ns, kind, detail, requested_units, allowed_units",
    "bars": "ts_ns, open, high, low, close, ticks",
}


def replay(tmp, batch: int, tiers: tuple | None = None) -> dict[str, list]:
    tmp.mkdir()
    cfg, _ = daemon_config(tmp, EURUSD, "2017-10-01", "2017-12-15", batch_ticks=batch)
    if tiers is not None:
        cfg = cfg.model_copy(update={"risk": cfg.risk.model_copy(update={"drawdown_tiers_pct": tiers})})
    tiny_checkpoint(tmp / "models", FeatureSpec.from_config(cfg), seed=3)
    res = asyncio.run(Daemon(cfg).run())
    with sqlite3.connect(res.db_path) as db:
        return {t: db.execute(f"SELECT {cols} FROM {t} ORDER BY {cols}").fetchall() for t, cols in TABLES.items()}


@pytest.fixture(scope="module")
def bulk(tmp_path_factory):
    return replay(tmp_path_factory.mktemp("bulk") / "run", 65_536)


def _same(a: dict, b: dict) -> None:
    for t in TABLES:
        assert len(a[t]) == len(b[t]), t
        assert a[t] == b[t], t


@pytest.mark.parametrize("batch", [1, 7])
def test_one_quote_and_seven_quote_batches_give_what_bulk_replay_gives(tmp_path, bulk, batch):
    assert len(bulk["decisions"]) > 100 and len(bulk["fills"]) > 10  # the case trades
    _same(replay(tmp_path / "run", batch), bulk)


@settings(max_examples=3, deadline=None, database=None)
@given(batch=st.integers(2, 5000))
def test_any_batch_size_gives_what_bulk_replay_gives(tmp_path_factory, bulk, batch):
    _same(replay(tmp_path_factory.mktemp(f"b{batch}") / "run", batch), bulk)


@pytest.mark.parametrize("batch", [1, 7])
def test_tiers_that_move_within_a_bar_give_the_same_results_at_any_batch_size(tmp_path, batch):
    """Tiers tight enough to change between a bar's quotes (0.05 to 0.2 %): a batch marks and
    tiers an open position at every quote, as one quote at a time (live) does
    (daemon.slot_quotes). Before, a batch tiered only at bar marks and its last quote: 1,174
    decisions and 742 risk events in bulk against 1,197 and 1,017 one at a time."""
    tight = (0.05, 0.1, 0.15, 0.2)
    bulk = replay(tmp_path / "bulk", 65_536, tight)
    kinds = {e[1] for e in bulk["risk_events"]}
    assert {"tier_warn", "tier_flatten", "flatten", "halted", "stop_filled"} <= kinds  # the case moves every tier
    assert len(bulk["risk_events"]) > 1000
    _same(replay(tmp_path / "one", batch, tight), bulk)
