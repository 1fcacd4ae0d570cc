"""Checkpoint hot-swap: watch models/current, verify a new target in a worker thread, hand
the new policy to the slot, which swaps it in between two bars.

Verification: the file's hash equals its content-addressed name; gate.db records a passed
gate or a forced promotion; feature spec, observation shape and action space match ours;
a smoke inference on the live observation is finite. A refused checkpoint is logged,
counted and recorded, and the old model keeps trading; the same target is not retried
until the link changes again.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import structlog

from stairway.core.checkpoint import check_compatible, read_checkpoint
from stairway.core.errors import CheckpointError, StairwayError
from stairway.core.features import FeatureSpec
from stairway.core.policies import load_policy
from stairway.core.policy import Policy
from stairway.core.types import ACTION_NAMES
from stairway.daemon.aio import sleep_or_stop

log = structlog.get_logger("hot_swap")


def link_target(link: Path) -> tuple[str, int] | None:
    """(target, inode of the link itself) of models/current, or None when there is no link.
    A dangling link is a target too: it must be seen, and refused."""
    try:
        return os.readlink(link), os.lstat(link).st_ino
    except FileNotFoundError:
        return None
    except OSError:  # not a symlink: a plain file (or directory) put there by hand
        try:
            return str(link), os.lstat(link).st_ino
        except FileNotFoundError:
            return None


def gate_status(gate_db: Path, sha: str) -> tuple[str | None, str | None]:
    """(status, forced_reason) from the trainer's gate.db, opened read-only."""
    import sqlite3

    if not Path(gate_db).is_file():
        return None, None
    try:
        with sqlite3.connect(f"file:{gate_db}?mode=ro", uri=True) as c:
            row = c.execute("SELECT status, forced_reason FROM model_registry WHERE sha = ?", (sha,)).fetchone()
    except sqlite3.Error as e:
        raise CheckpointError(f"{gate_db}: cannot read the gate database: {e}") from None
    return (row[0], row[1]) if row else (None, None)


DEFAULT_BUDGET_SECS = 0.5  # service.inference_budget_ms


def load_verified(
    link: Path,
    spec: FeatureSpec,
    gate_db: Path | None,
    obs: np.ndarray | None,
    market: dict | None = None,
    budget_secs: float = DEFAULT_BUDGET_SECS,
) -> Policy:
    """Everything a checkpoint must pass before it may trade; raises CheckpointError. Any
    other exception on the way (an unreadable file, a policy that cannot be built, a search
    that divides by zero or runs out of memory) becomes one: a bad checkpoint is refused, the
    old model keeps trading, a start-up falls back to previous/gold."""
    try:
        return _load_verified(link, spec, gate_db, obs, market or {}, budget_secs)
    except StairwayError:
        raise
    except OSError as e:
        raise CheckpointError(f"{link}: cannot read the checkpoint: {e}") from None
    except Exception as e:  # noqa: BLE001 - every failure of an untrusted file is a refusal
        raise CheckpointError(f"{link}: loading or smoke inference failed: {type(e).__name__}: {e}") from None


def _load_verified(
    link: Path, spec: FeatureSpec, gate_db: Path | None, obs: np.ndarray | None, market: dict, budget_secs: float
) -> Policy:
    ck = read_checkpoint(link)
    market = dict(market)
    needs_safe_f = bool(market.pop("needs_safe_f", False))
    check_compatible(
        ck.meta,
        str(link),
        feature_spec_hash=spec.hash,
        feature_spec=spec.to_json(),
        obs_shape=(spec.obs_dim,),
        action_space=ACTION_NAMES,
        **market,
    )
    if gate_db is not None:
        status, forced = gate_status(gate_db, ck.sha)
        if status != "passed" and not forced:
            raise CheckpointError(
                f"{link}: {ck.sha[:12]} has no passing gate record in {gate_db} "
                f"(status {status or 'unknown'}) and no recorded forced promotion"
            )
    policy = load_policy(ck, spec, str(link))  # the kind comes from the checkpoint's metadata
    if needs_safe_f and policy.card.safe_f is None:
        raise CheckpointError(
            f"{link}: execution.safe_f_sizing is on but {ck.sha[:12]} records no safe-f "
            "(trained without safe_f_sizing): retrain, or turn it off"
        )
    probe = obs if obs is not None else np.zeros(spec.obs_dim)
    try:
        policy.act(probe)  # the first call may compile (numba's cache): not timed
        t0 = time.perf_counter()
        action, confidence = policy.act(probe)
        took = time.perf_counter() - t0
    except Exception as e:  # noqa: BLE001 - ZeroDivisionError, MemoryError, ...: a refusal
        raise CheckpointError(
            f"{link}: smoke inference on the live observation failed: {type(e).__name__}: {e}"
        ) from None
    policy.reset()  # the smoke calls leave nothing behind
    if not (0 <= action < len(ACTION_NAMES) and np.isfinite(confidence)):
        raise CheckpointError(
            f"{link}: smoke inference on the live observation is not finite (action {action}, confidence {confidence})"
        )
    if took > budget_secs:
        raise CheckpointError(
            f"{link}: one inference took {took * 1000:.0f} ms, over the budget of {budget_secs * 1000:.0f} ms "
            "(service.inference_budget_ms): it would stall every decision"
        )
    return policy


@dataclass
class SwapStats:
    swaps_requested: int = 0
    refused: int = 0
    last_refusal: str = ""
    last_latency_s: float = 0.0


class ModelWatcher:
    """Polls models/current; verified policies go to ``on_policy``, refusals to ``on_refused``."""

    def __init__(
        self,
        models_dir: Path,
        spec: FeatureSpec,
        gate_db: Path | None,
        poll_secs: float,
        live_obs: Callable[[], np.ndarray | None],
        current_sha: str,
        market: dict | None = None,
        budget_secs: float = DEFAULT_BUDGET_SECS,
    ) -> None:
        self.link = Path(models_dir) / "current"
        self.budget_secs = budget_secs
        self.spec, self.gate_db, self.poll_secs = spec, gate_db, poll_secs
        self.market = market
        self.live_obs = live_obs
        self.loaded_sha = current_sha
        self.seen = link_target(self.link)
        self.stats = SwapStats()

    async def run(
        self, stop: asyncio.Event, on_policy: Callable[[Policy, float], None], on_refused: Callable[[str, str], None]
    ) -> None:
        while not stop.is_set():
            try:
                target = await asyncio.to_thread(link_target, self.link)
            except OSError as e:  # models/ unreadable: nothing new can be verified; keep trading
                target = (f"{self.link} (unreadable: {e.strerror or e})", -1)
            if target is not None and target != self.seen:
                self.seen = target
                t0 = time.perf_counter()
                obs = self.live_obs()
                try:
                    policy = await asyncio.to_thread(
                        load_verified, self.link, self.spec, self.gate_db, obs, self.market, self.budget_secs
                    )
                except StairwayError as e:
                    self.stats.refused += 1
                    self.stats.last_refusal = str(e)
                    log.error("model_refused", target=target[0], reason=str(e))
                    on_refused(target[0], str(e))
                else:
                    if policy.sha != self.loaded_sha:
                        self.loaded_sha = policy.sha
                        self.stats.swaps_requested += 1
                        self.stats.last_latency_s = time.perf_counter() - t0
                        log.info("model_verified", sha=policy.sha[:12], verify_s=round(self.stats.last_latency_s, 4))
                        on_policy(policy, t0)
            await sleep_or_stop(stop, self.poll_secs)
