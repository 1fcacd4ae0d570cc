"""The gated cyclic trainer (`stairway train run`).

1. Split the date range: training bars | validation (held back, picks the best cycle) |
   the last K trading days for the shadow-replay gate (only when no recorded ticks exist).
2. Warm start from models/current, else models/gold, when compatible; the step counter
   continues from the parent's.
3. Up to N cycles of S steps, each with its curriculum target hold rate; every cycle's
   checkpoint is saved (content-addressed) and its validation metrics go to gate.db.
   Stop early after ``patience`` cycles without a >= 1 % Sharpe improvement (never before
   ``min_cycles``).
4. The best cycle is the candidate. Gates: pre-flight, shadow replay through the daemon's
   own code, drift against gold, robustness (reported; gating when configured).
5. Passed: record the verdict, then repoint models/current atomically (gold too, if none).
   Failed: record the verdict, publish nothing; drift above the threshold rolls current
   back to gold.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from stairway.core.checkpoint import (
    Checkpoint,
    CheckpointMeta,
    check_compatible,
    clean_leftovers,
    point_link,
    prune_registry,
    publish,
    read_checkpoint,
    roll_back,
    save_checkpoint,
)
from stairway.core.errors import CheckpointError, ConfigError
from stairway.core.feature_drift import feature_profile
from stairway.core.features import FeatureSpec
from stairway.core.locks import ExclusiveLock, file_lock
from stairway.core.metrics import annualised_pct
from stairway.core.policies import load_policy
from stairway.core.robustness import monte_carlo, sqn_class, walk_forward_efficiency
from stairway.core.types import ACTION_NAMES, NS_PER_DAY
from stairway.trainer.algos import make_algorithm
from stairway.trainer.baselines import compare
from stairway.trainer.config import TrainerConfig
from stairway.trainer.data_store import resolve_training_data
from stairway.trainer.ensemble import build_ensemble, member_spread
from stairway.trainer.evaluation import run_evaluation, selection_metrics
from stairway.trainer.gatedb import GateDB
from stairway.trainer.gates import (
    ShadowResult,
    drift_from_gold,
    evidence,
    preflight,
    robustness_verdict,
    shadow_replay,
    shadow_ticks,
    verdict_dict,
)
from stairway.trainer.metrics_file import training_metrics, write_metrics_file
from stairway.trainer.ppo import PPOProgress, update_health
from stairway.trainer.prepared import PreparedData, fmt_day, prepare_data, training_env

log = structlog.get_logger("trainer")


@dataclass
class CycleRecord:
    cycle: int
    sha: str
    global_step: int
    target: float
    metrics: dict
    improved: bool
    controller_bonus: float = 0.0  # the hold-bonus controller's last bonus (core.controller), 0 without shaping
    train_hold_rate: float = 0.0  # the training envs' smoothed hold rate the controller steers


@dataclass
class CycleRun:
    run_id: str
    cycles: list[CycleRecord]
    candidate: str
    parent: str
    passed: bool
    published: bool
    action: str
    gate: dict
    validation: dict  # the gate window's (never used to pick the cycle): what the gates judged
    in_sample: dict
    shadow: ShadowResult
    drift: float | None
    monte_carlo: object
    walk_forward: dict
    curves: dict = field(default_factory=dict)
    steps_per_s: float = 0.0
    seconds: float = 0.0
    split_desc: str = ""
    report: Path | None = None
    baselines: object = None  # trainer.baselines.Comparison on the gate window
    selection: dict = field(default_factory=dict)  # the chosen cycle on the selection window (it picked it)
    members: list[dict] = field(default_factory=list)  # a seed ensemble's members alone on the gate window


def improved(sharpe: float, best: float | None, min_rel: float) -> bool:
    """A cycle improves when its Sharpe beats the best so far by at least min_rel (relative)."""
    if best is None:
        return True
    return sharpe > best + max(min_rel * abs(best), 1e-9)


def should_stop(history: list[bool], min_cycles: int, patience: int) -> bool:
    """Stop after ``patience`` consecutive non-improving cycles, never before ``min_cycles``."""
    return len(history) >= min_cycles and len(history) >= patience and not any(history[-patience:])


def _warm_start(cfg: TrainerConfig, spec: FeatureSpec) -> Checkpoint | None:
    if not cfg.cycles.warm_start:
        return None
    for name in ("current", "gold"):
        link = cfg.train.models_dir / name
        if not (link.is_symlink() or link.exists()):
            continue
        try:
            ck = read_checkpoint(link)
            check_compatible(
                ck.meta,
                str(link),
                feature_spec_hash=spec.hash,
                feature_spec=spec.to_json(),
                obs_shape=(spec.obs_dim,),
                action_space=ACTION_NAMES,
                **cfg.market_identity(),
            )
            arch = ck.meta.architecture()
            want = (
                {"hidden": cfg.ppo.hidden}
                if cfg.train.algo == "ppo"
                else {k: getattr(cfg.muzero, k) for k in ("latent", "hidden")} | {"horizons": cfg.muzero.arch_horizons}
            )
            differ = {k: (arch.get(k), v) for k, v in want.items() if arch.get(k) != v}
            if ck.meta.policy_kind != cfg.train.algo or differ:
                raise CheckpointError(
                    f"{link}: a {ck.meta.policy_kind} checkpoint cannot warm-start train.algo = {cfg.train.algo!r}"
                    if ck.meta.policy_kind != cfg.train.algo
                    else f"{link}: its sizes differ from the config's ("
                    + ", ".join(f"{k} {a} vs {b}" for k, (a, b) in differ.items())
                    + ")"
                )
            return ck
        except CheckpointError as e:  # refused before any training: the run starts from scratch
            log.warning("warm_start_refused", link=str(link), reason=str(e), action="training from scratch")
    return None


@dataclass
class TrainedCycles:
    records: list[CycleRecord]
    states: list[dict]  # each cycle's weights (state_dict copies), in cycle order
    rates: list[float]  # env steps/s per rollout
    arch: dict = field(default_factory=dict)  # the checkpoint's architecture JSON (trainer.algos)
    sessions: str = ""  # the session index's counts (trainer.sessions)

    @property
    def best(self) -> CycleRecord:
        """The candidate: the best validation Sharpe (the first one on ties)."""
        return max(self.records, key=lambda r: (r.metrics["sharpe"], -r.cycle))


def train_cycles(
    cfg: TrainerConfig,
    data: PreparedData,
    parent: Checkpoint | None = None,
    start_step: int = 0,
    on_cycle=None,
    progress: bool = False,
) -> TrainedCycles:
    """The cycle plan on ``data`` with the configured algorithm (trainer.algos): learn on bars
    [0, split), evaluate every cycle on the selection window [split, select_end - 2] through the policy the daemon
    would run, stop early by patience. ``on_cycle(k, state, metrics, target, step, improved, arch)``
    may save the cycle's checkpoint and return its sha. Shared by `train run` and each
    walk-forward fold, so both learn the same way."""
    spec, ex, history, split = data.spec, data.ex, data.history, data.split
    select_end = data.select_end
    env, sessions = training_env(cfg, data)
    shaper = env.shaper
    algo = make_algorithm(cfg, env, parent, start_step)
    bar = _progress(progress, cfg.cycles.count * cfg.cycles.steps, "training")
    rates: list[float] = []
    seen = [start_step]

    def on_progress(p: PPOProgress) -> None:
        rates.append(p.steps_per_s)
        health = {k: round(v, 4) for k, v in update_health(p).items()}
        if bar is not None:  # a terminal: on the bar, not between its redraws
            bar.update(p.global_step - seen[0])
            bar.set_postfix(reward=f"{p.mean_reward:+.4f}", steps_s=f"{p.steps_per_s:,.0f}", **health)
        elif health:
            log.info("ppo_update", step=p.global_step, policy_loss=round(p.policy_loss, 5), **health)
        seen[0] = p.global_step

    records: list[CycleRecord] = []
    states: list[dict] = []
    best: float | None = None
    try:
        for k in range(cfg.cycles.count):
            target = cfg.cycles.curriculum[min(k, len(cfg.cycles.curriculum) - 1)]
            shaper.set_target(target)
            algo.learn(cfg.cycles.steps, on_progress)
            tracker, _ = run_evaluation(  # the selection window: it picks the cycle, nothing else
                algo.policy(), history, spec, ex, cfg.account.initial_equity, split, select_end - 2, risk=cfg.risk
            )
            m = selection_metrics(tracker, ex, cfg.gates, cfg.train.seed)
            state = algo.tensors()
            imp = improved(m["sharpe"], best, cfg.cycles.min_sharpe_improvement)
            best = m["sharpe"] if imp else best
            sha = on_cycle(k, state, m, target, algo.global_step, imp, algo.arch()) if on_cycle is not None else ""
            states.append(state)
            bonus, hold = (float(x) for x in algo.controller())
            records.append(CycleRecord(k, sha, algo.global_step, target, m, imp, bonus, hold))
            log.info(
                "cycle_finished",
                cycle=k,
                sha=sha[:12],
                step=algo.global_step,
                target_hold_rate=target,
                val_sharpe=round(m["sharpe"], 3),
                val_pnl_pct=round(m["pnl_pct"], 3),
                val_trades=m["trades"],
                hold_rate=round(m["hold_rate"], 3),
                controller_bonus=round(bonus, 5),
                train_hold_rate=round(hold, 3),
                improved=imp,
            )
            if should_stop([r.improved for r in records], cfg.cycles.min_cycles, cfg.cycles.patience):
                log.info("early_stop", after_cycles=k + 1)
                break
    finally:
        algo.close()
    if bar is not None:
        bar.close()
    return TrainedCycles(records, states, rates, algo.arch(), sessions.describe())


def run_cycles(cfg: TrainerConfig, progress: bool = True) -> CycleRun:
    """One training run, holding the models directory's and the gate database's locks for its
    whole life: a second run on either (a manual run while the nightly one trains) refuses at
    once, naming the pid that holds it, and never marks the running one crashed."""
    models = cfg.train.models_dir
    try:
        (models / "registry").mkdir(parents=True, exist_ok=True)
        probe = models / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"train.models_dir = {models}: not writable ({e.strerror})") from None
    models_lock = ExclusiveLock(cfg.train.models_dir / ".train.lock", f"models directory {cfg.train.models_dir}")
    with models_lock, file_lock(cfg.train.gate_db, "gate database"):
        return _run_cycles_locked(cfg, progress)


def _run_cycles_locked(cfg: TrainerConfig, progress: bool) -> CycleRun:
    t0 = time.perf_counter()
    cfg, data_desc = resolve_training_data(cfg)  # the data store's merged bars and rolling window
    # unique even for two runs within a second (the report folder and training_runs key on it)
    run_id = f"{time.strftime('train-%Y%m%dT%H%M%S', time.gmtime())}-{os.getpid()}-{os.urandom(2).hex()}"
    _backup_gate_db(cfg)
    gdb = GateDB(cfg.train.gate_db)
    try:
        data = prepare_data(cfg)
    except BaseException:
        gdb.close()
        raise
    if data_desc:  # recorded with the split in the checkpoint, the gate database and the report
        data.split_desc = f"{data.split_desc}; {data_desc}"
    crashed = gdb.start_run(run_id)
    if crashed:
        log.warning("training_runs_marked_crashed", run_ids=crashed)
    try:
        run = _train_and_gate(cfg, gdb, run_id, data, t0, progress)
        if cfg.train.metrics_file is not None:  # never fatal: the model is already published (or not)
            try:
                write_metrics_file(cfg.train.metrics_file, training_metrics(run, cfg.instrument.symbol))
            except OSError as e:
                log.error("metrics_file_not_written", path=str(cfg.train.metrics_file), error=str(e))
        return run
    except BaseException as e:  # recorded now, with the reason: not left for the next start's crash marker
        try:
            gdb.end_run(run_id, f"failed: {type(e).__name__}: {e}"[:1000], None, None)
        finally:
            gdb.close()
        raise


def _train_and_gate(
    cfg: TrainerConfig, gdb: GateDB, run_id: str, data: PreparedData, t0: float, progress: bool
) -> CycleRun:
    """run_cycles after its run is recorded: the cycles, the candidate, the gates, publishing."""
    spec, ex, history, split, gate_first, split_desc = (
        data.spec,
        data.ex,
        data.history,
        data.split,
        data.gate_first,
        data.split_desc,
    )
    rng = cfg.train.range
    assert rng is not None  # run_cycles resolved the rolling window
    start_ns, end_ns = rng.ns()
    models = cfg.train.models_dir
    removed = clean_leftovers(cfg.train.models_dir)
    if removed:
        log.warning("publish_leftovers_removed", files=[str(p) for p in removed])

    parent = _warm_start(cfg, spec)
    start_step = int(json.loads(parent.meta.extra).get("steps", 0)) if parent else 0
    log.info(
        "training_started",
        run_id=run_id,
        split=split_desc,
        parent=parent.sha[:12] if parent else None,
        start_step=start_step,
        cycles=cfg.cycles.count,
        steps_per_cycle=cfg.cycles.steps,
        feature_spec=spec.hash,
    )

    checkpoints: dict[str, Checkpoint] = {}
    # the training bars' feature distribution: the daemon's feature watch compares live inputs with it
    profile = feature_profile(history.features[spec.window - 1 : split], spec.market_names)

    def save(k: int, state: dict, m: dict, target: float, step: int, imp: bool, arch: dict) -> str:
        meta = CheckpointMeta(
            policy_kind=arch["kind"],
            feature_spec_hash=spec.hash,
            feature_spec=spec.to_json(),
            obs_shape=(spec.obs_dim,),
            action_space=ACTION_NAMES,
            hidden=int(arch.get("hidden", 0)),
            arch=json.dumps(arch),
            parent=parent.sha if parent else "",
            **cfg.market_identity(),
            data_range=f"{rng.start}..{rng.end}; {split_desc}",
            extra=json.dumps(
                {
                    "steps": step,
                    "cycle": k,
                    "run_id": run_id,
                    "seed": cfg.train.seed,
                    "target_hold_rate": target,
                    "validation": m,
                    "feature_profile": profile,
                },
                default=float,
            ),
        )
        ck = save_checkpoint(models, state, meta)
        checkpoints[ck.sha] = ck
        gdb.add_model(ck.sha, meta, step, run_id, k)
        gdb.add_cycle(run_id, k, ck.sha, step, target, m, imp)
        return ck.sha

    trained = train_cycles(cfg, data, parent, start_step, on_cycle=save, progress=progress)
    records = trained.records
    rates = trained.rates

    # the candidate: the best selection-window Sharpe (first one on ties), or the seed ensemble
    best_rec = trained.best
    members: list[dict] = []
    if cfg.train.ensemble_seeds > 1:
        best_rec, members = build_ensemble(cfg, data, trained, parent, start_step, save, progress)
        records = records + [best_rec]
    cand = checkpoints[best_rec.sha]
    cand_policy = load_policy(cand, spec, f"candidate {cand.sha[:12]}")  # as the daemon will run it
    # the gate window: after the selection window, never used to pick; what the gates judge
    gate_start = data.select_end

    def evaluated(first: int, last: int):
        return run_evaluation(
            cand_policy, history, spec, ex, cfg.account.initial_equity, first, last, record=True, risk=cfg.risk
        )[0]

    val_tracker, is_tracker = evaluated(gate_start, gate_first - 2), evaluated(0, split - 2)
    validation, in_sample = val_tracker.summary(), is_tracker.summary()
    vs_baselines = compare(
        history,
        spec,
        ex,
        cfg.account.initial_equity,
        gate_start,
        gate_first - 2,
        val_tracker,
        seed=cfg.train.seed,
        risk=cfg.risk,
    )

    # gates
    pre = preflight(cand.meta, cfg.gates, cfg.risk, cfg.execution)
    ticks, judged, source = shadow_ticks(cfg, spec, cfg.gates, end_ns, data.recorded)
    vbar = _progress(progress, 1, "shadow replay")
    gate_days = len(np.unique(history.bars["ts_ns"][gate_start:gate_first] // NS_PER_DAY))
    shadow = shadow_replay(
        cand_policy,
        cfg,
        spec,
        cfg.gates,
        ticks,
        judged,
        source,
        best_rec.cycle,
        evidence_days=gate_days,
        orders_per_day=2.0 * float(validation["trades"]) / max(gate_days, 1),
    )
    if vbar is not None:
        vbar.update(1)
        vbar.close()
    years = validation["calendar_days"] / 365.25  # calendar time, not days that have bars
    mc = monte_carlo(val_tracker.trade_returns(), years, cfg.gates.mc_resamples, seed=cfg.train.seed)
    wf = _walk_forward(
        cand_policy, history, spec, ex, cfg, split, gate_start, gate_first, cfg.gates.walk_forward_windows
    )
    robustness = {
        "car25_pct": mc.car25_pct,
        "dd95_pct": mc.dd95_pct,
        "mc_trades": mc.trades,
        "walk_forward_efficiency": wf["efficiency"],
        "sqn": validation["sqn"],
        "sqn_class": sqn_class(validation["sqn"], int(validation["trades"])),
    }
    robust_ok, robust_why = robustness_verdict(validation, mc.car25_pct, mc.dd95_pct, wf["efficiency"], cfg.gates)
    robustness["gating"] = cfg.gates.gate_on_robustness
    robustness["passed"] = robust_ok
    robustness["reasons"] = robust_why
    proof = evidence(validation, vs_baselines.baselines, shadow, cfg.gates)
    passed = pre[0] and shadow.passed and robust_ok and proof["passed"]

    gold_link = models / "gold"
    gold = None
    if gold_link.is_symlink():
        try:
            gold = read_checkpoint(gold_link)
        except CheckpointError as e:
            log.error("gold_unreadable", reason=str(e))
    drift, drift_note = drift_from_gold(cand, gold)
    gate = verdict_dict(pre, shadow, drift, robustness, passed, proof)
    gate["drift_note"] = drift_note
    gdb.set_verdict(cand.sha, passed, gate)  # recorded before anything is published

    if passed:
        publish(models, cand.sha)
        action = "published"
        if gold is None:
            point_link(models, "gold", cand.sha)
            action = "published+gold"
    elif gold is not None and drift is not None and drift > cfg.gates.drift_threshold:
        roll_back(models, "gold")
        action = "rolled_back_to_gold"
    else:
        action = "not_published"
    gdb.log_drift(cand.sha, gold.sha if gold else None, drift, cfg.gates.drift_threshold, passed, action)
    log.info(
        "gates_evaluated",
        sha=cand.sha[:12],
        passed=passed,
        preflight=pre[0],
        shadow=shadow.passed,
        robustness=robust_ok,
        drift=None if drift is None else round(drift, 4),
        drift_note=drift_note or None,
        action=action,
    )
    result = CycleRun(
        run_id,
        records,
        cand.sha,
        parent.sha if parent else "",
        passed,
        passed,
        action,
        gate,
        validation,
        in_sample,
        shadow,
        drift,
        mc,
        wf,
        curves={
            "gate window (held back)": (val_tracker.curve_ts, val_tracker.curve_equity),
            "in_sample": (is_tracker.curve_ts, is_tracker.curve_equity),
        },
        steps_per_s=float(np.median(rates)) if rates else 0.0,
        seconds=time.perf_counter() - t0,
        split_desc=f"{split_desc}; {trained.sessions}",
        baselines=vs_baselines,
        selection=best_rec.metrics,
        members=member_spread(members, cfg, data),
    )
    from stairway.trainer.report import write_report

    result.report = write_report(result, cfg)
    gdb.end_run(run_id, action, cand.sha, str(result.report))
    gdb.close()
    pruned = prune_registry(cfg.train.models_dir, cfg.train.registry_keep)
    if pruned:
        log.info("registry_pruned", removed=[p.name for p in pruned], kept=cfg.train.registry_keep)
    return result


def _backup_gate_db(cfg: TrainerConfig) -> None:
    """Before a run touches it: a verified online backup of gate.db (the registry's record of
    every verdict), ``gate_backup_keep`` kept. A copy that fails integrity_check stops the run."""
    from stairway.core.sqlite_backup import backup_database

    db = cfg.train.gate_db
    if db.is_file():
        backup_database(db, db.parent / "backups", cfg.train.gate_backup_keep)


def _walk_forward(
    policy, history, spec, ex, cfg: TrainerConfig, split: int, gate_start: int, gate_first: int, windows: int
) -> dict:
    """Annualised return on consecutive in-sample windows and on the gate window's windows
    (out of sample: neither trained on nor used to pick the cycle)."""
    lo = spec.window - 1
    is_edges = np.linspace(lo, split - 2, windows + 1).astype(int)
    oos_edges = np.linspace(gate_start, gate_first - 2, windows + 1).astype(int)
    rows: list[dict[str, Any]] = []
    for kind, edges in (("in-sample", is_edges), ("out-of-sample", oos_edges)):
        for a, b in zip(edges[:-1], edges[1:]):
            if b - a < 2:
                continue
            tr, _ = run_evaluation(policy, history, spec, ex, cfg.account.initial_equity, int(a), int(b), risk=cfg.risk)
            s = tr.summary()
            rows.append(
                {
                    "kind": kind,
                    "from": fmt_day(int(history.bars["ts_ns"][a])),
                    "to": fmt_day(int(history.bars["ts_ns"][b])),
                    "annualised_pct": annualised_pct(s),
                    "trades": s["trades"],
                    "sharpe": s["sharpe"],
                }
            )
    ins = [float(r["annualised_pct"]) for r in rows if r["kind"] == "in-sample"]
    oos = [float(r["annualised_pct"]) for r in rows if r["kind"] == "out-of-sample"]
    return {"rows": rows, "efficiency": walk_forward_efficiency(ins, oos) if ins and oos else 0.0}


def _progress(enabled: bool, total: int, desc: str):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="step", disable=None, leave=False)
