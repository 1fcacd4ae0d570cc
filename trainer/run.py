"""`stairway train run`: learn on the head of a date range, evaluate on its held-back tail,
save a checkpoint to the registry and point models/current at it."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import structlog

from core.checkpoint import CheckpointMeta, publish, save_checkpoint
from core.errors import ConfigError
from core.execution import ExecutionModel
from core.features import FeatureSpec
from core.types import ACTION_NAMES
from trainer.config import TrainerConfig
from trainer.env import VecTradingEnv
from trainer.evaluation import evaluate
from trainer.history import load_history
from trainer.ppo import PPOProgress, train_ppo

log = structlog.get_logger("trainer")


@dataclass
class TrainResult:
    sha: str
    in_sample: dict[str, float]
    holdout: dict[str, float]
    holdout_range: str
    steps: int
    steps_per_s: float
    seconds: float


def _day(ts_ns: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(ts_ns // 10**9))


def run_training(cfg: TrainerConfig, publish_current: bool = True) -> TrainResult:
    t0 = time.perf_counter()
    spec = FeatureSpec.from_config(cfg)
    ex = ExecutionModel.from_config(cfg.execution, cfg.instrument)
    start_ns, end_ns = cfg.train.range.ns()
    history = load_history(cfg, spec, start_ns, end_ns)
    split = int(len(history) * (1.0 - cfg.train.holdout_fraction))
    session_len = cfg.bars.bars(cfg.train.session_minutes, "train.session_minutes")
    ts = history.bars["ts_ns"]
    usable = split - 2 - (spec.window - 1) + 1
    if session_len > usable:
        raise ConfigError(f"train.session_minutes = {cfg.train.session_minutes} ({session_len} bars) is longer than "
                          f"the {usable} usable training bars in train.range (after the {spec.window}-bar warm-up "
                          "and the held-back tail)")
    if len(history) - 2 - split < 1:
        raise ConfigError(f"train.holdout_fraction = {cfg.train.holdout_fraction} leaves no bars to evaluate on")
    log.info("training_started", bars=len(history), train_bars=split, holdout_bars=len(history) - split,
             train_from=_day(int(ts[0])), holdout_from=_day(int(ts[split])), session_bars=session_len,
             feature_spec=spec.hash, obs_dim=spec.obs_dim, total_steps=cfg.ppo.total_steps)
    env = VecTradingEnv(history, spec, ex, cfg.account.initial_equity, cfg.ppo.num_envs, session_len,
                        seed=cfg.train.seed, first_bar=0, last_bar=split - 2, reward_scale=cfg.ppo.reward_scale)
    last: list[PPOProgress] = []
    every = max(1, cfg.ppo.total_steps // (cfg.ppo.num_envs * cfg.ppo.num_steps) // 10)

    def progress(p: PPOProgress) -> None:
        last[:] = [p]
        if (p.global_step // (cfg.ppo.num_envs * cfg.ppo.num_steps)) % every == 0:
            log.info("train_progress", step=p.global_step, steps_per_s=round(p.steps_per_s),
                     mean_reward=round(p.mean_reward, 5), entropy=round(p.entropy, 3))

    net = train_ppo(env, cfg.ppo, cfg.train.seed, on_progress=progress)
    in_sample, _ = evaluate(net, history, spec, ex, cfg.account.initial_equity, 0, split - 2)
    holdout, _ = evaluate(net, history, spec, ex, cfg.account.initial_equity, split)
    holdout_range = f"{_day(int(ts[split]))} .. {_day(int(ts[-1]))}"
    meta = CheckpointMeta(
        policy_kind="ppo", feature_spec_hash=spec.hash, feature_spec=spec.to_json(), obs_shape=(spec.obs_dim,),
        action_space=ACTION_NAMES, hidden=cfg.ppo.hidden,
        data_range=f"{cfg.train.range.start}..{cfg.train.range.end} (holdout {holdout_range})",
        extra=json.dumps({"seed": cfg.train.seed, "steps": last[0].global_step if last else 0,
                          "holdout": holdout}, default=float),
    )
    ckpt = save_checkpoint(cfg.train.models_dir, {k: v for k, v in net.state_dict().items()}, meta)
    if publish_current:
        publish(cfg.train.models_dir, ckpt.sha)
    seconds = time.perf_counter() - t0
    log.info("checkpoint_published" if publish_current else "checkpoint_saved", sha=ckpt.sha[:12],
             path=str(ckpt.path), seconds=round(seconds, 1))
    return TrainResult(ckpt.sha, in_sample, holdout, holdout_range, last[0].global_step if last else 0,
                       last[0].steps_per_s if last else 0.0, seconds)

