import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT

pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
UNITS = ["stairway-daemon.service", "stairway-trainer.service", "stairway-trainer.timer", "stairway-data-fetch.service"]


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


def exposure(units, name: str) -> float:
    out = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(units / name)], capture_output=True, text=True
    )
    m = re.search(rf"Overall exposure level for {re.escape(name)}: ([0-9.]+)", out.stdout + out.stderr)
    assert m, out.stdout + out.stderr
    return float(m.group(1))


def test_daemon_unit_exposure_at_most_2(units):
    assert exposure(units, "stairway-daemon.service") <= 2.0


def test_only_the_fetch_unit_has_a_network_and_it_is_as_tight_as_the_daemon(units):
    """Issue 13 §2: the candle fetch needs a network, the training does not: the trainer keeps
    PrivateNetwork=yes and AF_UNIX only, runs after the fetch, and still runs when it fails."""
    trainer = (ROOT / "systemd" / "stairway-trainer.service").read_text()
    fetch = (ROOT / "systemd" / "stairway-data-fetch.service").read_text()
    assert "PrivateNetwork=yes" in trainer and "RestrictAddressFamilies=AF_UNIX\n" in trainer
    assert "Wants=stairway-data-fetch.service" in trainer and "After=stairway-data-fetch.service" in trainer
    assert "Requires=" not in trainer  # a broker outage must not cancel the night's training
    assert "\nPrivateNetwork=" not in fetch and "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6" in fetch
    assert exposure(units, "stairway-data-fetch.service") <= exposure(units, "stairway-daemon.service")
    assert exposure(units, "stairway-trainer.service") <= exposure(units, "stairway-data-fetch.service")


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
