"""The main job: gated training on 2017-01..09, paper replay of 2017-10..12, compared.

Printed side by side, whatever they show: the candidate's in-sample metrics, those of the
selection window that picked it, and those of the gate window held back from both, the daemon's paper replay on the quarter the trainer never saw, the
same quarter re-run through the trainer's environment with the same checkpoint (it must
agree with the daemon to the last digit: one feature pipeline, one execution model), and
a buy-and-hold baseline over the same bars with the same costs.

If the candidate fails its gates, nothing is published by the trainer. The demo then
promotes the candidate to paper trading explicitly, with a recorded reason, and says so:
paper replay is how a failed candidate is studied; a real daemon would not get it.
"""

from __future__ import annotations

import asyncio
import sys
import time

from stairway.cli import risk_line
from stairway.core.checkpoint import read_checkpoint
from stairway.core.config import load_config
from stairway.core.errors import ConfigError
from stairway.core.execution import ExecutionModel
from stairway.core.features import FeatureSpec
from stairway.core.logs import configure_logging
from stairway.core.metrics import format_summary
from stairway.core.policies import load_policy
from stairway.daemon.app import run_daemon
from stairway.daemon.config import DaemonConfig
from stairway.trainer import registry_ops
from stairway.trainer.baselines import compare
from stairway.trainer.config import TrainerConfig
from stairway.trainer.cycles import run_cycles
from stairway.trainer.evaluation import evaluate
from stairway.trainer.gatedb import GateDB
from stairway.trainer.history import load_history

MUZERO_DEMO_STEPS = 20_000  # per cycle: MuZero self-play runs a search per env step (~750 steps/s here)


def run_demo(trainer_config: str, daemon_config: str, quick: bool = False, algo: str | None = None) -> int:
    t0 = time.perf_counter()
    configure_logging(level="warning", stream=sys.stderr)  # the summary on stdout is not interleaved with log lines
    tcfg = load_config(TrainerConfig, trainer_config)
    dcfg = load_config(DaemonConfig, daemon_config)
    if dcfg.replay is None:
        raise ConfigError(f"{daemon_config}: the demo replays bundled bars; give it a [replay] section with range")
    replay = dcfg.replay
    if algo is not None:
        tcfg = tcfg.model_copy(update={"train": tcfg.train.model_copy(update={"algo": algo})})
    if tcfg.train.algo == "muzero" and tcfg.cycles.steps > MUZERO_DEMO_STEPS:
        print(
            f"NOTE: MuZero: {MUZERO_DEMO_STEPS:,} steps per cycle instead of {tcfg.cycles.steps:,} (a search per step)"
        )
        tcfg = tcfg.model_copy(update={"cycles": tcfg.cycles.model_copy(update={"steps": MUZERO_DEMO_STEPS})})
    if quick:
        tcfg = tcfg.model_copy(update={"cycles": tcfg.cycles.model_copy(update={"count": 2, "steps": 10_000})})
    assert tcfg.train.range is not None  # the demo's configs train on a fixed range
    if replay.range.start < tcfg.train.range.end:
        print(f"WARNING: the replay starts {replay.range.start}, before training ends {tcfg.train.range.end}")
    print(
        f"==> gated {tcfg.train.algo} training on {tcfg.train.range.start} .. {tcfg.train.range.end} (end exclusive): "
        f"up to {tcfg.cycles.count} cycles x {tcfg.cycles.steps:,} steps",
        flush=True,
    )
    tr = run_cycles(tcfg)
    print(f"    {tr.split_desc}")
    print(
        f"    {len(tr.cycles)} cycle(s) at {tr.steps_per_s:,.0f} steps/s; {tr.seconds:.1f} s; candidate "
        f"{tr.candidate[:12]}; gates {'PASSED' if tr.passed else 'FAILED'} -> {tr.action}",
        flush=True,
    )
    for d in tr.shadow.days:
        print(
            f"      shadow {d.date}: PnL {d.pnl:+8.2f}, max DD {d.max_drawdown_pct:.2f} %, {d.trades} trades "
            f"-> {'pass' if d.passed else 'FAIL (' + '; '.join(d.reasons) + ')'}"
        )
    for why in tr.shadow.reasons:
        print(f"      shadow days together: FAIL ({why})")
    ev, rb = tr.gate.get("evidence") or {}, tr.gate["robustness"]
    print(f"      evidence: {'pass' if ev.get('passed') else 'FAIL (' + '; '.join(ev.get('reasons', [])) + ')'}")
    print(f"      robustness: {'pass' if rb.get('passed') else 'FAIL (' + '; '.join(rb.get('reasons', [])) + ')'}")
    print(f"    report: {tr.report}")
    if not tr.passed:
        gdb = GateDB(tcfg.train.gate_db)
        try:
            msg = registry_ops.promote(
                tcfg.train.models_dir,
                gdb,
                tr.candidate,
                force=True,
                reason="demo: paper replay of a candidate that failed its gates",
            )
        finally:
            gdb.close()
        print(
            f"    NOTE: gates failed, so the demo promoted the candidate for PAPER replay only, reason "
            f"recorded in gate.db ({msg})"
        )
    print(
        f"==> daemon paper replay {replay.range.start} .. {replay.range.end} on bar-derived quotes",
        flush=True,
    )
    dr = asyncio.run(run_daemon(dcfg))
    print(
        f"    {dr.counters['ticks']:,} quotes, {dr.counters['bars']:,} bars, decisions "
        f"{dr.first_decision} .. {dr.last_bar} UTC; {dr.seconds:.1f} s; database {dr.db_path}",
        flush=True,
    )

    spec = FeatureSpec.from_config(dcfg)
    ex = ExecutionModel.from_config(dcfg.execution, dcfg.instrument)
    hist = load_history(dcfg, spec, *replay.range.ns())
    ck = read_checkpoint(dcfg.service.models_dir / "current")
    env_check, _ = evaluate(
        load_policy(ck, spec, "models/current"),
        hist,
        spec,
        ex,
        dcfg.account.initial_equity,
        0,
        len(hist) - 2,
        risk=dcfg.risk,
    )
    vs = compare(hist, spec, ex, dcfg.account.initial_equity, 0, len(hist) - 2, dr.tracker, risk=dcfg.risk)

    print()
    print(
        "Results (costs on: modelled 1.0-pip spread, 0.2-pip commission per side, 0.1-pip slippage, "
        "250 ms latency; 1 lot = 100,000 EUR; equity 100,000 USD)"
    )
    print(
        format_summary(
            {
                "train in-sample": tr.in_sample,
                "selection": tr.selection,
                "gate window": tr.validation,
                "daemon Oct-Dec": dr.summary,
                "env Oct-Dec": env_check,
            }
        )
    )
    print("\nOct-Dec (never trained on): the daemon's run next to its baselines, same env, fills and costs")
    print(format_summary({"policy (daemon)": dr.summary, **vs.baselines}))
    print("\n".join(vs.lines()))
    print(f"daemon {risk_line(dr.counters)}")
    same = all(abs(env_check[k] - dr.summary[k]) < 1e-9 for k in ("pnl", "trades", "decisions", "max_drawdown_pct"))
    print(
        f"\nDaemon vs trainer env on Oct-Dec: {'identical' if same else 'DIFFERENT (parity broken!)'}. "
        f"Model {ck.sha[:12]}."
    )
    print(f"total {time.perf_counter() - t0:.1f} s")
    return 0 if same else 1
