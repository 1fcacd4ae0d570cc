"""Publishing killed at every step leaves models/current on a complete, verified file;
`stairway models` commands do what they say and record it."""

import json
import os
import sqlite3
import subprocess
import sys

import pytest

from stairway.cli import main as cli_main
from stairway.core.checkpoint import read_checkpoint
from stairway.trainer.gatedb import GateDB
from tests.helpers import ROOT, tiny_checkpoint

CHILD = r"""
import os, sys, torch
from pathlib import Path
from stairway.core.checkpoint import CheckpointMeta, save_checkpoint, publish
from stairway.trainer.gatedb import GateDB
models, n, target = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
real, count = getattr(os, target), [0]
def killer(*a, **k):
    count[0] += 1
    if count[0] == n:
        os._exit(137)
    return real(*a, **k)
setattr(os, target, killer)
meta = CheckpointMeta("ppo", "h", "{}", (3,), ("HOLD", "BUY", "SELL", "CLOSE"), 4)
ck = save_checkpoint(models, {"w": torch.full((64, 64), 7.0)}, meta)
db = GateDB(models / "gate.db")
db.add_model(ck.sha, meta, 1, "r", 0)
db.set_verdict(ck.sha, True, {"passed": True})
publish(models, ck.sha)
print("published", ck.sha)
"""


@pytest.mark.parametrize("target", ["replace", "symlink", "fsync", "unlink"])
@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_publish_killed_at_each_step_keeps_current_valid(tmp_path, spec, target, n):
    old, _ = tiny_checkpoint(tmp_path, spec, seed=1)
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path), str(n), target],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    current = read_checkpoint(tmp_path / "current")  # always a complete, verified checkpoint
    if out.returncode == 0:
        assert current.sha == out.stdout.split()[-1]
    else:
        assert out.returncode == 137, out.stderr
        # either the old model, or the new one only after its passing gate record was committed
        if current.sha != old.sha:
            assert GateDB(tmp_path / "gate.db").model(current.sha)["status"] == "passed"
    for p in (tmp_path / "registry").glob("*.safetensors"):
        read_checkpoint(p)  # nothing half-written under a content address


@pytest.fixture()
def registry(tmp_path, spec, monkeypatch):
    monkeypatch.setenv("STAIRWAY_TRAIN__MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("STAIRWAY_TRAIN__GATE_DB", str(tmp_path / "gate.db"))
    a, _ = tiny_checkpoint(tmp_path / "models", spec, seed=1)
    b, _ = tiny_checkpoint(tmp_path / "models", spec, seed=2)
    db = GateDB(tmp_path / "gate.db")
    db.add_model(a.sha, a.meta, 10, "r", 0)
    db.add_model(b.sha, b.meta, 20, "r", 1)
    db.set_verdict(a.sha, True, {"passed": True})
    db.close()
    return tmp_path, a.sha, b.sha


def models_cmd(*args):
    return cli_main(["models", "--config", str(ROOT / "config/trainer.toml"), *args])


def current(tmp):
    return read_checkpoint(tmp / "models" / "current").sha


def test_models_commands(registry, capsys):
    tmp, a, b = registry
    assert models_cmd("list") == 0
    out = capsys.readouterr().out
    assert a[:12] in out and b[:12] in out and "passed" in out and "candidate" in out
    assert current(tmp) == b
    # ungated promotion needs --force and a reason
    assert models_cmd("promote", b[:10]) == 2
    assert "no passing gate record" in capsys.readouterr().err
    assert models_cmd("promote", b[:10], "--force") == 2
    assert "--force needs --reason" in capsys.readouterr().err
    assert models_cmd("promote", a[:10]) == 0 and current(tmp) == a
    assert models_cmd("promote", b[:10], "--force", "--reason", "operator override for a test") == 0
    assert current(tmp) == b
    assert models_cmd("set-gold", a[:10]) == 0
    assert models_cmd("rollback", "--to", "gold") == 0 and current(tmp) == a
    assert models_cmd("rollback", "--to", "previous") == 0 and current(tmp) == b
    capsys.readouterr()
    assert models_cmd("show", b[:10]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["registry"]["forced_reason"] == "operator override for a test"
    with sqlite3.connect(tmp / "gate.db") as c:
        actions = [r[0] for r in c.execute("SELECT action FROM operator_actions ORDER BY id")]
    assert actions == ["promote", "promote_forced", "set_gold", "rollback_to_gold", "rollback_to_previous"]
    assert GateDB(tmp / "gate.db").is_publishable(b)


def test_models_refuse_corrupt_registry_file_and_unknown_sha(registry, capsys):
    tmp, a, b = registry
    path = tmp / "models" / "registry" / f"{a}.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    assert models_cmd("promote", a[:10]) == 2
    assert "does not match its name" in capsys.readouterr().err
    assert current(tmp) == b
    assert models_cmd("promote", "abcdef0123") == 2
    assert "matches 0 models" in capsys.readouterr().err
    assert models_cmd("rollback", "--to", "gold") == 2
    assert "no gold model" in capsys.readouterr().err


def test_prune_keeps_the_newest_and_every_linked_checkpoint(tmp_path, spec, monkeypatch, capsys):
    """Issue 13 §6: old registry files go by policy; never one a link names."""
    import os

    from stairway.core.checkpoint import point_link, prune_registry

    monkeypatch.setenv("STAIRWAY_TRAIN__MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("STAIRWAY_TRAIN__GATE_DB", str(tmp_path / "gate.db"))
    models = tmp_path / "models"
    cks = []
    for k in range(6):  # a .. f, oldest first; publishing each makes the one before previous
        ck, _ = tiny_checkpoint(models, spec, seed=30 + k)
        os.utime(ck.path, ns=(10**18 + k * 10**9, 10**18 + k * 10**9))
        cks.append(ck.sha)
    point_link(models, "gold", cks[0])  # gold: the oldest
    assert prune_registry(models, 6) == []
    assert models_cmd("prune", "--keep", "2") == 0  # newest 2: e (previous) and f (current)
    assert "removed 3 checkpoint(s)" in capsys.readouterr().out
    left = {p.stem for p in (models / "registry").glob("*.safetensors")}
    assert left == {cks[0], cks[4], cks[5]}  # gold survives though it is the oldest
    for name in ("current", "gold", "previous"):
        read_checkpoint(models / name)  # every link still resolves to a verified checkpoint
    assert models_cmd("prune", "--keep", "0") == 2
    assert "keep at least 1" in capsys.readouterr().err


def test_set_gold_needs_a_gate_or_a_forced_reason_and_rollback_refuses_what_the_daemon_would(registry, spec, capsys):
    """Issue 19.3: `models set-gold` took an ungated model with no reason and `rollback` then
    pointed current at it (rc 0) though the daemon refused it."""
    from stairway.daemon.hot_swap import load_verified

    tmp, a, b = registry  # a passed its gates, b did not
    assert models_cmd("set-gold", b[:10]) == 2
    assert "no passing gate record" in capsys.readouterr().err
    assert not (tmp / "models" / "gold").exists()
    assert models_cmd("set-gold", b[:10], "--force") == 2
    assert "--force needs --reason" in capsys.readouterr().err
    assert models_cmd("set-gold", b[:10], "--force", "--reason", "the only model that ran through 2020") == 0
    assert "(forced)" in capsys.readouterr().out
    load_verified(tmp / "models" / "gold", spec, tmp / "gate.db", None)  # the daemon takes it now: reason on record
    # a gold the daemon would refuse (another feature spec, though gated): rollback refuses up front
    c, _ = tiny_checkpoint(tmp / "models", spec, seed=9, feature_hash="feedfacefeedface", gate_db=tmp / "gate.db")
    assert models_cmd("promote", a[:10]) == 0
    before = os.readlink(tmp / "models" / "current")
    assert models_cmd("set-gold", c.sha[:10]) == 2
    assert "the daemon would refuse it" in capsys.readouterr().err
    os.replace(_link(tmp / "models", c.sha), tmp / "models" / "gold")  # as if set by hand
    assert models_cmd("rollback", "--to", "gold") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot roll back to gold" in err[0] and "feature spec feedfacefeedface" in err[0]
    assert os.readlink(tmp / "models" / "current") == before  # untouched
    with sqlite3.connect(tmp / "gate.db") as db:
        rows = db.execute("SELECT action, reason, completed FROM operator_actions ORDER BY id").fetchall()
    assert ("set_gold_forced", "the only model that ran through 2020", 1) in rows
    assert not any(r[0].startswith("rollback") for r in rows)


def _link(models, sha):
    tmp = models / ".hand-link"
    os.symlink(f"registry/{sha}.safetensors", tmp)
    return tmp


def test_models_commands_on_a_portfolio_instrument(registry, spec, capsys):
    """Issue 22 §4: `models --instrument SYMBOL` works on models_dir/SYMBOL (the portfolio layout
    `train run --instrument` writes), leaving the other instruments' links alone; an instrument
    without models, or a symbol that is a path, is one line naming it."""
    tmp, a, b = registry
    g1, _ = tiny_checkpoint(tmp / "models" / "GBP_USD", spec, seed=5)
    g2, _ = tiny_checkpoint(tmp / "models" / "GBP_USD", spec, seed=6)
    db = GateDB(tmp / "gate.db")
    db.add_model(g1.sha, g1.meta, 10, "p", 0)
    db.set_verdict(g1.sha, True, {"passed": True})
    db.close()
    assert models_cmd("--instrument", "GBP_USD", "list", "--json") == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["sha"] for r in rows} == {g1.sha, g2.sha}  # the EUR models are not listed
    assert models_cmd("--instrument", "GBP_USD", "promote", g1.sha[:10]) == 0
    assert read_checkpoint(tmp / "models" / "GBP_USD" / "current").sha == g1.sha
    assert current(tmp) == b  # the top-level instrument's link untouched
    capsys.readouterr()
    assert models_cmd("--instrument", "USD_JPY", "list") == 2
    err = capsys.readouterr().err.strip()
    assert "USD_JPY" in err and "instruments with models here: GBP_USD" in err and err.count("\n") == 0
    assert models_cmd("--instrument", "../models", "list") == 2
    assert "not an instrument symbol" in capsys.readouterr().err
