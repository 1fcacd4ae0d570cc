"""The policy-kind registry: ``load_policy`` turns a checkpoint into the Policy the daemon,
the hot-swap verifier, the gates, the evaluation and the demo run, choosing the kind from
the checkpoint's metadata. A new kind adds one loader here.

Every policy comes back wrapped in ``ConfidenceFloor`` with the checkpoint's
``inference.min_confidence`` (0 for checkpoints older than that setting): the one place
where a low-confidence action becomes HOLD, for every kind.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from stairway.core.checkpoint import Checkpoint
from stairway.core.errors import CheckpointError
from stairway.core.features import FeatureSpec
from stairway.core.policy import ConfidenceFloor, EnsemblePolicy, ModelCard, Policy, PPOPolicy, ppo_shapes
from stairway.core.types import ACTION_NAMES
from stairway.core.weights import check_shapes


def _fit(ck: Checkpoint, shapes: dict[str, tuple[int, ...]], source: str) -> None:
    """Strict: every tensor of the network present, none else, every shape right."""
    try:
        check_shapes(ck.tensors, shapes)
    except ValueError as e:
        raise CheckpointError(f"{source}: weights do not fit the network: {e}") from None


def _load_ppo(ck: Checkpoint, spec: FeatureSpec, arch: dict[str, Any], source: str) -> Policy:
    try:
        shapes = ppo_shapes(spec.obs_dim, int(arch["hidden"]))
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{source}: PPO arch {arch} lacks a valid 'hidden': {e!r}") from None
    _fit(ck, shapes, source)
    return PPOPolicy(ck.tensors, ck.sha)


# MuZero's settings a checkpoint may carry, with the range a daemon accepts: outside it a search
# allocates gigabytes, takes minutes per decision or divides by zero (closed intervals)
MUZERO_BOUNDS: dict[str, tuple[float, float]] = {
    "inference.simulations": (1, 512),
    "inference.c_puct": (1e-3, 100.0),
    "inference.temperature": (0.0, 10.0),
    "inference.discount": (1e-3, 1.0),
    "inference.seed": (0, 2**63 - 1),
    "latent": (1, 4096),
    "hidden": (1, 4096),
    "n_actions": (len(ACTION_NAMES), len(ACTION_NAMES)),
}
INTEGERS = {"inference.simulations", "inference.seed", "latent", "hidden", "n_actions", "members"}


def _bounded(arch: dict[str, Any], bounds: dict[str, tuple[float, float]], source: str) -> None:
    """Each bounded setting the checkpoint gives is a number in its range (integers where
    counted), or CheckpointError naming the field and the value."""
    for field, (lo, hi) in bounds.items():
        node: Any = arch
        for part in field.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            continue  # not given: the kind's default
        whole = isinstance(node, int) and not isinstance(node, bool)
        if not (whole or (isinstance(node, float) and field not in INTEGERS)) or not lo <= node <= hi:
            kind = "an integer" if field in INTEGERS else "a number"
            raise CheckpointError(f"{source}: arch {field} = {node!r} must be {kind} in [{lo:g}, {hi:g}]")


def _finite_numbers(value: Any, where: str, source: str) -> None:
    """No NaN or infinity anywhere in a checkpoint's metadata numbers (JSON accepts NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise CheckpointError(f"{source}: {where} = {value!r} is not a finite number")
    if isinstance(value, dict):
        for k, v in value.items():
            _finite_numbers(v, f"{where}.{k}", source)
    elif isinstance(value, (list, tuple)):
        for k, v in enumerate(value):
            _finite_numbers(v, f"{where}[{k}]", source)


def _load_muzero(ck: Checkpoint, spec: FeatureSpec, arch: dict[str, Any], source: str) -> Policy:
    from stairway.core.muzero_net import LAYOUT, muzero_shapes
    from stairway.core.muzero_policy import MuZeroPolicy

    if arch.get("layout", 1) != LAYOUT:
        raise CheckpointError(
            f"{source}: MuZero layout {arch.get('layout', 1)!r}, this release runs layout {LAYOUT} only "
            "(layout 1 learned reward and value per action; retrain the model)"
        )
    _bounded(arch, MUZERO_BOUNDS, source)
    try:
        shapes = muzero_shapes(spec.obs_dim, arch)
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{source}: MuZero arch {arch} is incomplete or invalid: {e!r}") from None
    _fit(ck, shapes, source)
    try:
        return MuZeroPolicy(ck.tensors, spec.obs_dim, arch, ck.sha)
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{source}: MuZero arch {arch} is incomplete or invalid: {e!r}") from None


def _load_ensemble(ck: Checkpoint, spec: FeatureSpec, arch: dict[str, Any], source: str) -> Policy:
    """A seed ensemble of PPO nets: ``arch`` {"members": n, "hidden": h}; tensors ``m<i>.<name>``."""
    _bounded(arch, {"members": (1, 64), "hidden": (1, 4096)}, source)
    try:
        n, hidden = int(arch["members"]), int(arch["hidden"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{source}: ensemble arch {arch} lacks 'members' or 'hidden': {e!r}") from None
    one = ppo_shapes(spec.obs_dim, hidden)
    _fit(ck, {f"m{i}.{k}": v for i in range(n) for k, v in one.items()}, source)
    members = [PPOPolicy({k: ck.tensors[f"m{i}.{k}"] for k in one}) for i in range(n)]
    return EnsemblePolicy(members, ck.sha)


def ensemble_tensors(members: list[dict[str, Any]]) -> dict[str, Any]:
    """The checkpoint tensors of an ensemble of PPO state dicts (``m<i>.<name>``)."""
    return {f"m{i}.{k}": v for i, state in enumerate(members) for k, v in state.items()}


LOADERS: dict[str, Callable[[Checkpoint, FeatureSpec, dict[str, Any], str], Policy]] = {
    "ppo": _load_ppo,
    "muzero": _load_muzero,
    "ensemble": _load_ensemble,
}


def load_policy(ck: Checkpoint, spec: FeatureSpec, source: str = "checkpoint") -> ConfidenceFloor:
    """The checkpoint's policy, ready to act (no compatibility checks: check_compatible)."""
    loader = LOADERS.get(ck.meta.policy_kind)
    if loader is None:
        raise CheckpointError(
            f"{source}: policy kind {ck.meta.policy_kind!r} is not one this build can run "
            f"(known: {', '.join(sorted(LOADERS))})"
        )
    try:
        arch = ck.meta.architecture()
    except CheckpointError as e:
        raise CheckpointError(f"{source}: {e}") from None
    _finite_numbers(arch, "arch", source)
    for name, value in vars(ck.meta).items():
        _finite_numbers(value, f"metadata {name}", source)
    floor = arch["inference"].get("min_confidence", 0.0)
    if not isinstance(floor, (int, float)) or not 0.0 <= floor <= 1.0:
        raise CheckpointError(f"{source}: inference.min_confidence = {floor!r} must be a number in [0, 1]")
    policy = ConfidenceFloor(loader(ck, spec, arch, source), float(floor))
    try:  # what the trainer measured on validation (the live guard shows it next to live)
        extra = json.loads(ck.meta.extra or "{}")
    except ValueError:
        extra = {}
    extra = extra if isinstance(extra, dict) else {}
    validation = extra.get("validation")
    validation = validation if isinstance(validation, dict) else {}
    sf = validation.get("safe_f")
    if sf is not None and (not isinstance(sf, (int, float)) or not 0.0 <= sf <= 1.0):
        raise CheckpointError(f"{source}: validation.safe_f = {sf!r} must be a number in [0, 1]")
    profile = extra.get("feature_profile")
    policy.sha = ck.sha
    policy.card = ModelCard(
        ck.meta.created_at,
        validation,
        None if sf is None else float(sf),
        profile if isinstance(profile, dict) else {},  # core.feature_drift
    )
    return policy
