"""Issue 10 §5: a paper replay in which the flatten tier fires never repoints the operator's
models/current, and the run's summary shows what the risk engine did."""

import asyncio
import os

import numpy as np

from stairway.cli import risk_line
from stairway.core.checkpoint import point_link
from stairway.core.policy import ScriptedPolicy
from stairway.daemon.app import run_daemon
from tests.helpers import daemon_config, tiny_checkpoint, write_bars_csv
from tests.integration.test_slot_risk import bars_from_closes


def test_flatten_tier_in_a_paper_replay_keeps_current_and_is_reported(tmp_path, spec):
    models = tmp_path / "models"
    gold, _ = tiny_checkpoint(models, spec, seed=1)
    point_link(models, "gold", gold.sha)
    cur, _ = tiny_checkpoint(models, spec, seed=2)  # current != gold
    closes = [1.10] * (spec.window + 2) + list(1.10 - 0.0030 * np.arange(1, 20))  # a 30-pip-an-hour slide
    csv = write_bars_csv(tmp_path / "slide.csv", bars_from_closes(np.array(closes)))
    cfg, _ = daemon_config(tmp_path, csv, "2017-10-01", "2018-01-01", stops=False)  # the tier, not a stop, ends it
    res = asyncio.run(run_daemon(cfg, policy=ScriptedPolicy([1] * 500)))
    assert res.counters["risk_events"].get("tier_flatten") == 1 and res.counters["halted"]
    assert os.readlink(models / "current").endswith(f"{cur.sha}.safetensors")  # untouched
    line = risk_line(res.counters)
    assert "tier_flatten 1" in line and "HALTED" in line and res.counters["blocked_intents"] > 0


def test_flatten_tier_with_real_orders_rolls_current_back_to_gold(tmp_path, spec):
    from stairway.core.bar_ticks import bars_to_ticks
    from tests.faults.harness import Rig

    async def go():
        rig = Rig(tmp_path, spec)
        await rig.start_with(stop_atr_multiple=None)  # the tier, not a stop, ends it
        try:
            gold, _ = tiny_checkpoint(tmp_path / "models", spec, seed=11)
            point_link(tmp_path / "models", "gold", gold.sha)
            cur, _ = tiny_checkpoint(tmp_path / "models", spec, seed=12)
            closes = [1.10] * (spec.window + 2) + list(1.10 - 0.0030 * np.arange(1, 20))
            t = bars_to_ticks(bars_from_closes(np.array(closes)), 3600 * 10**9, "ask", 1e-4)
            rig.emu.prices = list(zip(t["ts_ns"].tolist(), t["bid"].tolist(), t["ask"].tolist()))
            out = await rig.run(
                lambda d: (
                    d.parts.risk.state.halted
                    and rig.emu.positions.get("EUR_USD", 0.0) == 0.0
                    and not d.parts.router.busy()
                ),
                timeout=45,
                policy=ScriptedPolicy([1] * 500),
            )
            assert out.error is None
            rig.check()
            return gold, cur
        finally:
            await rig.close()

    gold, cur = asyncio.run(go())
    assert os.readlink(tmp_path / "models" / "current").endswith(f"{gold.sha}.safetensors")
