"""The slot's risk behaviour on crafted prices: every drawdown tier, over-fills, stale data,
closed markets, observe-only and FLATTEN."""

import asyncio
import sqlite3

import numpy as np
import pytest

from stairway.core.bar_builder import BarBuilder
from stairway.core.bar_ticks import TICKS_PER_BAR, bars_to_ticks
from stairway.core.calendar import Calendar
from stairway.core.execution import ExecutionModel
from stairway.core.policy import ScriptedPolicy
from stairway.core.types import BAR_DTYPE
from stairway.daemon.account import Account
from stairway.daemon.paper_broker import PaperBroker
from stairway.daemon.risk import RiskConfig, RiskEngine
from stairway.daemon.slot import Slot, SlotOptions
from stairway.daemon.store import Store

pytestmark = pytest.mark.usefixtures("no_blocking")  # fail on blocking calls in the event loop

HOUR = 3600 * 10**9
START = 1_506_902_400  # Monday 2017-10-02 00:00 UTC


def bars_from_closes(closes, start=START):
    n = len(closes)
    bars = np.empty(n, dtype=BAR_DTYPE)
    bars["ts_ns"] = start * 10**9 + np.arange(n, dtype=np.int64) * HOUR
    bars["open"] = np.concatenate([[closes[0]], closes[:-1]])
    bars["close"] = closes
    bars["high"] = np.maximum(bars["open"], closes) + 1e-5
    bars["low"] = np.minimum(bars["open"], closes) - 1e-5
    bars["volume"] = 1.0
    return bars


def run(
    market_cfg,
    spec,
    tmp_path,
    closes,
    actions,
    broker=None,
    risk_cfg=None,
    setup=None,
    between=None,
    market="always",
    clock=None,
):
    ex = ExecutionModel.from_config(market_cfg.execution, market_cfg.instrument)
    ticks = bars_to_ticks(bars_from_closes(np.asarray(closes)), HOUR, "ask", 1e-4)
    flattened = []

    async def go():
        store = await Store.open(tmp_path / "r.db")
        risk = RiskEngine(risk_cfg or RiskConfig(), 100_000.0, 60)
        account = Account(risk, 100_000.0)
        account.on_flatten_tier = flattened.append
        slot = Slot(
            "r",
            "EUR_USD",
            spec,
            BarBuilder(HOUR, "ask"),
            ex,
            ScriptedPolicy(actions),
            broker or PaperBroker(ex),
            store,
            account,
            SlotOptions(Calendar(market), clock),
        )
        if setup:
            setup(slot)
        for k in range(0, len(ticks), TICKS_PER_BAR):  # one bar of quotes at a time
            slot.on_ticks(ticks[k : k + TICKS_PER_BAR])
            if between:
                between(slot, k // TICKS_PER_BAR)
        slot.finish()
        await store.close()
        return slot

    slot = asyncio.run(go())
    db = sqlite3.connect(tmp_path / "r.db")
    return slot, db, flattened


def kinds(db):
    return [r[0] for r in db.execute("SELECT kind FROM risk_events WHERE kind != 'pass' ORDER BY id")]


@pytest.mark.parametrize("halt_resume", ["operator", "next_session"])
def test_every_drawdown_tier_then_flatten_and_rollback_request(market_cfg, spec, tmp_path, halt_resume):
    w = spec.window
    closes = [1.10] * w + list(1.10 - 0.0020 * np.arange(1, 30))  # long into a 20-pip-an-hour slide
    risk = RiskConfig(halt_resume=halt_resume)
    slot, db, flattened = run(market_cfg, spec, tmp_path, closes, [1] + [1] * 60, risk_cfg=risk)
    k = kinds(db)
    tiers = [x for x in k if x.startswith("tier_")]
    assert tiers[:4] == ["tier_warn", "tier_halve_size", "tier_stop_opening", "tier_flatten"]
    assert "flatten" in k and len(flattened) == 1 and "flatten tier" in flattened[0]
    after = k[k.index("flatten") :]
    assert "halted" in after  # later BUYs are refused while halted
    if halt_resume == "operator":
        assert slot.risk.state.halted and "halt_ended" not in k
        # the flatten order closed the long and nothing opened again
        assert db.execute("SELECT sum(units) FROM fills").fetchone()[0] == pytest.approx(0.0)
    else:  # the slide crosses midnight: the next session trades again
        assert not slot.risk.state.halted and "halt_ended" in after
        assert after.index("halt_ended") > after.index("halted")
        assert db.execute("SELECT sum(units) FROM fills").fetchone()[0] > 0.0  # bought again


def test_overfill_excess_flattened_and_three_violations_halt(market_cfg, spec, tmp_path):
    class OverfillingBroker(PaperBroker):
        def work(self, instrument, ts, bid, ask, accepted, start, stop):
            fills = super().work(instrument, ts, bid, ask, accepted, start, stop)
            order = self.working.get(instrument)
            if order is not None and fills and order.intent.client_order_id.endswith("-0"):
                order.filled *= 2  # the broker reports twice what we asked for
                fills = [
                    type(f)(f.client_order_id, f.instrument, f.ts_ns, f.side, f.units * 2, f.price, f.commission, f.seq)
                    for f in fills
                ]
            return fills

    ex = ExecutionModel.from_config(market_cfg.execution, market_cfg.instrument)
    closes = [1.10 + 1e-5 * np.sin(k) for k in range(spec.window + 30)]
    slot, db, _ = run(market_cfg, spec, tmp_path, closes, [1, 3] * 40, broker=OverfillingBroker(ex))
    k = kinds(db)
    assert k.count("overfill") >= 3 and "halted" in k
    assert slot.risk.state.halted and slot.risk.state.halted_reason == "3 over-fill violations"
    net = db.execute("SELECT sum(units) FROM fills").fetchone()[0]
    last = db.execute("SELECT units FROM positions ORDER BY ts_ns DESC LIMIT 1").fetchone()[0]
    assert last == pytest.approx(net) and abs(last) <= 100_000.0
    # each excess was flattened by a corrective order (sequence 1 in its bar)
    assert db.execute("SELECT count(*) FROM orders WHERE client_order_id LIKE '%-1'").fetchone()[0] >= 3


@pytest.mark.parametrize(
    "kwargs, kind",
    [
        ({"clock": lambda t: t + 10 * 60 * 10**9}, "stale_data"),
        ({"market": "us_equity"}, "market_closed"),
        ({"setup": lambda s: s.risk.permission.control(False)}, "observe_only"),
    ],
)
def test_entries_blocked(market_cfg, spec, tmp_path, kwargs, kind):
    closes = [1.10 + 1e-4 * np.sin(k / 3) for k in range(spec.window + 10)]  # Monday 00:00-10:00 UTC
    slot, db, _ = run(market_cfg, spec, tmp_path, closes, [1, 2, 3] * 10, **kwargs)
    assert db.execute("SELECT count(*) FROM fills").fetchone()[0] == 0
    assert set(kinds(db)) == {kind}
    assert slot.counters.decisions == 10


def test_flatten_request_closes_at_next_quotes(market_cfg, spec, tmp_path):
    closes = [1.10 + 1e-4 * np.sin(k / 3) for k in range(spec.window + 12)]

    def between(slot, bar):
        if bar == spec.window + 3:
            slot.request_flatten("FLATTEN file")

    slot, db, _ = run(market_cfg, spec, tmp_path, closes, [1] * 30, between=between)
    units = [r[0] for r in db.execute("SELECT units FROM positions ORDER BY ts_ns")]
    units = units[spec.window - 1 :]  # positions are marked from the first bar; decisions start when warm
    assert units[2] == 100_000.0 and units[-1] == 100_000.0  # BUY again after the flatten
    assert 0.0 in units[3:]
    assert "flatten" in kinds(db)


def test_swapped_in_model_ramps_size_by_session(market_cfg, spec, tmp_path):
    closes = [1.10 + 1e-4 * np.sin(k / 3) for k in range(spec.window + 80)]
    swap_bar = spec.window + 2

    def between(slot, bar):
        if bar == swap_bar:
            slot.swap.pending = ScriptedPolicy([1, 2] * 100, sha="new-model")

    slot, db, _ = run(
        market_cfg,
        spec,
        tmp_path,
        closes,
        [0] * 200,
        between=between,
        setup=lambda s: setattr(s.swap, "ramp", (0.5, 0.75, 1.0)),
    )
    rows = db.execute(
        "SELECT bar_ts_ns, position_units + order_units FROM decisions "
        "WHERE model_sha = 'new-model' AND order_units != 0 ORDER BY bar_ts_ns"
    ).fetchall()
    (swap_ts,) = db.execute("SELECT min(bar_ts_ns) FROM decisions WHERE model_sha = 'new-model'").fetchone()
    by_day = {}
    for ts, target in rows:
        by_day.setdefault(ts // (24 * HOUR) - swap_ts // (24 * HOUR), set()).add(abs(target))
    assert by_day[0] == {50_000.0} and by_day[1] == {75_000.0} and by_day[2] == {100_000.0}


def test_restored_position_is_marked_tiered_and_flattened_before_features_warm(market_cfg, spec, tmp_path):
    """Issue 9.4: after a restart with an open long, a slide reaches every drawdown tier and
    the flatten tier closes the position long before the policy could decide (cold features);
    FLATTEN works then too."""
    closes = list(1.10 - 0.0020 * np.arange(0, 30))  # 20 pips an hour down from the first bar
    assert len(closes) < spec.window  # never warm in this run

    def restore(slot):
        slot.orders.set_position(100_000.0, 1.1001)  # what the book held when the daemon stopped

    slot, db, flattened = run(market_cfg, spec, tmp_path, closes, [0] * 60, setup=restore)
    assert slot.counters.decisions == 0 and not slot.features.warm
    tiers = [x for x in kinds(db) if x.startswith("tier_")]
    assert tiers[:4] == ["tier_warn", "tier_halve_size", "tier_stop_opening", "tier_flatten"]
    assert len(flattened) == 1
    assert db.execute("SELECT sum(units) FROM fills").fetchone()[0] == pytest.approx(-100_000.0)  # closed
    assert db.execute("SELECT count(*) FROM positions").fetchone()[0] == len(closes)  # marked every bar
    equity = [r[0] for r in db.execute("SELECT equity FROM positions ORDER BY ts_ns")]
    assert equity[0] < 100_000.0 and min(equity) < 98_000.0


def test_flatten_file_closes_a_restored_position_while_cold(market_cfg, spec, tmp_path):
    closes = [1.10] * 10

    def restore(slot):
        slot.orders.set_position(-100_000.0, 1.1001)

    def between(slot, k):
        if k == 3:
            slot.request_flatten("FLATTEN control file")

    slot, db, _ = run(market_cfg, spec, tmp_path, closes, [0] * 20, setup=restore, between=between)
    assert slot.counters.decisions == 0
    assert db.execute("SELECT sum(units) FROM fills").fetchone()[0] == pytest.approx(100_000.0)
    assert float(slot.position[0]) == 0.0


def test_restored_position_is_protected_from_the_first_quote(market_cfg, spec, tmp_path):
    """Issue 9.4: within the first hour after a restart, before any bar has closed, a slide is
    tiered at every quote and the flatten tier closes the position at the next quotes."""
    from stairway.core.types import TICK_DTYPE

    ex = ExecutionModel.from_config(market_cfg.execution, market_cfg.instrument)
    n = 40
    ticks = np.zeros(n, dtype=TICK_DTYPE)
    ticks["ts_ns"] = START * 10**9 + np.arange(n, dtype=np.int64) * 60 * 10**9  # a quote a minute
    ticks["ask"] = 1.1001 - 0.0010 * np.arange(n)  # 10 pips a minute down
    ticks["bid"] = ticks["ask"] - 1e-4
    flattened = []

    async def go():
        store = await Store.open(tmp_path / "q.db")
        account = Account(RiskEngine(RiskConfig(), 100_000.0, 60), 100_000.0)
        account.on_flatten_tier = flattened.append
        slot = Slot(
            "r",
            "EUR_USD",
            spec,
            BarBuilder(HOUR, "ask"),
            ex,
            ScriptedPolicy([]),
            PaperBroker(ex),
            store,
            account,
        )
        slot.orders.set_position(100_000.0, 1.1001)
        for k in range(n):  # live: one quote per batch
            slot.on_ticks(ticks[k : k + 1])
        await store.close()
        return slot

    slot = asyncio.run(go())
    db = sqlite3.connect(tmp_path / "q.db")
    assert slot.counters.bars == 0  # the first hour has not closed
    tiers = [r[0] for r in db.execute("SELECT kind FROM risk_events WHERE kind LIKE 'tier_%' ORDER BY id")]
    assert tiers[:4] == ["tier_warn", "tier_halve_size", "tier_stop_opening", "tier_flatten"]
    assert len(flattened) == 1 and float(slot.position[0]) == 0.0
    (flat_ts,) = db.execute("SELECT max(ts_ns) FROM fills").fetchone()
    assert flat_ts < START * 10**9 + HOUR


def test_an_overfill_reported_in_an_empty_quote_window_is_flattened_not_a_crash(market_cfg, spec, tmp_path):
    """A live broker reports fills whatever the quotes, so an over-fill can surface in the
    empty window after a batch's last quote (start == stop == len(batch)). It is flattened
    from that last quote's time; it used to index past the batch (IndexError: the daemon died)."""
    from stairway.core.types import Fill, Side

    closes = [1.10 + 1e-5 * np.sin(k) for k in range(spec.window + 3)]
    slot, _, _ = run(market_cfg, spec, tmp_path, closes, [0] * 10)
    t = slot.counters.last_bar_ts + HOUR
    slot.orders.submit(100_000.0, slot.counters.last_bar_ts, t - 1)
    order = slot.orders.broker.working["EUR_USD"]
    order.filled = 200_000.0  # the broker filled twice what was asked
    fill = Fill(order.intent.client_order_id, "EUR_USD", t, Side.BUY, 200_000.0, 1.1, 0.0)
    slot.orders.broker.work = lambda *args: [fill]
    ts, px, acc = np.array([t], np.int64), np.array([1.1]), np.array([True])
    slot.work(ts, px, px, acc, 1, 1)  # the window after the batch's only quote: empty
    event = slot.journal.store.pending["risk_events"][-1]
    assert event.kind == "overfill" and event.ts_ns == t and event.allowed_units == -100_000.0
    corrective = slot.orders.broker.working["EUR_USD"]
    assert corrective.intent.units == 100_000.0 and corrective.intent.side is Side.SELL


def test_regime_is_recorded_and_sizes_orders_when_configured(tmp_path, spec):
    """Issue 13 §3: the daemon keeps each instrument's regime (core.regime) and records it in
    every decision row; with regime bands configured an order opened from flat is sized by its
    band's scale (default: no bands, no scaling)."""
    import asyncio
    import sqlite3

    from stairway.core.bar_files import load_bars
    from stairway.core.risk_rules import regime_scale
    from stairway.daemon.app import run_daemon
    from tests.helpers import EURUSD, daemon_config, tiny_checkpoint, write_bars_csv

    assert regime_scale(0.3, (), ()) == 1.0
    bands, scales = (-0.5, 0.5), (0.5, 1.0, 0.25)
    got = [regime_scale(x, bands, scales) for x in (-0.6, -0.5, 0.0, 0.49, 0.5, 2.0)]
    assert got == [0.5, 1.0, 1.0, 1.0, 0.25, 0.25]
    bars = load_bars(EURUSD)[0]
    bars = bars[bars["ts_ns"] >= 1506816000 * 10**9][:700]
    tiny_checkpoint(tmp_path / "models", spec, seed=3)
    cfg, _ = daemon_config(tmp_path, write_bars_csv(tmp_path / "b.csv", bars), "2017-10-01", "2018-01-01")
    risk = cfg.risk.model_copy(
        update={"regime_bands": bands, "regime_size_scales": scales, "drawdown_tiers_pct": (50.0, 60.0, 70.0, 80.0)}
    )
    res = asyncio.run(run_daemon(cfg.model_copy(update={"risk": risk})))
    with sqlite3.connect(res.db_path) as db:
        rows = db.execute("SELECT regime, position_units, order_units FROM decisions ORDER BY bar_ts_ns").fetchall()
    regimes = [r[0] for r in rows]
    assert all(r is not None for r in regimes) and any(abs(r) >= 0.5 for r in regimes)  # warmed and moving
    opened = [(r, o) for r, p, o in rows if p == 0.0 and o != 0.0]
    assert {regime_scale(r, bands, scales) for r, _ in opened} >= {1.0, 0.25} or len(opened) > 3
    for r, o in opened:
        assert abs(o) == pytest.approx(100_000 * regime_scale(r, bands, scales))


def test_regime_bands_are_checked():
    from pydantic import ValidationError

    from stairway.core.config import RiskConfig

    with pytest.raises(ValidationError, match="one scale more than edges"):
        RiskConfig(regime_bands=(0.5,), regime_size_scales=(1.0,))
    with pytest.raises(ValidationError, match="increasing edges"):
        RiskConfig(regime_bands=(1.0, 0.5), regime_size_scales=(1.0, 1.0, 1.0))
    with pytest.raises(ValidationError, match=r"scales in \[0, 1\]"):
        RiskConfig(regime_bands=(0.5,), regime_size_scales=(1.0, 2.0))
