"""Operator commands on the model registry (`stairway models ...`). Every action is recorded
in gate.db's operator_actions; links are repointed atomically."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from stairway.core.checkpoint import link_sha, point_link, prune_registry, publish, read_checkpoint, roll_back
from stairway.core.errors import CheckpointError, StairwayError
from stairway.trainer.gatedb import GateDB

# (checkpoint, a forced reason about to be recorded or None) -> None, or CheckpointError for a
# checkpoint the daemon would refuse
Check = Callable[[Path, str | None], None]


class RegistryError(StairwayError):
    """An operator command cannot be carried out as asked."""


def _link_sha(models: Path, name: str) -> str | None:
    return link_sha(models, name)


def _verified(models: Path, sha: str):
    path = models / "registry" / f"{sha}.safetensors"
    if not path.is_file():
        raise RegistryError(f"{path}: no such checkpoint in the registry")
    return read_checkpoint(path)  # hash == name, readable, our header


def _entries(models: Path, gdb: GateDB) -> list[dict]:
    """The checkpoints in ``models/registry`` with their gate records (gate.db is shared by a
    portfolio's instruments: only this folder's are listed); one without a record is
    "unrecorded" (copied in by hand, or its run died before recording it)."""
    files = {p.stem: p for p in (models / "registry").glob("*.safetensors")}
    rows = [m for m in gdb.models() if m["sha"] in files]
    known = {m["sha"] for m in rows}
    for sha, p in sorted(files.items(), key=lambda kv: kv[1].stat().st_mtime_ns):
        if sha not in known:
            rows.append(
                {
                    "sha": sha,
                    "status": "unrecorded",
                    "steps": 0,
                    "created_ns": p.stat().st_mtime_ns,
                    "forced_reason": None,
                }
            )
    return rows


def model_rows(models: Path, gdb: GateDB) -> list[dict]:
    """The registry as data (`models list --json`): each model's sha, gate status, steps,
    creation time (UTC ISO 8601), the links pointing at it and any forced reason."""
    marks = {name: _link_sha(models, name) for name in ("current", "gold", "previous")}
    return [
        {
            "sha": m["sha"],
            "status": m["status"],
            "steps": m["steps"] or 0,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(m["created_ns"] // 10**9)),
            "links": [k for k, v in marks.items() if v == m["sha"]],
            "forced_reason": m["forced_reason"],
        }
        for m in _entries(models, gdb)
    ]


def list_models(models: Path, gdb: GateDB) -> str:
    marks = {name: _link_sha(models, name) for name in ("current", "gold", "previous")}
    lines = [f"{'sha':14}{'status':11}{'steps':>10}  {'created (UTC)':17}  {'links':18}forced reason"]
    for m in _entries(models, gdb):
        links = ",".join(k for k, v in marks.items() if v == m["sha"])
        created = time.strftime("%Y-%m-%d %H:%M", time.gmtime(m["created_ns"] // 10**9))
        lines.append(
            f"{m['sha'][:12]:14}{m['status']:11}{m['steps'] or 0:>10,}  {created:17}  {links:18}"
            f"{m['forced_reason'] or ''}"
        )
    for a in gdb.incomplete_actions():
        when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(a["ts_ns"] // 10**9))
        state = "done after all" if a["sha"] and marks["current"] == a["sha"] else "never took effect"
        lines.append(f"INCOMPLETE {a['action']} {(a['sha'] or '')[:12]} at {when} UTC (interrupted; {state})")
    return "\n".join(lines)


def show_model(models: Path, gdb: GateDB, prefix: str) -> str:
    sha = gdb.resolve(prefix)
    ck = _verified(models, sha)
    row = _registered(gdb, sha)
    meta = {k: v for k, v in ck.meta.__dict__.items() if k != "feature_spec"}
    return json.dumps(
        {"sha": sha, "registry": row | {"gate_json": json.loads(row["gate_json"] or "null")}, "header": meta},
        indent=2,
        default=str,
    )


def _registered(gdb: GateDB, sha: str) -> dict:
    row = gdb.model(sha)
    if row is None:  # resolve() found it; gone since (another process): say so
        raise RegistryError(f"{sha[:12]}: not in the gate database any more")
    return row


def _forced(row: dict, sha: str, force: bool, reason: str | None, what: str) -> bool:
    """Whether SHA goes ahead without a passing gate record: only with ``force`` and a reason
    (recorded in gate.db); otherwise RegistryError saying what to do."""
    if row["status"] == "passed":
        return False
    if not force:
        raise RegistryError(
            f"{sha[:12]} has no passing gate record (status {row['status']}); use --force --reason TEXT to {what}"
        )
    if not reason or not reason.strip():
        raise RegistryError("--force needs --reason TEXT (it is recorded in gate.db)")
    return True


def promote(models: Path, gdb: GateDB, prefix: str, force: bool = False, reason: str | None = None) -> str:
    sha = gdb.resolve(prefix)
    _verified(models, sha)
    row = _registered(gdb, sha)
    if _forced(row, sha, force, reason, "promote it anyway"):
        assert reason is not None  # _forced demands one
        # the forced reason must be on record before current points at it (the daemon refuses
        # an ungated model without one); the action stays incomplete until the switch is done
        action = gdb.operator_action("promote_forced", sha, reason.strip(), completed=False)
    else:
        action = gdb.operator_action("promote", sha, reason, completed=False)
    publish(models, sha)
    gdb.complete_action(action)
    return f"current -> {sha[:12]}" + (" (forced)" if row["status"] != "passed" else "")


def rollback(models: Path, gdb: GateDB, to: str = "gold", check: Check | None = None) -> str:
    """Point current back at gold or previous, after the target passed ``check`` (the daemon's
    own verification): a target the daemon would refuse is refused here, in one line, and
    current is left alone."""
    if to not in ("gold", "previous"):
        raise RegistryError(f"--to must be gold or previous, not {to!r}")
    sha = _link_sha(models, to)
    if sha is None:
        raise RegistryError(f"{models / to}: no {to} model to roll back to")
    try:
        _verified(models, sha)
        if check is not None:
            check(models / "registry" / f"{sha}.safetensors", None)
    except CheckpointError as e:
        raise RegistryError(f"cannot roll back to {to} {sha[:12]}: the daemon would refuse it: {e}") from None
    sha, old = roll_back(models, to)
    gdb.operator_action(f"rollback_to_{to}", sha, f"current was {old}")
    return f"current -> {sha[:12]} ({to})"


def prune(models: Path, gdb: GateDB, keep: int) -> str:
    """Delete registry checkpoints beyond the newest ``keep``; never one a link names."""
    if keep < 1:
        raise RegistryError(f"--keep {keep}: keep at least 1")
    removed = prune_registry(models, keep)
    if removed:
        gdb.operator_action("prune", None, f"removed {len(removed)}: " + ", ".join(p.stem[:12] for p in removed))
    return f"removed {len(removed)} checkpoint(s); kept the newest {keep} and every linked one"


def set_gold(
    models: Path,
    gdb: GateDB,
    prefix: str,
    reason: str | None = None,
    force: bool = False,
    check: Check | None = None,
) -> str:
    """Make SHA the trusted fallback the risk engine rolls back to in an emergency: it needs a
    passing gate record, or ``force`` with a reason (recorded, as for a forced promotion), and
    it must pass ``check`` (the daemon's verification)."""
    sha = gdb.resolve(prefix)
    _verified(models, sha)
    row = _registered(gdb, sha)
    forced = _forced(row, sha, force, reason, "make it gold anyway (gold is what an emergency rolls back to)")
    if check is not None:  # with the forced reason as it will be recorded
        try:
            check(models / "registry" / f"{sha}.safetensors", reason if forced else None)
        except CheckpointError as e:
            raise RegistryError(f"cannot make {sha[:12]} gold: the daemon would refuse it: {e}") from None
    action = gdb.operator_action("set_gold_forced" if forced else "set_gold", sha, reason, completed=False)
    point_link(models, "gold", sha)
    gdb.complete_action(action)
    return f"gold -> {sha[:12]}" + (" (forced)" if forced else "")


def daemon_check(spec, gate_db: Path, market: dict) -> Check:
    """The daemon's own verification of a checkpoint (daemon.hot_swap.load_verified: hash,
    compatibility, gate record or recorded forced promotion, policy load, smoke inference)."""
    from stairway.daemon.hot_swap import load_verified

    def check(path: Path, forced_reason: str | None) -> None:
        # a forced reason not yet recorded stands in for the gate record (its check is set_gold's)
        load_verified(path, spec, None if forced_reason else gate_db, None, market)

    return check
