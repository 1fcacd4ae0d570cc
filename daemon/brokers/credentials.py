"""Secrets for broker adapters: systemd credentials first, then the environment.

systemd's ``LoadCredential=``/``SetCredentialEncrypted=`` place each secret in a file under
``$CREDENTIALS_DIRECTORY`` readable only by the service; outside systemd the environment is
used. Secrets never pass through config files, logs or exception messages.
"""

from __future__ import annotations

import os
from pathlib import Path

from stairway.core.errors import ConfigError
from stairway.core.redaction import register_secret


def read_secret(credential: str, env_var: str, environ: dict[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    cred_dir = env.get("CREDENTIALS_DIRECTORY")
    if cred_dir:
        path = Path(cred_dir) / credential
        if path.exists():
            value = path.read_text().strip()
            if not value:
                raise ConfigError(f"credential {path} is empty")
            register_secret(value)
            return value
    value = env.get(env_var, "").strip()
    if value:
        register_secret(value)
        return value
    where = f"$CREDENTIALS_DIRECTORY/{credential}" if cred_dir else f"a systemd credential named {credential!r}"
    raise ConfigError(f"no {credential} secret: set {where} or the environment variable {env_var}")
