"""Out-of-sample evaluation of one existing checkpoint (`stairway validate --checkpoint`):
the policy over a date range it was not trained on, next to its baselines, with intervals.
No retraining (the walk-forward with retraining is trainer.walk_forward)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from stairway.core.checkpoint import check_compatible, read_checkpoint
from stairway.core.config import DateRange
from stairway.core.errors import CheckpointError
from stairway.core.execution import ExecutionModel
from stairway.core.features import FeatureSpec
from stairway.core.policies import load_policy
from stairway.core.types import ACTION_NAMES
from stairway.trainer.baselines import Comparison, compare
from stairway.trainer.config import TrainerConfig
from stairway.trainer.evaluation import run_evaluation
from stairway.trainer.history import load_history


@dataclass
class Validation:
    sha: str
    range: DateRange
    trained_on: str
    overlaps_training: bool
    comparison: Comparison


def _trained_range(data_range: str) -> tuple[dt.date, dt.date] | None:
    """The training range a checkpoint records ("2017-01-01..2017-10-01; ..."), if any."""
    try:
        head = data_range.split(";", 1)[0]
        a, b = head.split("..", 1)
        return dt.date.fromisoformat(a.strip()), dt.date.fromisoformat(b.strip())
    except ValueError:
        return None


def validate_checkpoint(cfg: TrainerConfig, sha_or_path: str, rng: DateRange, draws: int = 100) -> Validation:
    models = cfg.train.models_dir
    path = models / "registry" / f"{sha_or_path}.safetensors"
    if not path.is_file():
        matches = sorted((models / "registry").glob(f"{sha_or_path}*.safetensors")) if len(sha_or_path) >= 6 else []
        if len(matches) != 1:
            raise CheckpointError(
                f"{models / 'registry'}: {len(matches)} checkpoints match {sha_or_path!r} "
                "(give at least 6 characters of a unique sha)"
            )
        path = matches[0]
    ck = read_checkpoint(path)
    spec = FeatureSpec.from_config(cfg)
    check_compatible(
        ck.meta,
        str(path),
        feature_spec_hash=spec.hash,
        feature_spec=spec.to_json(),
        obs_shape=(spec.obs_dim,),
        action_space=ACTION_NAMES,
        **cfg.market_identity(),
    )
    trained = _trained_range(ck.meta.data_range)
    overlaps = trained is not None and rng.start < trained[1] and trained[0] < rng.end
    hist = load_history(cfg, spec, *rng.ns())
    ex = ExecutionModel.from_config(cfg.execution, cfg.instrument)
    policy = load_policy(ck, spec, str(path))
    last = len(hist) - 2
    tracker, _ = run_evaluation(policy, hist, spec, ex, cfg.account.initial_equity, 0, last, risk=cfg.risk)
    cmp = compare(
        hist, spec, ex, cfg.account.initial_equity, 0, last, tracker, draws=draws, seed=cfg.train.seed, risk=cfg.risk
    )
    return Validation(ck.sha, rng, ck.meta.data_range or "unknown", overlaps, cmp)
