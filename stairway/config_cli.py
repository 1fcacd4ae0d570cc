"""`stairway config check|show FILE`: a config validated with every problem listed, or shown
as the program will run it (defaults filled in, STAIRWAY_* environment overrides applied,
secrets masked).

Which program a file configures: a file with a ``[train]`` section is the trainer's, any
other the daemon's (``--kind`` says otherwise).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tomllib
from pathlib import Path
from typing import Any

from stairway.core.config import CONFIG_ENV, load_config
from stairway.core.errors import ConfigError
from stairway.core.redaction import MASK, redact

# apprise URLs carry their tokens in the URL (tgram://TOKEN/CHAT, mailto://user:pass@host)
_URL_SECRET = re.compile(r"^([a-z][a-z0-9+.-]*://)(.+)$", re.IGNORECASE)


def default_config(fallback: str) -> str:
    """--config's default: $STAIRWAY_CONFIG where set, else ``fallback``."""
    return os.environ.get(CONFIG_ENV) or fallback


def add_parser(sub) -> None:
    c = sub.add_parser("config", help="validate a config file, or show it as it will run")
    cs = c.add_subparsers(dest="action", required=True)
    for name, text in (
        ("check", "validate FILE: every problem on its own line; exit 0 when it is valid, 2 when not"),
        ("show", "FILE as the program will run it: defaults, environment overrides, secrets masked"),
    ):
        a = cs.add_parser(name, help=text, description=text)
        a.add_argument("file", nargs="?", help=f"the config (default: ${CONFIG_ENV})")
        a.add_argument(
            "--kind",
            choices=["daemon", "trainer"],
            help="the program it configures (default: trainer when it has a [train] section, else daemon)",
        )
        if name == "show":
            a.add_argument("--json", action="store_true", help="JSON instead of TOML-like text")
    c.set_defaults(func=run)


def _kind(path: Path, given: str | None) -> str:
    if given:
        return given
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError):
        return "daemon"  # load_config reports the file's own problem
    return "trainer" if "train" in data else "daemon"


def load_any(file: str | None, kind: str | None):
    """The config of either program, as that program loads it (ConfigError otherwise)."""
    name = file or os.environ.get(CONFIG_ENV)
    if not name:
        raise ConfigError(f"config: name a file, or set {CONFIG_ENV}")
    path = Path(name)
    if _kind(path, kind) == "trainer":
        from stairway.trainer.config import TrainerConfig

        return "trainer", load_config(TrainerConfig, path)
    from stairway.daemon.config import DaemonConfig

    return "daemon", load_config(DaemonConfig, path)


def masked(value: Any, key: str = "") -> Any:
    """The config as data with its secrets masked: alert URLs keep only their scheme, and any
    registered secret is masked wherever it appears."""
    if isinstance(value, dict):
        return {k: masked(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(v, key) for v in value]
    if isinstance(value, str):
        m = _URL_SECRET.match(value)
        if key == "urls" and m:
            return m.group(1) + MASK
        return redact(value)
    return value


def _lines(d: dict[str, Any], prefix: str = "") -> list[str]:
    out: list[str] = []
    scalars = {k: v for k, v in d.items() if not isinstance(v, dict)}
    tables = {k: v for k, v in d.items() if isinstance(v, dict)}
    if scalars and prefix:
        out.append(f"[{prefix}]")
    for k, v in scalars.items():
        out.append(f"{k} = {json.dumps(v)}")
    for k, v in tables.items():
        block = _lines(v, f"{prefix}.{k}" if prefix else k)
        if out and block and block[0].startswith("["):
            out.append("")
        out += block
    return out


def run(args: argparse.Namespace) -> int:
    try:
        kind, cfg = load_any(args.file, args.kind)
    except ConfigError as e:
        if args.action != "check":
            raise
        print(redact(str(e)))
        return 2
    if args.action == "check":
        print(f"{args.file or os.environ.get(CONFIG_ENV)}: a valid {kind} config")
        return 0
    data = masked(cfg.model_dump(mode="json"))
    try:
        print(json.dumps(data, indent=2) if args.json else "\n".join(_lines(data)))
    except BrokenPipeError:  # `config show | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    return 0
