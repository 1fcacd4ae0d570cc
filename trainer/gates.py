"""Validation gates: pre-flight, shadow replay through the daemon's own code, parameter
drift, and robustness (Monte Carlo, walk-forward efficiency, SQN)."""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import sqlite3
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from stairway.core.bar_files import load_period_bars
from stairway.core.bar_ticks import bars_to_ticks
from stairway.core.checkpoint import CheckpointMeta, check_compatible
from stairway.core.config import MarketConfig, load_config
from stairway.core.errors import CheckpointMismatch, ConfigError, DataError
from stairway.core.execution import ExecutionModel
from stairway.core.features import FeatureSpec
from stairway.core.policy import Policy
from stairway.core.risk_rules import trade_band
from stairway.core.tick_files import day_path, read_tick_file, recorded_days
from stairway.core.types import ACTION_NAMES, NS_PER_DAY
from stairway.core.weights import numpy_tensors
from stairway.daemon.account import Account
from stairway.daemon.paper_broker import PaperBroker
from stairway.daemon.risk import RiskEngine
from stairway.daemon.slot import Slot, SlotOptions
from stairway.daemon.store import Store
from stairway.trainer.config import GateConfig
from stairway.trainer.shadow_cross import cross_quotes


@dataclass
class DayVerdict:
    date: str
    pnl: float
    max_drawdown_pct: float
    trades: int
    decisions: int
    passed: bool
    reasons: list[str] = field(default_factory=list)


@dataclass
class ShadowResult:
    source: str  # "recorded ticks" or "bar-derived (historical tail)"
    days: list[DayVerdict]
    trades_range: tuple[int, int]
    reasons: list[str] = field(default_factory=list)  # about the days together (their total PnL)

    @property
    def passed(self) -> bool:
        return bool(self.days) and all(d.passed for d in self.days) and not self.reasons


PROTECTION = (
    "stop_pips",
    "stop_atr_multiple",
    "stop_atr_bars",
    "stop_max_loss",
    "risk_per_trade_pct",
    "safe_f_sizing",
    "stop_trailing",
)


def preflight(meta: CheckpointMeta, gates: GateConfig, risk=None, execution=None) -> tuple[bool, str]:
    """The candidate must fit the daemon that will run it (its own config), and it must have
    been evaluated under that daemon's risk limits (``risk``: the trainer's [risk] section) and
    protective stops and sizing (``execution``: the trainer's [execution] section)."""
    from stairway.daemon.config import DaemonConfig

    dcfg = load_config(DaemonConfig, gates.daemon_config)
    if dcfg.portfolio is not None:  # the instrument's own leg of a portfolio daemon
        legs = {leg.symbol: leg.cfg for leg in dcfg.legs(look_on_disk=False)}
        if meta.instrument not in legs:
            return (
                False,
                f"daemon config {gates.daemon_config} does not trade {meta.instrument} (it trades {list(legs)})",
            )
        dcfg = legs[meta.instrument]
    spec = FeatureSpec.from_config(dcfg)
    try:
        check_compatible(
            meta,
            "candidate",
            feature_spec_hash=spec.hash,
            feature_spec=spec.to_json(),
            obs_shape=(spec.obs_dim,),
            action_space=ACTION_NAMES,
            **dcfg.market_identity(),
        )
    except CheckpointMismatch as e:
        return False, f"{e} (daemon config {gates.daemon_config})"
    daemon_only = {"regime_bands", "regime_size_scales"}  # the env does not model regime sizing
    if risk is not None and risk.model_dump(exclude=daemon_only) != dcfg.risk.model_dump(exclude=daemon_only):
        mine, theirs = risk.model_dump(exclude=daemon_only), dcfg.risk.model_dump(exclude=daemon_only)
        diff = "; ".join(f"risk.{k}: trainer {mine[k]} vs daemon {theirs[k]}" for k in mine if mine[k] != theirs[k])
        return False, f"evaluated under other risk limits than {gates.daemon_config}'s: {diff}"
    if execution is not None:
        mine, theirs = execution.model_dump(include=set(PROTECTION)), dcfg.execution.model_dump(include=set(PROTECTION))
        if not execution.stops and not dcfg.execution.stops:
            mine = theirs  # stop_atr_bars alone means nothing without a stop
        diff = "; ".join(
            f"execution.{k}: trainer {mine[k]} vs daemon {theirs[k]}" for k in PROTECTION if mine[k] != theirs[k]
        )
        if diff:
            return False, f"evaluated under other stops or sizing than {gates.daemon_config}'s: {diff}"
    return True, f"matches {gates.daemon_config}: spec {spec.hash}, obs ({spec.obs_dim},), {len(ACTION_NAMES)} actions"


def trades_range(
    gates: GateConfig, period_minutes: int, evidence_days: int | None = None, orders_per_day: float | None = None
) -> tuple[int, int]:
    """Per-day order range of the shadow gate: the band given for minute bars, scaled to this
    bar period, with its upper end raised, where it would contradict the evidence gate, to
    what that gate's required activity produces on a busy day: ``min_validation_trades`` over
    the gate window's ``evidence_days`` trading days is a rate of trades, at most two orders
    each; the upper end is at least the 99th percentile of a day's orders at that rate
    (Poisson). (Scaled linearly, the seed's 5-25 a day on minute bars allowed 0-1 a day on
    hourly bars, while the evidence gate wanted 10 trades in about 20 days: a candidate active
    enough for one failed the other on a day with 2.) ``orders_per_day``: the candidate's own
    rate on the gate window; the upper end is at least its 99.9th percentile, so the band
    catches a candidate that trades in the daemon far more than it did in evaluation, not one
    that trades as it always does (a mean-reversion policy at 4 orders a day failed on a day of 6)."""
    lo, hi = trade_band(gates.trades_per_day_minute_bars, period_minutes)
    if evidence_days and gates.gate_on_evidence:
        hi = max(hi, poisson_quantile(2.0 * gates.min_validation_trades / evidence_days, 0.99))
    if orders_per_day:
        hi = max(hi, poisson_quantile(orders_per_day, 0.999))
    return lo, hi


def poisson_quantile(rate: float, q: float) -> int:
    """The smallest k with P(N <= k) >= q for N ~ Poisson(rate)."""
    k, p = 0, math.exp(-rate)
    total = p
    while total < q:
        k += 1
        p *= rate / k
        total += p
    return k


def shadow_days_for(instrument: str, gates: GateConfig, range_end_ns: int) -> tuple[list[dt.date], str]:
    """The complete recorded days the shadow gate may judge on (with the days before them for
    the warm-up), and why none when there are recordings but they cannot serve: fewer than
    ``shadow_days`` complete days, or not adjacent to the training range (a recording that
    starts nine years after it says nothing about a model trained on it)."""
    days = [d for d in recorded_days(gates.ticks_dir, instrument) if gates.last_day is None or d <= gates.last_day]
    if not days:
        return [], ""
    judged = days[-gates.shadow_days :]
    end = (dt.date(1970, 1, 1) + dt.timedelta(days=range_end_ns // NS_PER_DAY)) if range_end_ns < 1 << 62 else None
    if len(judged) < gates.shadow_days:
        why = f"only {len(days)} complete recorded day(s) ({days[-1]}), gates.shadow_days = {gates.shadow_days}"
    elif end is not None and not (
        end - dt.timedelta(days=1) <= judged[0] <= end + dt.timedelta(gates.shadow_max_gap_days)
    ):
        why = (
            f"the recorded days {judged[0]} .. {judged[-1]} are not adjacent to the training range ending {end} "
            f"(gates.shadow_max_gap_days = {gates.shadow_max_gap_days})"
        )
    else:
        return days, ""
    return [], f"shadow gate on the range's last {gates.shadow_days} days, not recordings: {why}"


def shadow_ticks(
    cfg: MarketConfig, spec: FeatureSpec, gates: GateConfig, end_ns: int, days: list[dt.date] | None = None
) -> tuple[np.ndarray, list[str], str]:
    """Ticks to replay and the days to judge: the last K recorded days (``days``, default
    ``shadow_days_for``), else the last K trading days of historical bars before ``end_ns``
    (with warm-up bars before them)."""
    inst = cfg.instrument.symbol
    if days is None:
        days = shadow_days_for(inst, gates, end_ns)[0]
    if days:
        judged = days[-gates.shadow_days :]
        warm_days = max(1, math.ceil(spec.window * cfg.bars.period_minutes / 1440)) + 1
        use = days[max(0, len(days) - len(judged) - warm_days) :]
        ticks = np.concatenate([read_tick_file(day_path(gates.ticks_dir, inst, d))[0] for d in use])
        return ticks, [d.isoformat() for d in judged], "recorded ticks"
    bars, _ = load_period_bars(cfg.data.bars_csv, cfg.bars.period_minutes, cfg.bars.max_jump, cfg.instrument.symbol)
    bars = bars[bars["ts_ns"] < end_ns]
    bar_days = np.unique(bars["ts_ns"] // NS_PER_DAY)
    if len(bar_days) < gates.shadow_days:
        raise DataError(f"{cfg.data.bars_csv}: fewer than {gates.shadow_days} trading days before the gate window")
    judged_days = bar_days[-gates.shadow_days :]
    first = int(np.searchsorted(bars["ts_ns"], judged_days[0] * NS_PER_DAY))
    if first < spec.window - 1:
        raise DataError(
            f"{cfg.data.bars_csv}: not enough bars before the shadow days for the {spec.window}-bar feature warm-up"
        )
    sel = bars[first - (spec.window - 1) :]  # the first decision falls on the first judged bar
    ticks = bars_to_ticks(
        sel, cfg.bars.period_ns, cfg.data.bars_side, cfg.data.modelled_spread_pips * cfg.instrument.pip_size
    )
    iso = [(dt.date(1970, 1, 1) + dt.timedelta(days=int(d))).isoformat() for d in judged_days]
    return ticks, iso, "bar-derived (historical tail)"


def shadow_replay(
    policy: Policy,
    cfg: MarketConfig,
    spec: FeatureSpec,
    gates: GateConfig,
    ticks: np.ndarray,
    judged: list[str],
    source: str,
    cycle: int,
    workdir: Path | None = None,
    evidence_days: int | None = None,
    orders_per_day: float | None = None,
    initial_equity: float | None = None,
) -> ShadowResult:
    """Replay through the daemon's Slot, PaperBroker, RiskEngine and Store, day by day with
    fixed seeds (torch 123 + cycle + day, numpy 456 + cycle + day). ``evidence_days``: the
    gate window's trading days (the activity band then agrees with the evidence gate)."""
    ex = ExecutionModel.from_config(cfg.execution, cfg.instrument)
    lo, hi = trades_range(gates, cfg.bars.period_minutes, evidence_days, orders_per_day)
    tmp = tempfile.TemporaryDirectory() if workdir is None else None
    base = tmp.name if tmp is not None else workdir
    assert base is not None
    db = Path(base) / f"shadow-cycle{cycle}.db"
    if db.exists():
        db.unlink()

    from stairway.daemon.config import DaemonConfig

    risk_cfg = load_config(DaemonConfig, gates.daemon_config).risk  # the daemon's own limits

    others = cross_quotes(cfg, spec, gates, ticks, source)

    def slot_for(store: Store, symbol: str, pol: Policy) -> Slot:
        return Slot(
            "shadow",
            symbol,
            spec,
            cfg.bars.builder(),
            ex,
            pol,
            PaperBroker(ex),
            store,
            Account(
                RiskEngine(risk_cfg, cfg.instrument.lot_units, cfg.bars.period_minutes), cfg.account.initial_equity
            ),
            SlotOptions(cfg.instrument.calendar()),
        )

    async def go() -> list[tuple]:
        store = await Store.open(db)
        slot = slot_for(store, cfg.instrument.symbol, policy)
        if others:  # the other instruments build their bars (and hold) on one merged feed, as live
            from stairway.core.policy import ObserveOnlyPolicy
            from stairway.daemon.cross_view import wire
            from stairway.daemon.feeds.replay import ReplayFeed

            slots = {cfg.instrument.symbol: slot}
            slots |= {s: slot_for(store, s, ObserveOnlyPolicy("cross instrument")) for s in others}
            wire(slots)
            day = None
            feed = ReplayFeed({cfg.instrument.symbol: ticks, **others}, 1 << 16, period_ns=cfg.bars.period_ns)
            async for sym, part in feed.batches():
                d = int(part["ts_ns"][0]) // NS_PER_DAY
                if sym == cfg.instrument.symbol and d != day:  # the seeds of the one-instrument path
                    day = d
                    k = len(np.unique(ticks["ts_ns"][ticks["ts_ns"] < d * NS_PER_DAY] // NS_PER_DAY))
                    torch.manual_seed(123 + cycle + k)
                    np.random.seed(456 + cycle + k)
                slots[sym].on_ticks(part)
                await store.flush()
            for s in others:
                slots[s].finish()
        else:
            days = ticks["ts_ns"] // NS_PER_DAY
            bounds = np.flatnonzero(np.diff(days)) + 1
            for day_index, chunk in enumerate(np.split(ticks, bounds)):
                torch.manual_seed(123 + cycle + day_index)
                np.random.seed(456 + cycle + day_index)
                slot.on_ticks(chunk)
                await store.flush()
        slot.finish()
        await store.flush()
        await store.close()
        with sqlite3.connect(db) as c:
            return c.execute(
                "SELECT session_date, pnl, max_drawdown_pct, orders, decisions FROM session_metrics "
                "WHERE instrument = ? ORDER BY session_date",
                (cfg.instrument.symbol,),
            ).fetchall()

    try:
        rows = {r[0]: r for r in asyncio.run(go())}
    finally:
        if tmp:
            tmp.cleanup()
    verdicts = []
    for day in judged:
        _, pnl, dd, trades, decisions = rows.get(day, (day, 0.0, 0.0, 0, 0))
        reasons = []
        if decisions == 0:
            reasons.append("no decisions (no data or not warmed up)")
        if gates.min_day_pnl is not None and pnl < gates.min_day_pnl:
            reasons.append(f"PnL {pnl:+.2f} < {gates.min_day_pnl:+.2f}")
        if dd > gates.max_day_drawdown_pct:
            reasons.append(f"max drawdown {dd:.2f} % > {gates.max_day_drawdown_pct:.2f} %")
        if not lo <= trades <= hi:
            reasons.append(f"{trades} trades outside {lo}-{hi}")
        verdicts.append(DayVerdict(day, pnl, dd, trades, decisions, not reasons, reasons))
    together = []
    total = sum(v.pnl for v in verdicts)
    floor = -gates.shadow_max_loss_pct / 100.0 * (initial_equity or cfg.account.initial_equity)
    if verdicts and total < floor:
        together.append(
            f"the {len(verdicts)} shadow days lost {total:+.2f} < {floor:+.2f} ({gates.shadow_max_loss_pct:g} %)"
        )
    return ShadowResult(source, verdicts, (lo, hi), together)


def relative_l2(candidate: dict, gold: dict) -> float:
    """||candidate - gold|| / ||gold|| over all tensors (numpy or torch); the two must share
    names and shapes."""
    candidate, gold = numpy_tensors(candidate), numpy_tensors(gold)
    if candidate.keys() != gold.keys() or any(candidate[k].shape != gold[k].shape for k in gold):
        raise ConfigError("candidate and gold have different tensors; drift is undefined (architecture changed)")
    num = sum(float(((candidate[k].astype(np.float64) - gold[k]) ** 2).sum()) for k in gold)
    den = sum(float((gold[k].astype(np.float64) ** 2).sum()) for k in gold)
    return math.sqrt(num / den) if den > 0 else math.inf


def drift_from_gold(cand, gold) -> tuple[float | None, str]:
    """(relative L2 drift of the candidate's weights from gold's, a note): None and "n/a
    (architecture changed: ...)" when they are of another kind or shape (a MuZero candidate
    against a PPO gold): drift is then undefined, and the candidate is gated on the rest."""
    if gold is None:
        return None, ""
    a, b = numpy_tensors(cand.tensors), numpy_tensors(gold.tensors)
    if (
        cand.meta.policy_kind != gold.meta.policy_kind
        or a.keys() != b.keys()
        or any(a[k].shape != b[k].shape for k in b)
    ):
        why = f"{cand.meta.policy_kind} candidate, {gold.meta.policy_kind} gold {gold.sha[:12]}"
        return None, f"n/a (architecture changed: {why})"
    return relative_l2(a, b), ""


def verdict_dict(
    pre: tuple[bool, str],
    shadow: ShadowResult,
    drift: float | None,
    robustness: dict,
    passed: bool,
    evidence_result: dict | None = None,
) -> dict:
    return {
        "passed": passed,
        "evidence": evidence_result,
        "preflight": {"passed": pre[0], "detail": pre[1]},
        "shadow": {
            "passed": shadow.passed,
            "source": shadow.source,
            "trades_range": list(shadow.trades_range),
            "days": [asdict(d) for d in shadow.days],
            "reasons": shadow.reasons,
        },
        "drift_rel_l2": drift,
        "robustness": robustness,
    }


def evidence(validation: dict, baselines: dict[str, dict], shadow: ShadowResult, gates: GateConfig) -> dict:
    """Gates a do-nothing, buy-and-hold, one-trade or churning model cannot pass: activity on
    the gate window (trades, a hold-rate band) and in the shadow window (orders), and a
    gate-window return above always-flat's and buy-and-hold's by a margin, costs included."""
    reasons = []
    trades, hold = int(validation["trades"]), float(validation["hold_rate"])
    if trades < gates.min_validation_trades:
        reasons.append(f"{trades} gate-window trades < {gates.min_validation_trades}")
    lo, hi = gates.hold_rate_band
    if not lo <= hold <= hi:
        reasons.append(f"hold rate {hold:.0%} outside {lo:.0%}-{hi:.0%}")
    orders = sum(d.trades for d in shadow.days)
    if orders < gates.min_shadow_orders:
        reasons.append(f"{orders} orders over the {len(shadow.days)} shadow days < {gates.min_shadow_orders}")
    mine = float(validation["pnl_pct"])
    for name in ("flat", "buy_and_hold"):
        theirs = float(baselines[name]["pnl_pct"])
        if mine < theirs + gates.beat_margin_pct:
            reasons.append(
                f"gate-window return {mine:+.3f} % does not beat {name} ({theirs:+.3f} %) by {gates.beat_margin_pct:g} %"
            )
    return {
        "passed": not reasons or not gates.gate_on_evidence,
        "gating": gates.gate_on_evidence,
        "reasons": reasons,
        "validation_trades": trades,
        "hold_rate": hold,
        "shadow_orders": orders,
    }


def robustness_verdict(
    validation: dict, car25: float, dd95: float, wfe: float, gates: GateConfig
) -> tuple[bool, list[str]]:
    """Bandy/Van Tharp minimums, judged only from min_robustness_trades trades on (fewer: fail)."""
    if not gates.gate_on_robustness:
        return True, []
    n = int(validation["trades"])
    if n < gates.min_robustness_trades:
        return False, [f"too few trades ({n}) for robustness statistics (need {gates.min_robustness_trades})"]
    checks = [
        (car25 >= gates.min_car25_pct, f"CAR25 {car25:.2f} % < {gates.min_car25_pct:g} %"),
        (dd95 <= gates.max_dd95_pct, f"DD95 {dd95:.2f} % > {gates.max_dd95_pct:g} %"),
        (
            wfe >= gates.min_walk_forward_efficiency,
            f"walk-forward efficiency {wfe:.2f} < {gates.min_walk_forward_efficiency:g}",
        ),
        (validation["sqn"] >= gates.min_sqn, f"SQN {validation['sqn']:+.2f} < {gates.min_sqn:g}"),
        (
            validation["profit_factor"] >= gates.min_profit_factor,
            f"profit factor {validation['profit_factor']:.2f} < {gates.min_profit_factor:g}",
        ),
    ]
    reasons = [why for ok, why in checks if not ok]
    return not reasons, reasons
