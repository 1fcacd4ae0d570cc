"""The habits that keep the code base clean run with the tests (issue 12 §3): ruff's lint
rules (pyproject.toml [tool.ruff]) and its format check, on every Python file; mypy, strict on
stairway.core and checking stairway.daemon, stairway.trainer and the CLI."""

import subprocess
import sys

import pytest

from tests.helpers import ROOT


@pytest.mark.parametrize("args", [["check", "."], ["format", "--check", "."]], ids=["lint", "format"])
def test_ruff(args):
    p = subprocess.run([sys.executable, "-m", "ruff", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, f"ruff {' '.join(args)}:\n{p.stdout[-4000:]}{p.stderr[-2000:]}"


def _stairway_tree(root):
    """A stairway/ package of links to core/, daemon/, trainer/ and stairway/*.py, which mypy
    can walk (the installed package maps the folders with setuptools' package-dir, which it
    cannot follow)."""
    pkg = root / "stairway"
    pkg.mkdir()
    for name in ("core", "daemon", "trainer"):
        (pkg / name).symlink_to(ROOT / name, target_is_directory=True)
    for f in (ROOT / "stairway").glob("*.py"):
        (pkg / f.name).symlink_to(f)
    return root


def test_mypy(tmp_path):
    """One run: pyproject.toml makes stairway.core strict (--strict's flags, per module) and
    checks the rest (a second, --strict-only run over core cost half a minute of CI)."""
    root = _stairway_tree(tmp_path)
    args = ["-p", "stairway.core", "-p", "stairway.daemon", "-p", "stairway.trainer"]
    args += ["-m", "stairway.cli", "-m", "stairway.demo", "-m", "stairway.data_cli"]
    cmd = [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"), *args]
    cmd += ["--cache-dir", str(ROOT / ".cache" / "mypy")]
    p = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, f"mypy {' '.join(args)}:\n{p.stdout[-6000:]}{p.stderr[-2000:]}"
    assert "Success: no issues found" in p.stdout
