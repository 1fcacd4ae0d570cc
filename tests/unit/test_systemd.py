import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT

pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
UNITS = ["stairway-daemon.service", "stairway-trainer.service", "stairway-trainer.timer"]


@pytest.fixture()
def units(tmp_path):
    exe = Path(sys.executable).parent / "stairway"  # the installed console script stands in for /opt/stairway
    for u in UNITS:
        text = (ROOT / "systemd" / u).read_text().replace("/opt/stairway/.venv/bin/stairway", str(exe))
        (tmp_path / u).write_text(text)
    return tmp_path


def test_units_verify(units):
    out = subprocess.run(
        ["systemd-analyze", "verify", *[str(units / u) for u in UNITS]], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert not [line for line in out.stderr.splitlines() if "stairway" in line], out.stderr


def test_daemon_unit_exposure_at_most_2(units):
    out = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(units / "stairway-daemon.service")],
        capture_output=True,
        text=True,
    )
    m = re.search(r"Overall exposure level for stairway-daemon\.service: ([0-9.]+)", out.stdout + out.stderr)
    assert m, out.stdout + out.stderr
    assert float(m.group(1)) <= 2.0


def test_daemon_unit_has_the_required_settings():
    text = (ROOT / "systemd" / "stairway-daemon.service").read_text()
    for setting in (
        "Type=notify",
        "WatchdogSec=",
        "Restart=on-failure",
        "StartLimitBurst=",
        "User=stairway",
        "LoadCredential=",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=",
        "PrivateTmp=yes",
        "ProtectHome=yes",
        "RestrictAddressFamilies=",
        "SystemCallFilter=",
        "MemoryMax=",
    ):
        assert setting in text, setting
