import ast
import subprocess
import sys

from tests.helpers import ROOT

CORE_MODULES = sorted(p.stem for p in (ROOT / "core").glob("*.py") if p.stem != "__init__")


def test_core_imports_nothing_from_daemon_or_trainer():
    code = (
        "import sys, importlib\n"
        f"for m in {CORE_MODULES!r}: importlib.import_module('core.' + m)\n"
        "bad = sorted(n for n in sys.modules if n.split('.')[0] in ('daemon', 'trainer', 'stairway'))\n"
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
            assert not any(n.split(".")[0] in ("daemon", "trainer") for n in names), f"{path}: imports {names}"


def test_no_pickle_loading_anywhere():
    for pkg in ("core", "daemon", "trainer", "stairway"):
        for path in (ROOT / pkg).rglob("*.py"):
            text = path.read_text()
            assert "torch.load(" not in text and "pickle.load" not in text, path
