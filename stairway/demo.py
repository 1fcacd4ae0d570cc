"""The main job: train on 2017-01..09, paper-replay 2017-10..12 with the daemon, compare.

Printed side by side, whatever they show: the trainer's in-sample and held-back-tail
metrics, the daemon's paper replay on the quarter the trainer never saw, and the same
quarter re-run through the trainer's environment with the same checkpoint (it must agree
with the daemon to the last digit: one feature pipeline, one execution model), and a
buy-and-hold baseline over the same bars with the same costs, for context.
"""

from __future__ import annotations

import asyncio
import time

import structlog

from core.config import load_config
from core.execution import ExecutionModel
from core.features import FeatureSpec
from core.logs import configure_logging
from core.metrics import format_summary
from daemon.app import run_daemon
from daemon.config import DaemonConfig
from trainer.config import TrainerConfig
from trainer.evaluation import evaluate
from trainer.history import load_history
from trainer.run import run_training


def run_demo(trainer_config: str, daemon_config: str, quick: bool = False) -> int:
    t0 = time.perf_counter()
    configure_logging(level="warning")
    log = structlog.get_logger("demo")
    tcfg = load_config(TrainerConfig, trainer_config)
    dcfg = load_config(DaemonConfig, daemon_config)
    if quick:
        tcfg = tcfg.model_copy(update={"ppo": tcfg.ppo.model_copy(update={"total_steps": 50_000})})
    if dcfg.replay.range.start < tcfg.train.range.end:
        log.warning("replay_overlaps_training", replay_start=str(dcfg.replay.range.start),
                    train_end=str(tcfg.train.range.end))
    print(f"==> training PPO on {tcfg.train.range.start} .. {tcfg.train.range.end} (end exclusive), "
          f"{tcfg.ppo.total_steps:,} steps, last {tcfg.train.holdout_fraction:.0%} held back", flush=True)
    tr = run_training(tcfg)
    print(f"    {tr.steps:,} steps at {tr.steps_per_s:,.0f} steps/s; {tr.seconds:.1f} s; "
          f"published {tr.sha[:12]}", flush=True)
    print(f"==> daemon paper replay {dcfg.replay.range.start} .. {dcfg.replay.range.end} on bar-derived quotes",
          flush=True)
    dr = asyncio.run(run_daemon(dcfg))
    print(f"    {dr.counters['ticks']:,} quotes, {dr.counters['bars']:,} bars, decisions "
          f"{dr.first_decision} .. {dr.last_bar} UTC; {dr.seconds:.1f} s; database {dr.db_path}", flush=True)

    spec = FeatureSpec.from_config(dcfg)
    ex = ExecutionModel.from_config(dcfg.execution, dcfg.instrument)
    hist = load_history(dcfg, spec, *dcfg.replay.range.ns())
    from core.checkpoint import read_checkpoint
    from core.policy import ppo_from_tensors

    ck = read_checkpoint(dcfg.service.models_dir / "current")
    net = ppo_from_tensors(ck.tensors, spec.obs_dim, ck.meta.hidden)
    env_check, _ = evaluate(net, hist, spec, ex, dcfg.account.initial_equity, 0, len(hist) - 2)
    buy_hold, _ = evaluate(None, hist, spec, ex, dcfg.account.initial_equity, 0, len(hist) - 2,
                           actions=[1] * len(hist))

    print()
    print("Results (costs on: modelled 1.0-pip spread, 0.2-pip commission per side, 0.1-pip slippage, "
          "250 ms latency; 1 lot = 100,000 EUR; equity 100,000 USD)")
    print(format_summary({
        "train in-sample": tr.in_sample,
        "train held-back": tr.holdout,
        "daemon Oct-Dec": dr.summary,
        "env Oct-Dec": env_check,
        "buy&hold Oct-Dec": buy_hold,
    }))
    same = all(abs(env_check[k] - dr.summary[k]) < 1e-9 for k in ("pnl", "trades", "decisions", "max_drawdown_pct"))
    print(f"\nheld-back tail: {tr.holdout_range} UTC. Daemon vs trainer env on Oct-Dec: "
          f"{'identical' if same else 'DIFFERENT (parity broken!)'}.")
    print(f"total {time.perf_counter() - t0:.1f} s")
    return 0 if same else 1
