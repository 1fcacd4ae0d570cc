"""/status latency while the daemon verifies a heavy MuZero checkpoint (issue 19.5).

A paper replay of real EUR/USD hours (paced) serves HTTP; a thread polls /status every 20 ms.
A gated MuZero checkpoint with a large net (latent 512, hidden 1024) and 512 simulations is
published: the watcher verifies it in its worker thread (two smoke searches, the second timed)
and refuses it for its inference budget. Reported: the poll latencies during the
verification (p50, p99, max), how long it ran, the search's time per call. Before the search
kernels released the GIL, polls during it waited for a whole search (the regression test saw
208 ms).

    python bench/verify_stall.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import numpy as np

from common import report
from stairway.core.checkpoint import publish  # noqa: E402
from stairway.core.logs import configure_logging  # noqa: E402
from stairway.daemon.app import Daemon  # noqa: E402
from tests.helpers import StatusPoller, paced_config, pass_gate, tiny_checkpoint  # noqa: E402
from tests.regressions.test_bad_model_checkpoints import muzero  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    rounds = 1 if a.quick else 3
    configure_logging(level="error")
    from stairway.core.config import load_config
    from stairway.core.features import FeatureSpec
    from stairway.trainer.config import TrainerConfig

    spec = FeatureSpec.from_config(load_config(TrainerConfig, Path("config/trainer.toml"), environ={}))
    polls: list[float] = []
    verify_s: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        models, gate_db = t / "models", t / "state" / "gate.db"
        tiny_checkpoint(models, spec, seed=1, gate_db=gate_db)
        cfg, _ = paced_config(
            t,
            batch_ticks=16,
            speed=20_000,
            require_gate_record="true",
            model_poll_secs=0.05,
            http_port=0,
            inference_budget_ms=100,
        )
        heavy = [muzero(models, spec, 10 + k, 512, 1024, None, False, simulations=512) for k in range(rounds)]
        for ck in heavy:
            pass_gate(gate_db, ck)

        async def go() -> str:
            d = Daemon(cfg)
            task = asyncio.create_task(d.run())
            while not (d.setup_done and d.http_port and d.slot.counters.decisions > 2):
                await asyncio.sleep(0.05)
            for k, ck in enumerate(heavy):
                t0 = time.perf_counter()
                async with StatusPoller(d.http_port) as poller:
                    await asyncio.to_thread(publish, models, ck.sha)
                    while d.watcher.stats.refused < k + 1:
                        await asyncio.sleep(0.01)
                verify_s.append(time.perf_counter() - t0)
                polls.extend(poller.latencies)
            reason = d.watcher.stats.last_refusal
            d.stop.set()
            await task
            return reason

        reason = asyncio.run(go())
    p = np.asarray(polls) * 1000
    report(
        "verify_stall",
        {
            "polls": len(p),
            "status_p50_ms": round(float(np.percentile(p, 50)), 2),
            "status_p99_ms": round(float(np.percentile(p, 99)), 2),
            "status_max_ms": round(float(p.max()), 2),
            "verification_s": [round(x, 3) for x in verify_s],
            "refused_because": reason.split(": ", 1)[-1][:120],
        },
    )


if __name__ == "__main__":
    main()
