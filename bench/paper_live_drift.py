"""Paper fills vs broker fills on one price stream: the paper-live daemon (PaperBroker:
250 ms latency, 0.1 pip slippage, liquidity cap) and the live daemon (orders filled by the
local v20 emulator at the touch) run on the same 12 days of EUR/USD bar-derived quotes with
the same model; ``daemon.drift`` matches their orders by client id.

    python bench/paper_live_drift.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

from common import ROOT, report  # noqa: F401  (puts the repository on sys.path)
from stairway.core.config import load_config  # noqa: E402
from stairway.core.features import FeatureSpec  # noqa: E402
from stairway.core.logs import configure_logging  # noqa: E402
from stairway.daemon.config import DaemonConfig  # noqa: E402
from stairway.daemon.drift import drift_report  # noqa: E402
from tests.faults.harness import Rig, prices  # noqa: E402


async def run(tmp: Path, days: float) -> tuple[Path, Path]:
    spec = FeatureSpec.from_config(load_config(DaemonConfig, ROOT / "config" / "paper.toml", environ={}))
    rig = Rig(tmp, spec)
    await rig.start()
    try:
        quotes = prices(rig.cfg, days)
        rig.emu.prices = quotes
        live = rig.cfg
        paper = live.model_copy(
            update={
                "broker": live.broker.model_copy(update={"fills": "paper"}),
                "service": live.service.model_copy(update={"db_name": "paper-live.db"}),
            }
        )

        def done(d):
            return d.slot.marks.last_quote_ts == quotes[-1][0] and d.slot.instrument not in d.parts.broker.working

        await rig.run(done, cfg=paper, timeout=120)
        rig.emu.cursor = 0
        await rig.run(done, timeout=120)
        return paper.service.db_path, live.service.db_path
    finally:
        await rig.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    configure_logging(json=True, level="error")
    with tempfile.TemporaryDirectory() as tmp:
        paper_db, live_db = asyncio.run(run(Path(tmp), 8 if a.quick else 20))
        rep = drift_report(paper_db, live_db, 0.0001)
    rep.pop("orders")
    report("paper_live_drift", {k: (round(v, 3) if isinstance(v, float) else v) for k, v in rep.items()})


if __name__ == "__main__":
    main()
