"""Issue 9.9: operator mistakes end in one `stairway: error:` line naming the file, field or
port, with exit code 2 — never a traceback."""

import asyncio
import socket
import subprocess
import sys

import pytest

from stairway.core.bar_files import load_bars
from tests.faults.harness import Rig, prices
from tests.faults.test_restarts import _daemon_process_env
from tests.helpers import EURUSD, ROOT, daemon_config, shipped_text, tiny_checkpoint, write_bars_csv

CLI = [sys.executable, "-c", "import sys; from stairway.cli import main; sys.exit(main())"]


def one_error_line(p: subprocess.CompletedProcess) -> str:
    assert p.returncode == 2, (p.returncode, p.stderr[-3000:])
    assert "Traceback" not in p.stderr and "ExceptionGroup" not in p.stderr, p.stderr[-3000:]
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("stairway: error:")]
    assert len(errors) == 1, p.stderr[-3000:]
    return errors[0]


@pytest.fixture()
def paper(tmp_path, spec):
    b = load_bars(EURUSD)[0]
    bars = b[b["ts_ns"] >= 1506816000 * 10**9][:200]
    tiny_checkpoint(tmp_path / "models", spec, seed=1)
    return daemon_config(tmp_path, write_bars_csv(tmp_path / "b.csv", bars), "2017-10-01", "2018-01-01")


def run(args, **kw):
    return subprocess.run(CLI + args, cwd=ROOT, capture_output=True, text=True, timeout=120, **kw)


def test_control_path_that_is_a_file(paper):
    cfg, path = paper
    cfg.service.state_dir.mkdir(parents=True, exist_ok=True)
    cfg.service.control_dir.write_text("oops")
    line = one_error_line(run(["daemon", "run", "--config", str(path)]))
    assert str(cfg.service.control_dir) in line and "not a directory" in line
    line = one_error_line(run(["ctl", "start", "--config", str(path)]))
    assert str(cfg.service.control_dir) in line


def test_corrupt_gate_db_under_models_list(tmp_path):
    gate = tmp_path / "gate.db"
    gate.write_bytes(b"this is not sqlite" * 100)
    text = shipped_text("trainer.toml")
    cfg = tmp_path / "trainer.toml"
    cfg.write_text(text)
    env = {"STAIRWAY_TRAIN__GATE_DB": str(gate), "STAIRWAY_TRAIN__MODELS_DIR": str(tmp_path / "models")}
    import os

    line = one_error_line(run(["models", "--config", str(cfg), "list"], env={**os.environ, **env}))
    assert str(gate) in line and "not a usable gate database" in line


def test_http_port_in_use(paper):
    cfg, path = paper
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        path.write_text(path.read_text().replace("http_port = 0", f"http_port = {port}"))
        line = one_error_line(run(["daemon", "run", "--config", str(path)]))
    assert f"127.0.0.1:{port}" in line and "service.http_port" in line


def test_wrong_oanda_token_is_one_line_not_an_exception_group(tmp_path, spec):
    async def go():
        rig = Rig(tmp_path, spec)
        await rig.start()
        try:
            rig.emu.prices = prices(rig.cfg, 2)
            env = _daemon_process_env(rig)
            env["OANDA_TOKEN"] = "wrong-token-123"
            proc = await asyncio.create_subprocess_exec(
                *CLI,
                "daemon",
                "run",
                "--config",
                str(ROOT / "config" / "live-oanda.toml"),
                cwd=ROOT,
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await asyncio.wait_for(proc.communicate(), 120)
            return subprocess.CompletedProcess([], proc.returncode, out.decode(), err.decode())
        finally:
            await rig.close()

    p = asyncio.run(go())
    line = one_error_line(p)
    assert "401 unauthorized" in line and "wrong-token-123" not in p.stdout + p.stderr


def test_a_lookahead_feature_plugin_stops_the_daemon_and_the_trainer_by_name(paper, tmp_path):
    """Issue 20 §3: a plug-in that fails its look-ahead check is refused at start-up, in one line."""
    import os

    _, path = paper
    peek = tmp_path / "peek.py"
    peek.write_text(
        "import numpy as np\nfrom stairway.core.feature_plugins import feature\n\n"
        '@feature("peek", warmup_bars=2)\ndef peek(bars):\n    return np.log(np.roll(bars.close, -1) / bars.close)\n'
    )
    env = {**os.environ, "STAIRWAY_FEATURES__PLUGINS": f'["{peek}"]', "STAIRWAY_FEATURES__EXTRA": '["peek"]'}
    line = one_error_line(run(["daemon", "run", "--config", str(path)], env=env))
    assert "feature plug-in 'peek' looks ahead" in line
    for key, name in (("MODELS_DIR", "models"), ("GATE_DB", "gate.db"), ("REPORTS_DIR", "runs")):
        env[f"STAIRWAY_TRAIN__{key}"] = str(tmp_path / name)  # (their locks are this test's own)
    line = one_error_line(run(["train", "run", "--config", "config/trainer.toml"], env=env))
    assert "feature plug-in 'peek' looks ahead" in line


def test_flatten_direct_on_a_paper_config_or_with_another_action(paper):
    _, path = paper
    line = one_error_line(run(["ctl", "flatten", "--direct", "--config", str(path)]))
    assert "simulated (paper); there is nothing to close at a broker" in line
    line = one_error_line(run(["ctl", "start", "--direct", "--config", str(path)]))
    assert "--direct is for flatten only, not start" in line


def test_flatten_direct_with_the_broker_unreachable_is_one_line(tmp_path):
    import os

    text = shipped_text("live-oanda.toml").replace('state_dir = "state"', f'state_dir = "{tmp_path}"')
    cfg = tmp_path / "live.toml"
    cfg.write_text(text)
    with socket.socket() as s:  # a port where nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "OANDA_TOKEN": "t",
        "OANDA_ACCOUNT": "101-004-1234567-001",
        "STAIRWAY_BROKER__OANDA": f'{{"rest_url": "{url}", "stream_url": "{url}"}}',
    }
    line = one_error_line(run(["ctl", "flatten", "--direct", "--config", str(cfg)], env=env))
    assert "flatten --direct: the broker could not be reached" in line and "every order sent is in the journal" in line
