"""Seed ensembles (``train.ensemble_seeds``): the cycle plan run with several seeds, the best
cycle of each made a member of one checkpoint (core.policy.EnsemblePolicy: the members' action
probabilities averaged), and each member's result alone next to the ensemble's."""

from __future__ import annotations

import numpy as np
import structlog

from stairway.core.policies import ensemble_tensors
from stairway.trainer.algos import policy_from_weights
from stairway.trainer.config import TrainerConfig
from stairway.trainer.evaluation import run_evaluation, selection_metrics
from stairway.trainer.prepared import PreparedData

log = structlog.get_logger("trainer")


def build_ensemble(cfg: TrainerConfig, data: PreparedData, first, parent, start_step: int, save, progress):
    """train.ensemble_seeds > 1: the cycle plan again for seeds train.seed + 1, ...; the best
    cycle of each seed becomes a member of one ensemble checkpoint (core.policy.EnsemblePolicy),
    judged on the selection window like a cycle. Returns (its record, the members' weights)."""
    from stairway.trainer.cycles import CycleRecord, train_cycles  # the cycle plan and its record

    runs = [first]
    for k in range(1, cfg.train.ensemble_seeds):
        seeded = cfg.model_copy(update={"train": cfg.train.model_copy(update={"seed": cfg.train.seed + k})})
        runs.append(train_cycles(seeded, data, parent, start_step, progress=progress))
    states = [r.states[r.best.cycle] for r in runs]
    arch = {
        "kind": "ensemble",
        "members": len(states),
        "hidden": cfg.ppo.hidden,
        "inference": {"min_confidence": cfg.train.min_confidence},
    }
    tensors = ensemble_tensors(states)
    spec, select_end = data.spec, data.select_end
    tracker, _ = run_evaluation(
        policy_from_weights(spec, tensors, arch), data.history, spec, data.ex, cfg.account.initial_equity,
        data.split, select_end - 2, risk=cfg.risk,
    )  # fmt: skip
    m = selection_metrics(tracker, data.ex, cfg.gates, cfg.train.seed)
    b = first.best
    k = len(first.records)
    sha = save(k, tensors, m, b.target, b.global_step, True, arch)
    log.info(
        "ensemble_built", members=len(states), seeds=[cfg.train.seed + i for i in range(len(states))], sha=sha[:12]
    )
    rec = CycleRecord(k, sha, b.global_step, b.target, m, True, b.controller_bonus, b.train_hold_rate)
    return rec, states


def member_lines(run) -> list[str]:
    """A seed ensemble next to its members alone, on the gate window (empty without one)."""
    if not run.members:
        return []
    v = run.validation
    out = [f"seed ensemble of {len(run.members)} on the gate window, next to each member alone:"]
    for m in run.members:
        out.append(
            f"  seed {m['seed']}: return {m['pnl_pct']:+.3f} %, Sharpe {m['sharpe']:+.2f}, {m['trades']} trades, "
            f"hold {m['hold_rate']:.0%}"
        )
    r = [m["pnl_pct"] for m in run.members]
    out.append(
        f"  members' return spread {min(r):+.3f} .. {max(r):+.3f} % (sd {float(np.std(r)):.3f}); the ensemble "
        f"{v['pnl_pct']:+.3f} %, Sharpe {v['sharpe']:+.2f}, {v['trades']} trades"
    )
    return out


def member_spread(states: list[dict], cfg: TrainerConfig, data: PreparedData) -> list[dict]:
    """Each member of a seed ensemble alone on the gate window: the spread the ensemble averages."""
    out = []
    gate_start = data.select_end
    arch = {"kind": "ppo", "hidden": cfg.ppo.hidden, "inference": {"min_confidence": cfg.train.min_confidence}}
    for i, state in enumerate(states):
        t, _ = run_evaluation(
            policy_from_weights(data.spec, state, arch), data.history, data.spec, data.ex,
            cfg.account.initial_equity, gate_start, data.gate_first - 2, risk=cfg.risk,
        )  # fmt: skip
        s = t.summary()
        out.append({"seed": cfg.train.seed + i, **{k: s[k] for k in ("pnl_pct", "sharpe", "trades", "hold_rate")}})
    return out
