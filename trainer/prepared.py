"""The data a training run works on: the range loaded and split (train | selection | gate
window | shadow-gate tail), its indexed session starts, and the env every learner trains in. Shared by
`train run` (trainer.cycles), walk-forward folds and sweeps."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import structlog

from stairway.core.errors import ConfigError
from stairway.core.execution import ExecutionModel
from stairway.core.features import FeatureSpec
from stairway.core.types import NS_PER_DAY, NS_PER_MINUTE
from stairway.trainer.config import TrainerConfig
from stairway.trainer.env import VecTradingEnv
from stairway.trainer.history import MarketHistory, load_history
from stairway.trainer.sessions import SessionIndex, index_sessions
from stairway.trainer.shaping import RewardShaper

log = structlog.get_logger("trainer")


def fmt_day(ts_ns: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(ts_ns // 10**9))


@dataclass
class PreparedData:
    spec: FeatureSpec
    ex: ExecutionModel
    history: MarketHistory
    split: int  # the first bar not trained on: the selection window starts here
    gate_first: int  # the first bar of the shadow-gate tail (len(history) without one)
    session_len: int
    split_desc: str
    recorded: list
    select_end: int  # the first bar of the gate window (== gate_first without one)


def prepare_data(cfg: TrainerConfig) -> PreparedData:
    """Load the range and split it: train | validation | shadow-gate tail (last K trading
    days, only when the daemon has recorded no ticks). Shared by cycles and sweeps."""
    from stairway.trainer.gates import shadow_days_for

    spec = FeatureSpec.from_config(cfg)
    if cfg.train.range is None:
        raise ConfigError("train.rolling_days: resolve the data store first (trainer.data_store.resolve_training_data)")
    start_ns, end_ns = cfg.train.range.ns()
    history = load_history(cfg, spec, start_ns, end_ns)
    recorded, why = shadow_days_for(cfg.instrument.symbol, cfg.gates, end_ns)  # complete, adjacent days only
    if why:
        log.warning("shadow_gate_not_on_recordings", reason=why)
    data = split_history(cfg, spec, history, recorded, shadow_tail=not recorded)
    if why:
        data.split_desc += f" ({why})"
    return data


def split_history(
    cfg: TrainerConfig, spec: FeatureSpec, history, recorded: list, shadow_tail: bool, gate_window: bool = True
) -> PreparedData:
    """train | selection | gate window (together the last ``holdout_fraction``; the gate window
    is the later ``gate_window_fraction`` of it) | the shadow gate's last K trading days when
    ``shadow_tail``. A walk-forward fold has neither a gate window nor a shadow tail: its test
    window follows, and the whole holdout selects."""
    ex = ExecutionModel.from_config(cfg.execution, cfg.instrument)
    ts = history.bars["ts_ns"]
    n = len(history)
    if not shadow_tail:
        gate_first = n
    else:
        days = np.unique(ts // NS_PER_DAY)
        if len(days) <= cfg.gates.shadow_days:
            raise ConfigError(
                f"train.range holds {len(days)} trading days; the shadow gate needs more than "
                f"gates.shadow_days = {cfg.gates.shadow_days}"
            )
        gate_first = int(np.searchsorted(ts, days[-cfg.gates.shadow_days] * NS_PER_DAY))
    split = int(gate_first * (1.0 - cfg.train.holdout_fraction))
    session_len = cfg.bars.bars(cfg.train.session_minutes, "train.session_minutes")
    usable = split - 2 - (spec.window - 1) + 1
    if session_len > usable:
        raise ConfigError(
            f"train.session_minutes = {cfg.train.session_minutes} ({session_len} bars) is longer than "
            f"the {usable} usable training bars in {fmt_day(int(ts[0]))} .. {fmt_day(int(ts[-1]))} (after "
            f"the {spec.window}-bar warm-up and the held-back tail)"
        )
    select_end = gate_first
    if gate_window:
        select_end = split + int((gate_first - split) * (1.0 - cfg.train.gate_window_fraction))
    if select_end - 2 - split < 1 or (gate_window and gate_first - 2 - select_end < 1):
        raise ConfigError(
            f"train.holdout_fraction = {cfg.train.holdout_fraction} (gate_window_fraction "
            f"{cfg.train.gate_window_fraction}) leaves no bars to select or gate on"
        )
    split_desc = (
        f"train {fmt_day(int(ts[0]))} .. {fmt_day(int(ts[split - 1]))}, selection {fmt_day(int(ts[split]))} .. "
        f"{fmt_day(int(ts[select_end - 1]))}"
    )
    if gate_window:
        split_desc += f", gate window {fmt_day(int(ts[select_end]))} .. {fmt_day(int(ts[gate_first - 1]))}"
    if shadow_tail:
        split_desc += f", shadow gate {fmt_day(int(ts[gate_first]))} .. {fmt_day(int(ts[-1]))}"
    elif recorded:
        k = min(len(recorded), cfg.gates.shadow_days)
        split_desc += f", shadow gate on the last {k} of {len(recorded)} recorded day(s)"
    return PreparedData(spec, ex, history, split, gate_first, session_len, split_desc, recorded, select_end)


def training_env(cfg: TrainerConfig, data: PreparedData, seed: int | None = None) -> tuple[VecTradingEnv, SessionIndex]:
    """The env every learner trains in (cycles, sweep trials, benchmarks): the configured
    algorithm's number of sessions on bars [0, split - 2], the reward shaper, the daemon's risk
    rules and the indexed session starts."""
    num_envs = cfg.muzero.num_envs if cfg.train.algo == "muzero" else cfg.ppo.num_envs
    sessions = session_index(cfg, data)
    env = VecTradingEnv(
        data.history,
        data.spec,
        data.ex,
        cfg.account.initial_equity,
        num_envs,
        data.session_len,
        seed=cfg.train.seed if seed is None else seed,
        first_bar=0,
        last_bar=data.split - 2,
        reward_scale=cfg.ppo.reward_scale,
        shaper=RewardShaper(cfg.shaping, num_envs, cfg.ppo.reward_scale),
        risk=cfg.risk,
        session_starts=sessions.starts,
    )
    return env, sessions


def session_index(cfg: TrainerConfig, data: PreparedData) -> SessionIndex:
    """The training range's session starts (trainer.sessions), refused with the counts when
    the checks leave none."""
    t = cfg.train
    gap = None if t.max_gap_minutes is None else int(t.max_gap_minutes * NS_PER_MINUTE)
    lo = data.spec.window - 1
    idx = index_sessions(
        data.history.bars["ts_ns"], lo, data.split - 2, data.session_len, cfg.bars.period_ns, gap, t.reject_weekend
    )
    log.info("sessions_indexed", **idx.log_fields())
    if len(idx.starts) == 0:
        raise ConfigError(
            f"train.max_gap_minutes = {t.max_gap_minutes}, train.reject_weekend = {t.reject_weekend} "
            f"and train.session_minutes = {t.session_minutes}: {idx.describe()}; nothing to train on"
        )
    return idx
