"""Issue 9.1: a checkpoint the daemon cannot read is a refused checkpoint at run time (the
old model keeps trading) and one clear error line at start-up, never a crash."""

import asyncio
import os
import shutil
import sqlite3
import subprocess
import sys

import pytest

from stairway.core.bar_files import load_bars
from stairway.core.checkpoint import read_checkpoint
from stairway.core.errors import CheckpointError
from stairway.daemon.app import Daemon
from tests.helpers import EURUSD, ROOT, daemon_config, tiny_checkpoint, write_bars_csv
from tests.integration.test_service import until


@pytest.fixture()
def bars():
    b = load_bars(EURUSD)[0]
    return b[b["ts_ns"] >= 1506816000 * 10**9][:300]


def _repoint(models, target):
    os.symlink(target, models / ".x")
    os.replace(models / ".x", models / "current")


def test_unreadable_current_is_refused_and_old_model_keeps_trading(tmp_path, spec, bars):
    models = tmp_path / "models"
    a, _ = tiny_checkpoint(models, spec, seed=1)
    cfg, _ = daemon_config(
        tmp_path,
        write_bars_csv(tmp_path / "b.csv", bars),
        "2017-10-01",
        "2018-01-01",
        batch_ticks=16,
        speed=60_000,
        model_poll_secs=0.05,
    )
    (models / "registry" / "adir").mkdir()
    os.symlink("loop2", models / "registry" / "loop1")
    os.symlink("loop1", models / "registry" / "loop2")

    async def scenario():
        d = Daemon(cfg)
        task = asyncio.create_task(d.run())
        await until(lambda: hasattr(d, "slot") and d.slot.counters.decisions > 5)
        _repoint(models, "registry/adir")  # a directory where the checkpoint should be
        await until(lambda: d.watcher.stats.refused == 1)
        _repoint(models, "registry/loop1")  # ELOOP: an OSError that is not 'not found'
        await until(lambda: d.watcher.stats.refused == 2)
        shutil.rmtree(models / "current", ignore_errors=True)
        os.unlink(models / "current")
        (models / "current").mkdir()  # a plain directory replacing the link by hand
        await until(lambda: d.watcher.stats.refused == 3)
        decisions = d.slot.counters.decisions
        await until(lambda: d.slot.counters.decisions > decisions + 5)  # still deciding
        return await task

    res = asyncio.run(scenario())
    assert not res.interrupted and res.model_sha == a.sha
    reasons = [
        r[0]
        for r in sqlite3.connect(res.db_path).execute(
            "SELECT reason FROM model_swaps WHERE outcome = 'refused' ORDER BY id"
        )
    ]
    assert len(reasons) == 3
    assert "is a directory" in reasons[0] and "cannot read" in reasons[1] and "is a directory" in reasons[2]


def test_checkpoint_the_service_user_cannot_read_is_a_checkpoint_error(tmp_path, spec):
    ck, _ = tiny_checkpoint(tmp_path / "models", spec)
    ck.path.chmod(0o000)
    if os.geteuid() != 0:
        with pytest.raises(CheckpointError, match="cannot read the checkpoint"):
            read_checkpoint(ck.path)
        return
    # root reads everything: read it as the unprivileged service user instead
    tmp_path.chmod(0o755)
    (tmp_path / "models").chmod(0o755)
    (tmp_path / "models" / "registry").chmod(0o755)
    code = (
        "import sys; from stairway.core.checkpoint import read_checkpoint\n"
        "from stairway.core.errors import CheckpointError\n"
        f"try:\n    read_checkpoint({str(ck.path)!r})\nexcept CheckpointError as e:\n    print(e); sys.exit(3)\n"
    )
    p = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")},
    )
    assert p.returncode == 3, p.stderr
    assert "cannot read the checkpoint" in p.stdout and "Permission denied" in p.stdout


@pytest.mark.parametrize("kind", ["directory", "loop"])
def test_unreadable_current_at_startup_is_one_error_line(tmp_path, spec, bars, kind):
    models = tmp_path / "models"
    tiny_checkpoint(models, spec, seed=1)
    _, path = daemon_config(tmp_path, write_bars_csv(tmp_path / "b.csv", bars), "2017-10-01", "2018-01-01")
    if kind == "directory":
        (models / "registry" / "adir").mkdir()
        _repoint(models, "registry/adir")
    else:
        os.symlink("current", models / ".x")
        os.replace(models / ".x", models / "current")  # current -> current
    p = subprocess.run(
        [sys.executable, "-m", "stairway.cli", "daemon", "run", "--config", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 2, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert lines[-1].startswith("stairway: error:") and "current" in lines[-1], p.stderr
    assert "Traceback" not in p.stderr
