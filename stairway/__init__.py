"""Stairway: the command line that ties the daemon and the trainer together."""

import os
import sys
from pathlib import Path

# numba's parallel kernels (MuZero's batched searches) run on OpenMP, whose idle threads spin
# for ~300,000 iterations by default before they sleep: two trainers on one host (or a trainer
# beside the daemon) then spent their cores spinning, and a 10-s MuZero training took 120 s
# next to another. A short spin keeps one process within ~10 % of the default and two at 25 s.
os.environ.setdefault("GOMP_SPINCOUNT", "10000")


def numba_source_key(folders: list) -> str:
    """A hash of every .py file under ``folders`` that mentions numba (name and content)."""
    import hashlib

    digest = hashlib.sha256()
    for folder in folders:
        for path in sorted(Path(folder).rglob("*.py")):
            text = path.read_bytes()
            if b"numba" in text:
                digest.update(path.name.encode() + b"\0" + text)
    return digest.hexdigest()[:16]


def _key_numba_cache_by_source() -> None:
    """numba's on-disk cache checks only the decorated function's own file: a kernel in
    core/mcts.py that calls one in core/muzero_net.py kept the compiled callee after that file
    changed (an upgrade that changed the network's layout would have searched with the old
    one, silently). So the cache lives in a folder named by a hash of every source file that
    uses numba: any change there compiles afresh. NUMBA_CACHE_DIR (set by ./run, the systemd
    units and the tests) is the base; unset, ~/.cache/numba-stairway."""
    from importlib.util import find_spec

    folders = []
    for pkg in ("stairway.core", "stairway.daemon", "stairway.trainer"):
        spec = find_spec(pkg)
        folders += list(spec.submodule_search_locations or ()) if spec else []
    key = numba_source_key(folders)
    base = Path(os.environ.get("NUMBA_CACHE_DIR") or Path.home() / ".cache" / "numba-stairway")
    folder = base if base.name == key else base / key  # a child process inherits the keyed folder
    os.environ["NUMBA_CACHE_DIR"] = str(folder)
    if "numba" in sys.modules:  # already imported (it read the variable then): tell its config
        sys.modules["numba"].core.config.CACHE_DIR = str(folder)


_key_numba_cache_by_source()
