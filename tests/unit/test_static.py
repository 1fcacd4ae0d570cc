"""The habits that keep the code base clean run with the tests (issue 12 §3): ruff's lint
rules (pyproject.toml [tool.ruff]) and its format check, on every Python file."""

import subprocess
import sys

import pytest

from tests.helpers import ROOT


@pytest.mark.parametrize("args", [["check", "."], ["format", "--check", "."]], ids=["lint", "format"])
def test_ruff(args):
    p = subprocess.run([sys.executable, "-m", "ruff", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, f"ruff {' '.join(args)}:\n{p.stdout[-4000:]}{p.stderr[-2000:]}"
