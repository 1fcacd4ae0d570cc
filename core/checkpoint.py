"""The checkpoint format: safetensors weights with Stairway's metadata in the header.

    models/registry/<sha256>.safetensors   immutable, content-addressed
    models/current -> registry/<sha>.safetensors
    models/previous -> registry/<sha>.safetensors

No pickle is ever read: safetensors holds raw tensors and a JSON header only. Tensors are
read and written as numpy arrays (safetensors.numpy): the daemon never needs torch. A checkpoint
names the feature spec (hash and full JSON), observation shape and action space it was
trained with; ``check_compatible`` refuses any mismatch with a message naming both sides.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load, save

from stairway.core.errors import CheckpointError, CheckpointMismatch
from stairway.core.feature_plugins import spec_difference
from stairway.core.pids import pid_alive
from stairway.core.weights import numpy_tensors

FORMAT = "stairway-checkpoint/1"
_SHA = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class CheckpointMeta:
    policy_kind: str
    feature_spec_hash: str
    feature_spec: str
    obs_shape: tuple[int, ...]
    action_space: tuple[str, ...]
    hidden: int
    data_range: str = ""
    parent: str = ""
    created_at: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
    extra: str = "{}"
    # the market it was trained on ("" / 0: a checkpoint older than these fields)
    instrument: str = ""
    pip_size: float = 0.0
    period_minutes: int = 0
    # the architecture, generically: {"kind": ..., the kind's sizes, "inference": {...}} as JSON
    # ("": a checkpoint older than this field; its kind and ``hidden`` describe it)
    arch: str = ""

    def architecture(self) -> dict[str, Any]:
        """The ``arch`` JSON, or what an older PPO checkpoint's fields say of it."""
        if not self.arch:
            return {"kind": self.policy_kind, "hidden": self.hidden, "inference": {}}
        try:
            d = json.loads(self.arch)
        except json.JSONDecodeError as e:
            raise CheckpointError(f"checkpoint arch is not JSON: {e}") from None
        if not isinstance(d, dict) or d.get("kind") != self.policy_kind:
            raise CheckpointError(f"checkpoint arch {self.arch[:80]!r} does not describe a {self.policy_kind!r} policy")
        d.setdefault("inference", {})
        return d

    def to_header(self) -> dict[str, str]:
        d = {k: (json.dumps(list(v)) if isinstance(v, tuple) else str(v)) for k, v in asdict(self).items()}
        d["format"] = FORMAT
        return d

    @classmethod
    def from_header(cls, header: dict[str, str] | None, source: str) -> CheckpointMeta:
        if not header or header.get("format") != FORMAT:
            raise CheckpointError(
                f"{source}: not a Stairway checkpoint (header format is "
                f"{(header or {}).get('format')!r}, expected {FORMAT!r})"
            )
        try:
            return cls(
                policy_kind=header["policy_kind"],
                feature_spec_hash=header["feature_spec_hash"],
                feature_spec=header["feature_spec"],
                obs_shape=tuple(json.loads(header["obs_shape"])),
                action_space=tuple(json.loads(header["action_space"])),
                hidden=int(header["hidden"]),
                data_range=header.get("data_range", ""),
                parent=header.get("parent", ""),
                created_at=header.get("created_at", ""),
                extra=header.get("extra", "{}"),
                instrument=header.get("instrument", ""),
                pip_size=float(header.get("pip_size", "0") or 0),
                period_minutes=int(header.get("period_minutes", "0") or 0),
                arch=header.get("arch", ""),
            )
        except (KeyError, ValueError, TypeError) as e:
            raise CheckpointError(f"{source}: checkpoint header is incomplete or malformed: {e!r}") from None


@dataclass(frozen=True)
class Checkpoint:
    sha: str
    path: Path
    meta: CheckpointMeta
    tensors: dict[str, Any]  # numpy arrays as read; torch tensors for weights not saved (a fold's)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(models_dir: str | Path, tensors: Mapping[str, Any], meta: CheckpointMeta) -> Checkpoint:
    """Write registry/<sha>.safetensors durably (temp file, fsync, rename). Idempotent.
    ``tensors``: numpy arrays or torch tensors (a state_dict); the Checkpoint holds numpy
    arrays, as read_checkpoint returns them."""
    registry = Path(models_dir) / "registry"
    registry.mkdir(parents=True, exist_ok=True)
    tensors = {k: np.ascontiguousarray(v) for k, v in numpy_tensors(tensors).items()}
    data = save(tensors, metadata=meta.to_header())
    sha = model_id(tensors, meta)
    final = registry / f"{sha}.safetensors"
    if not final.exists():
        tmp = registry / f".{sha}.{os.getpid()}.tmp"
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
        _fsync_dir(registry)
    return Checkpoint(sha, final, meta, tensors)


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Read and verify a checkpoint: readable, hash equal to its content-addressed name."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: checkpoint file not found (dangling link?)") from None
    except IsADirectoryError:
        raise CheckpointError(f"{path}: is a directory, not a checkpoint file") from None
    except OSError as e:  # unreadable by this user, I/O error, too many links, ...
        raise CheckpointError(f"{path}: cannot read the checkpoint: {e.strerror or e}") from None
    file_sha = hashlib.sha256(data).hexdigest()
    stem = path.resolve().stem
    named = bool(_SHA.match(stem))

    def corrupt(got: str) -> CheckpointError:
        return CheckpointError(f"{path}: content hash {got[:12]}… does not match its name {stem[:12]}… (corrupt)")

    try:
        tensors = load(data)
        header = _header(data)
        meta = CheckpointMeta.from_header(header, str(path))
    except KeyError as e:  # safetensors.numpy has no numpy type for it (BF16, ...)
        raise CheckpointError(f"{path}: tensor dtype {e.args[0]} cannot be read (float32 expected)") from None
    except (SafetensorError, ValueError, json.JSONDecodeError, CheckpointError) as e:
        if named and stem != file_sha:  # a registry file that no longer parses: its bytes changed
            raise corrupt(file_sha) from None
        if isinstance(e, CheckpointError):
            raise
        raise CheckpointError(f"{path}: not a readable safetensors file: {e}") from None
    sha = model_id(tensors, meta)
    if named and stem not in (sha, file_sha):  # (file_sha: a checkpoint named before model ids)
        raise corrupt(sha)
    for name, t in tensors.items():  # a NaN weight holds every bar at confidence 1.0 or crashes a search
        if t.dtype.kind in "fc" and not np.isfinite(t).all():
            bad = int(t.size - np.isfinite(t).sum())
            raise CheckpointError(f"{path}: tensor {name} holds {bad} non-finite value(s) (NaN or inf): refused")
    return Checkpoint(stem if named else sha, path, meta, tensors)


VOLATILE_EXTRA = ("run_id",)  # what differs between two runs that train the same weights


def model_id(tensors: Mapping[str, np.ndarray], meta: CheckpointMeta) -> str:
    """The checkpoint's content address: sha256 over its metadata (in a canonical order, less
    ``created_at`` and the run id) and its tensors (by name: dtype, shape, bytes). The same data
    and settings training the same weights give the same id in any run (the file's own bytes
    do not: safetensors writes the metadata in an arbitrary order, and the header has the time);
    the file keeps the first run's header."""
    header = meta.to_header()
    header.pop("created_at", None)
    try:
        extra = json.loads(header.get("extra") or "{}")
    except json.JSONDecodeError:
        extra = header.get("extra")
    if isinstance(extra, dict):
        extra = {k: v for k, v in extra.items() if k not in VOLATILE_EXTRA}
    header["extra"] = json.dumps(extra, sort_keys=True)
    h = hashlib.sha256(json.dumps(header, sort_keys=True).encode())
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        h.update(f"\0{name}\0{a.dtype.str}\0{a.shape}\0".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _header(data: bytes) -> dict[str, str] | None:
    n = int.from_bytes(data[:8], "little")
    meta: dict[str, str] | None = json.loads(data[8 : 8 + n]).get("__metadata__")
    return meta


def check_compatible(
    meta: CheckpointMeta,
    source: str,
    *,
    feature_spec_hash: str,
    obs_shape: tuple[int, ...],
    action_space: tuple[str, ...],
    instrument: str | None = None,
    pip_size: float | None = None,
    period_minutes: int | None = None,
    feature_spec: str = "",
) -> None:
    """Raise CheckpointMismatch naming both sides of every difference. The market (instrument,
    pip size, bar period) is checked when the caller gives it and the checkpoint records it."""
    problems = []
    if instrument is not None and meta.instrument and meta.instrument != instrument:
        problems.append(f"instrument {meta.instrument} (checkpoint) != {instrument} (ours)")
    if period_minutes is not None and meta.period_minutes and meta.period_minutes != period_minutes:
        problems.append(f"bar period {meta.period_minutes} min (checkpoint) != {period_minutes} min (ours)")
    if pip_size is not None and meta.pip_size and abs(meta.pip_size / pip_size - 1.0) > 1e-9:
        problems.append(f"pip size {meta.pip_size:g} (checkpoint) != {pip_size:g} (ours)")
    if meta.feature_spec_hash != feature_spec_hash:
        detail = spec_difference(meta.feature_spec, feature_spec) if feature_spec else ""
        problems.append(
            f"feature spec {meta.feature_spec_hash} (checkpoint) != {feature_spec_hash} (ours)"
            + (f" ({detail})" if detail else "")
        )
    if tuple(meta.obs_shape) != tuple(obs_shape):
        problems.append(f"observation shape {tuple(meta.obs_shape)} (checkpoint) != {tuple(obs_shape)} (ours)")
    if tuple(meta.action_space) != tuple(action_space):
        problems.append(f"action space {list(meta.action_space)} (checkpoint) != {list(action_space)} (ours)")
    if problems:
        raise CheckpointMismatch(f"{source}: incompatible checkpoint: " + "; ".join(problems))


_LEFTOVER = re.compile(r"^\.(.+)\.(\d+)\.tmp$")


def clean_leftovers(models_dir: str | Path) -> list[Path]:
    """Remove the temporary links and files (``.<name>.<pid>.tmp``) that a killed publisher
    left in models/ and models/registry/; those of a process still alive are kept."""
    removed = []
    for d in (Path(models_dir), Path(models_dir) / "registry"):
        try:
            names = os.listdir(d)
        except OSError:
            continue
        for n in names:
            m = _LEFTOVER.match(n)
            if m and int(m.group(2)) != os.getpid() and not pid_alive(int(m.group(2))):
                try:
                    (d / n).unlink()
                    removed.append(d / n)
                except FileNotFoundError:
                    pass
    return removed


def point_link(models_dir: str | Path, name: str, sha: str) -> None:
    """Atomically point models/<name> at registry/<sha>.safetensors (new link + rename)."""
    models = Path(models_dir)
    target = Path("registry") / f"{sha}.safetensors"
    if not (models / target).is_file():
        raise CheckpointError(f"{models / target}: cannot point {name} at a checkpoint that does not exist")
    tmp = models / f".{name}.{os.getpid()}.tmp"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(target, tmp)
    os.replace(tmp, models / name)
    _fsync_dir(models)


def publish(models_dir: str | Path, sha: str) -> None:
    """Make ``sha`` current, keeping the one it replaces as ``previous``."""
    models = Path(models_dir)
    clean_leftovers(models)
    current = models / "current"
    if current.is_symlink():
        old = Path(os.readlink(current)).stem
        if old != sha and (models / "registry" / f"{old}.safetensors").is_file():
            point_link(models, "previous", old)
    point_link(models, "current", sha)


def prune_registry(models_dir: str | Path, keep_last: int) -> list[Path]:
    """Delete registry checkpoints beyond the newest ``keep_last`` (by modification time),
    never one that current, gold or previous points at. Returns what was deleted."""
    models = Path(models_dir)
    linked = {link_sha(models, n) for n in ("current", "gold", "previous")}
    files = sorted((models / "registry").glob("*.safetensors"), key=lambda p: (p.stat().st_mtime_ns, p.name))
    removed = []
    for p in files[: max(0, len(files) - keep_last)]:
        if p.stem in linked:
            continue
        p.unlink(missing_ok=True)
        removed.append(p)
    if removed:
        _fsync_dir(models / "registry")
    return removed


def link_sha(models_dir: str | Path, name: str) -> str | None:
    """The sha models/<name> points at, or None when it is not a link."""
    p = Path(models_dir) / name
    return Path(os.readlink(p)).stem if p.is_symlink() else None


def roll_back(models_dir: str | Path, to: str = "gold") -> tuple[str, str | None]:
    """Point models/current at the checkpoint models/<to> names (gold or previous), keeping
    the one it replaces as previous. Returns (the sha now current, the one replaced). The one
    implementation behind the operator's rollback, the flatten tier's and the drift gate's."""
    if to not in ("gold", "previous"):
        raise CheckpointError(f"roll back to gold or previous, not {to!r}")
    models = Path(models_dir)
    sha = link_sha(models, to)
    if sha is None:
        raise CheckpointError(f"{models / to}: no {to} model to roll back to")
    old = link_sha(models, "current")
    point_link(models, "current", sha)
    if old and old != sha and (models / "registry" / f"{old}.safetensors").is_file():
        point_link(models, "previous", old)
    return sha, old
