"""Hot-swap latency and ticks dropped during swaps, in a paced replay of the reference
quotes (1-minute bars, real time x 600, so a bar closes every 0.1 s of wall time).

Latency = models/current replaced -> first decision taken by the new model. It includes
the watcher's poll (service.model_poll_secs), verification in a worker thread, and the
wait for the next bar close (swaps happen between bars).

    python bench/hot_swap.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import torch
from replay_throughput import config

from common import minute_market, report, synthetic_quotes
from stairway.core.checkpoint import CheckpointMeta, point_link, save_checkpoint  # noqa: E402
from stairway.core.features import FeatureSpec  # noqa: E402
from stairway.core.logs import configure_logging  # noqa: E402
from stairway.core.ppo_net import ActorCritic  # noqa: E402
from stairway.core.types import ACTION_NAMES  # noqa: E402
from stairway.daemon.app import Daemon  # noqa: E402
from stairway.trainer.gatedb import GateDB  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    swaps, poll = (2, 0.25) if a.quick else (8, 0.25)
    configure_logging(level="warning")
    spec = FeatureSpec.from_config(minute_market())
    with tempfile.TemporaryDirectory() as tmp:
        models, gate_db = Path(tmp) / "models", Path(tmp) / "gate.db"
        shas = []
        db = GateDB(gate_db)
        for seed in range(swaps + 1):
            torch.manual_seed(seed)
            meta = CheckpointMeta("ppo", spec.hash, spec.to_json(), (spec.obs_dim,), ACTION_NAMES, 64)
            ck = save_checkpoint(models, ActorCritic(spec.obs_dim).state_dict(), meta)
            db.add_model(ck.sha, meta, 0, "bench", seed)
            db.set_verdict(ck.sha, True, {"passed": True})
            shas.append(ck.sha)
        db.close()
        point_link(models, "current", shas[0])
        cfg = config(Path(tmp) / "state")
        svc = cfg.service.model_copy(
            update={
                "models_dir": models,
                "gate_db": gate_db,
                "require_start_file": False,
                "model_poll_secs": poll,
                "http_port": None,
                "record_ticks": True,
            }
        )
        cfg = cfg.model_copy(
            update={"service": svc, "replay": cfg.replay.model_copy(update={"speed": 600.0, "batch_ticks": 64})}
        )
        ticks = synthetic_quotes(int((swaps + 3) * 2.5 * 600 / 0.25))  # ~2.5 s of wall time per swap
        latencies = []

        async def scenario():
            d = Daemon(cfg, ticks=ticks)
            task = asyncio.create_task(d.run())
            while not (hasattr(d, "slot") and d.slot.features.warm and d.slot.counters.decisions > 5):
                await asyncio.sleep(0.01)
            for sha in shas[1:]:
                await asyncio.sleep(0.5)
                t0 = time.perf_counter()
                point_link(models, "current", sha)
                before = d.slot.counters.decisions
                while not (d.slot.policy.sha == sha and d.slot.counters.decisions > before):
                    await asyncio.sleep(0.001)
                latencies.append(time.perf_counter() - t0)
            res = await task
            return d, res

        d, res = asyncio.run(scenario())
    dropped = len(ticks) - res.counters["ticks"] + res.counters["recorder_dropped_ticks"]
    report(
        "hot_swap",
        {
            "swaps": len(latencies),
            "latency_s_median": round(statistics.median(latencies), 3),
            "latency_s_max": round(max(latencies), 3),
            "ticks": len(ticks),
            "ticks_dropped": dropped,
            "model_poll_secs": poll,
            "bar_wall_secs": 0.1,
            "verify_s_last": round(d.watcher.stats.last_latency_s, 4),
            "goal_latency_s": 1.0,
            "goal_dropped": 0,
        },
    )


if __name__ == "__main__":
    main()
