"""numba's disk cache is checked against the decorated function's own file only: a kernel
calling an njit function of another file kept the old callee after that file changed. Stairway
keys its cache folder by a hash of every numba source (stairway/__init__.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from stairway import numba_source_key

ROOT = Path(__file__).resolve().parents[2]


def _call(tmp: Path, cache: Path) -> str:
    code = "import sys; sys.path.insert(0, sys.argv[1]); from kpkg.caller import g; print(g())"
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache)}
    out = subprocess.run([sys.executable, "-c", code, str(tmp)], env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_a_changed_callee_in_another_file_is_compiled_afresh(tmp_path):
    pkg = tmp_path / "kpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "caller.py").write_text(
        "import numba\nfrom kpkg.callee import f\n\n@numba.njit(cache=True)\ndef g():\n    return f()\n"
    )
    callee = "import numba\n\n@numba.njit(cache=True)\ndef f():\n    return {}\n"
    (pkg / "callee.py").write_text(callee.format(1))
    key1 = numba_source_key([pkg])
    assert _call(tmp_path, tmp_path / "cache" / key1) == "1"
    (pkg / "callee.py").write_text(callee.format(2))  # caller.py untouched
    key2 = numba_source_key([pkg])
    assert key2 != key1
    assert _call(tmp_path, tmp_path / "cache" / key2) == "2"
    # the same sources give the same key: a restart reuses what it compiled
    assert numba_source_key([pkg]) == key2


def test_importing_stairway_keys_the_cache_folder_once(tmp_path):
    code = "import os, stairway; print(os.environ['NUMBA_CACHE_DIR'])"
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "base")}
    keyed = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    folder = Path(keyed.stdout.strip())
    assert folder.parent == tmp_path / "base" and len(folder.name) == 16
    # a child process inherits the keyed folder and keeps it (no folder per generation)
    again = subprocess.run(
        [sys.executable, "-c", code], env={**env, "NUMBA_CACHE_DIR": str(folder)}, capture_output=True, text=True
    )
    assert Path(again.stdout.strip()) == folder
    keys = numba_source_key([ROOT / "core", ROOT / "daemon", ROOT / "trainer"])
    assert folder.name == keys
