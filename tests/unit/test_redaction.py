"""Issue 9.8: registered secrets never reach a log line, a health reason or the CLI's error."""

import io
import json

import structlog

from stairway.core.logs import configure_logging
from stairway.core.redaction import MASK, redact, register_secret
from stairway.daemon.brokers.credentials import read_secret
from stairway.daemon.brokers.oanda.broker import OandaBroker

ACCOUNT = "101-004-7654321-009"


def test_secret_read_from_the_environment_is_masked_in_json_logs():
    assert read_secret("oanda-account", "OANDA_ACCOUNT", {"OANDA_ACCOUNT": ACCOUNT}) == ACCOUNT
    out = io.StringIO()
    configure_logging(json=True, stream=out)
    try:
        structlog.get_logger("t").error(
            "reconcile_failed",
            error=f"GET v3/accounts/{ACCOUNT}/openPositions: 503",
            nested={"paths": [f"v3/accounts/{ACCOUNT}/summary"]},
            exc=RuntimeError(f"boom {ACCOUNT}"),
        )
    finally:
        structlog.reset_defaults()
    line = out.getvalue()
    assert ACCOUNT not in line and MASK in line
    assert json.loads(line)["nested"]["paths"] == [f"v3/accounts/{MASK}/summary"]


def test_adapter_repr_and_messages_hide_account_and_token():
    b = OandaBroker("http://127.0.0.1:1", "001-002-0000001-001", "tok-secret-123")
    assert "001-002-0000001-001" not in repr(b) and "tok-secret-123" not in repr(b)
    assert b._shown("v3/accounts/001-002-0000001-001/orders") == "v3/accounts/***/orders"
    assert redact("token tok-secret-123 in a message") == f"token {MASK} in a message"


def test_cli_error_line_is_redacted(tmp_path, capsys):
    from stairway.cli import main

    register_secret("acct-zz-998877")
    bad = tmp_path / "acct-zz-998877.toml"
    bad.write_text("[instrument\n")
    assert main(["ctl", "status", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("stairway: error:") and "acct-zz-998877" not in err and MASK in err
