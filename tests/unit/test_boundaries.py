import ast
import subprocess
import sys

from tests.helpers import ROOT

CORE_MODULES = sorted(p.stem for p in (ROOT / "core").glob("*.py") if p.stem != "__init__")


def test_core_imports_nothing_from_daemon_or_trainer():
    code = (
        "import sys, importlib\n"
        f"for m in {CORE_MODULES!r}: importlib.import_module('stairway.core.' + m)\n"
        "bad = sorted(n for n in sys.modules if n.startswith(('stairway.daemon', 'stairway.trainer', 'stairway.cli',"
        " 'stairway.demo')) or n.split('.')[0] in ('daemon', 'trainer'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
    assert len(CORE_MODULES) >= 10


def test_core_sources_have_no_daemon_or_trainer_import_statements():
    for path in (ROOT / "core").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            bad = [n for n in names if n.startswith(("stairway.daemon", "stairway.trainer", "daemon", "trainer"))]
            assert not bad, f"{path}: imports {names}"


def test_no_pickle_loading_anywhere():
    for pkg in ("core", "daemon", "trainer", "stairway"):
        for path in (ROOT / pkg).rglob("*.py"):
            text = path.read_text()
            assert "torch.load(" not in text and "pickle.load" not in text, path


def test_stairway_and_python_daemon_install_side_by_side(tmp_path):
    """Stairway's packages live under one namespace (stairway.core, stairway.daemon,
    stairway.trainer), so the python-daemon distribution (installed by the test extra) keeps
    its top-level ``daemon``. Run outside the checkout, where no folder named daemon shadows
    anything: each name resolves to its own distribution."""
    code = (
        "import daemon, daemon.pidfile\n"
        "import stairway.daemon.app, stairway.core.types, stairway.trainer.env\n"
        "print(hasattr(daemon, 'DaemonContext'), hasattr(stairway.daemon.app, 'Daemon'))\n"
        "print('site-packages' in daemon.__file__, stairway.daemon.app.__file__.endswith('daemon/app.py'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["True", "True", "True", "True"]
