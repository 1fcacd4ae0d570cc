"""Every fault case's whole output (stdout and stderr, logs included) is searched for the
emulator's OANDA token and account id (issue 9.8): neither may ever be shown."""

import pytest

from stairway.emulators.oanda_v20 import OandaEmulator

SECRETS = (OandaEmulator().account, OandaEmulator().token)


@pytest.fixture(autouse=True)
def no_secret_in_output(request):
    # a case that reads its own output with capsys gets it checked there instead
    cap = request.getfixturevalue("capsys" if "capsys" in request.fixturenames else "capfd")
    yield
    out, err = cap.readouterr()
    for secret in SECRETS:
        assert secret not in out and secret not in err, f"{secret!r} appeared in the output"
