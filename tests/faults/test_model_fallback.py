"""Issue 13 §6: at start-up a live daemon whose models/current does not verify starts with
previous, then gold, recording why; when none verifies it runs observe-only (stream,
record, reconcile, no order) and says so on /health, until a model is published."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from tests.faults.harness import Rig, prices
from tests.faults.test_oanda_faults import last_price_done
from tests.helpers import tiny_checkpoint

pytestmark = pytest.mark.usefixtures("no_blocking")  # fail on blocking calls in the event loop


def corrupt(ck) -> None:
    raw = bytearray(ck.path.read_bytes())
    raw[-1] ^= 1  # the bytes no longer match the content address
    ck.path.write_bytes(bytes(raw))


def nan_muzero(models, spec) -> None:
    """Issue 19.4: an all-NaN MuZero checkpoint as current ended a live start with rc 1 (a
    restart loop under systemd, positions open), with no fallback."""
    from tests.regressions.test_bad_model_checkpoints import muzero

    muzero(models, spec, 1, 16, 32, "*")


def layout1_muzero(models, spec) -> None:
    """A MuZero checkpoint trained before layout 2 (its arch names no layout) left as current
    by an upgrade: refused by name at start-up, and the daemon trades on previous."""
    import json

    from stairway.core.checkpoint import CheckpointMeta, publish, save_checkpoint
    from stairway.core.muzero_model import MuZeroNet
    from stairway.core.types import ACTION_NAMES

    net = MuZeroNet(spec.obs_dim, len(ACTION_NAMES), latent=16, hidden=32)
    arch = {k: v for k, v in net.arch().items() if k != "layout"} | {"support": 20, "inference": {"simulations": 15}}
    meta = CheckpointMeta("muzero", spec.hash, spec.to_json(), (spec.obs_dim,), ACTION_NAMES, 0, arch=json.dumps(arch))
    publish(models, save_checkpoint(models, net.state_dict(), meta).sha)


@pytest.mark.parametrize(
    "spoil,why",
    [
        ("corrupt", "does not match its name"),
        ("nan_muzero", "non-finite value(s) (NaN or inf)"),
        ("layout1_muzero", "MuZero layout 1, this release runs layout 2 only"),
    ],
)
def test_a_bad_current_falls_back_to_previous_at_startup(tmp_path, spec, spoil, why):
    async def go():
        models = tmp_path / "models"
        older = (await asyncio.to_thread(tiny_checkpoint, models, spec, seed=3))[0]
        if spoil == "corrupt":
            newer = (await asyncio.to_thread(tiny_checkpoint, models, spec, seed=4))[0]  # older is now previous
            await asyncio.to_thread(corrupt, newer)
        else:
            await asyncio.to_thread(nan_muzero if spoil == "nan_muzero" else layout1_muzero, models, spec)
        rig = Rig(tmp_path, spec)
        await rig.start()
        try:
            rig.emu.prices = await asyncio.to_thread(prices, rig.cfg, 6)
            out = await rig.run(lambda d: last_price_done(d, rig.emu), timeout=45)
            assert out.error is None, repr(out.error)
            rig.check()
            with rig.db() as c:
                shas = {r[0] for r in c.execute("SELECT model_sha FROM decisions")}
                events = c.execute("SELECT kind, detail FROM risk_events WHERE kind LIKE 'model_%'").fetchall()
            assert shas == {older.sha}  # traded on previous
            assert len(events) == 1 and events[0][0] == "model_fallback"
            assert why in events[0][1] and f"previous {older.sha[:12]}" in events[0][1]
            assert rig.emu.order_requests > 0
        finally:
            await rig.close()

    asyncio.run(go())


def test_no_verifiable_model_runs_observe_only_until_one_is_published(tmp_path, spec):
    async def go():
        models = tmp_path / "models"
        only = (await asyncio.to_thread(tiny_checkpoint, models, spec, seed=3))[0]
        await asyncio.to_thread(corrupt, only)
        rig = Rig(tmp_path, spec)
        await rig.start()
        state = {}
        try:
            rig.emu.prices = await asyncio.to_thread(prices, rig.cfg, 20)

            async def during(d):
                if "health" not in state and d.slot.counters.decisions > 5:
                    state["health"] = d.view.health()
                    state["orders_before"] = rig.emu.order_requests
                    state["new"] = (await asyncio.to_thread(tiny_checkpoint, models, spec, seed=5))[0]

            def swapped_and_done(d) -> bool:
                return d.slot.counters.swaps == 1 and last_price_done(d, rig.emu)

            out = await rig.run(swapped_and_done, timeout=60, during=during)
            assert out.error is None, repr(out.error)
            rig.check()
            assert any("no verified model: observe only" in h for h in state["health"]), state["health"]
            assert state["orders_before"] == 0  # observe only: nothing sent
            assert rig.emu.order_requests > 0  # the published model trades
            with sqlite3.connect(rig.cfg.service.db_path) as c:
                kinds = [r[0] for r in c.execute("SELECT kind FROM risk_events WHERE kind LIKE 'model_%'")]
                shas = [r[0] for r in c.execute("SELECT model_sha FROM decisions ORDER BY bar_ts_ns")]
            assert kinds == ["model_observe_only"]
            assert shas[0] == "none" and shas[-1] == state["new"].sha
        finally:
            await rig.close()

    asyncio.run(go())


async def gold_then_newer(tmp_path, spec, guards: dict, validation: dict | None = None):
    """gold (seed 7) and a newer current (seed 8, with ``validation`` recorded), a rig whose
    guards are ``guards``, its prices, and a run until the model was swapped and all prices
    were handled. Returns (rig, gold, newer); the caller closes the rig."""
    from stairway.core.checkpoint import point_link

    models = tmp_path / "models"
    gold = (await asyncio.to_thread(tiny_checkpoint, models, spec, seed=7))[0]
    await asyncio.to_thread(point_link, models, "gold", gold.sha)
    newer = (await asyncio.to_thread(lambda: tiny_checkpoint(models, spec, seed=8, validation=validation)))[0]
    rig = Rig(tmp_path, spec)
    await rig.start()
    svc = rig.cfg.service.model_copy(update={"model_poll_secs": 0.05})
    rig.cfg = rig.cfg.model_copy(update={"guards": rig.cfg.guards.model_copy(update=guards), "service": svc})
    rig.emu.prices = await asyncio.to_thread(prices, rig.cfg, 12)
    out = await rig.run(lambda d: d.slot.counters.swaps >= 1 and last_price_done(d, rig.emu), timeout=60)
    assert out.error is None, repr(out.error)
    rig.check()
    return rig, gold, newer


def test_live_sharpe_breach_rolls_the_model_back_to_gold(tmp_path, spec):
    """Issue 13 §5: a live Sharpe below the floor for breach_days sessions rolls the
    instrument's model back to gold (real orders), which the watcher swaps in, and alerts."""
    from stairway.core.checkpoint import link_sha

    async def go():
        guards = {"min_days": 2, "breach_days": 1, "min_live_sharpe": 1e9}
        rig, gold, newer = await gold_then_newer(tmp_path, spec, guards)
        try:
            models = tmp_path / "models"
            links = await asyncio.to_thread(lambda: (link_sha(models, "current"), link_sha(models, "previous")))
            assert links == (gold.sha, newer.sha)
            with rig.db() as c:
                breaches = c.execute("SELECT detail FROM risk_events WHERE kind = 'live_sharpe_breach'").fetchall()
                shas = [r[0] for r in c.execute("SELECT model_sha FROM decisions ORDER BY bar_ts_ns")]
            assert len(breaches) == 1 and "for 1 sessions in a row" in breaches[0][0]
            assert shas[0] == newer.sha and shas[-1] == gold.sha  # gold trades from the swap on
        finally:
            await rig.close()

    asyncio.run(go())


def test_live_pnl_below_the_validation_promise_alerts_and_can_roll_back(tmp_path, spec):
    """Issue 13 §5: a model whose validation promised far more than it earns live is reported
    (risk event) and, with pnl_expectation_action = "rollback", rolled back to gold."""
    from stairway.core.checkpoint import link_sha

    async def go():
        promise = {"pnl_pct": 200.0, "calendar_days": 365.25, "sharpe": 20.0}  # +0.79 %/day, steadily
        guards = {"min_days": 2, "min_live_sharpe": -1e9, "pnl_expectation_action": "rollback"}
        rig, gold, newer = await gold_then_newer(tmp_path, spec, guards, validation=promise)
        try:
            assert newer.sha != gold.sha
            assert await asyncio.to_thread(link_sha, tmp_path / "models", "current") == gold.sha
            with rig.db() as c:
                notes = c.execute("SELECT detail FROM risk_events WHERE kind = 'live_pnl_below_expectation'").fetchall()
                sharpe = c.execute("SELECT count(*) FROM risk_events WHERE kind = 'live_sharpe_breach'").fetchone()
            assert len(notes) == 1 and "standard errors below the validation's +0.794 %/day" in notes[0][0]
            assert sharpe == (0,)  # the Sharpe floor was out of reach: the promise alone rolled it back
        finally:
            await rig.close()

    asyncio.run(go())
