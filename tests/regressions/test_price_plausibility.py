"""Issue 9.6: implausible live quotes are rejected and counted like crossed quotes, through the
daemon's own configuration, and never traded on."""

import asyncio
import sqlite3

import numpy as np

from stairway.core.bar_files import load_bars
from stairway.core.bar_ticks import bars_to_ticks
from stairway.daemon.app import run_daemon
from tests.helpers import EURUSD, daemon_config, tiny_checkpoint, write_bars_csv

HOUR = 3600 * 10**9


def test_spiked_quotes_are_rejected_counted_and_never_marked(tmp_path, spec):
    b = load_bars(EURUSD)[0]
    bars = b[b["ts_ns"] >= 1506816000 * 10**9][:200]
    tiny_checkpoint(tmp_path / "models", spec, seed=1)
    cfg, _ = daemon_config(tmp_path, write_bars_csv(tmp_path / "b.csv", bars), "2017-10-01", "2018-01-01")
    ticks = bars_to_ticks(bars, HOUR, "ask", 1e-4)
    spiked = ticks.copy()
    for k, factor in ((150, 100.0), (420, 0.01), (600, 1e250)):
        spiked["bid"][k] *= factor
        spiked["ask"][k] *= factor
    res = asyncio.run(run_daemon(cfg, ticks=spiked))
    assert res.counters["rejected_jump"] == 3 and res.counters["ticks"] == len(ticks)
    db = sqlite3.connect(res.db_path)
    hi, lo = db.execute("SELECT max(high), min(low) FROM bars").fetchone()
    assert hi < 1.3 and lo > 1.0
    equity = np.array([r[0] for r in db.execute("SELECT equity FROM positions")])
    assert np.all(np.abs(equity - 100_000) < 5_000)  # never marked at a spike
    # a tighter configured rule rejects more: the setting reaches the live path
    cfg2 = cfg.model_copy(
        update={
            "bars": cfg.bars.model_copy(update={"max_jump_pct": 0.01}),
            "service": cfg.service.model_copy(update={"db_name": "tight.db"}),
        }
    )
    res2 = asyncio.run(run_daemon(cfg2, ticks=ticks))
    assert res2.counters["rejected_jump"] > 0
