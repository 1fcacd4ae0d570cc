"""Issue 19.10: the units work as the README installs them. The shipped fetch unit failed
against the shipped trainer config (`no train.data_store and no --store`), and retraining on
new data was off in every shipped config. Here the README's install is followed in a scratch
/etc and /var/lib (config/trainer-service.toml as /etc/stairway/trainer.toml,
config/paper-live-oanda.toml as /etc/stairway/daemon.toml pointed at the local v20 emulator,
the credentials as LoadCredential= gives them), history is imported once, then each unit's own
ExecStart runs in its WorkingDirectory: the fetch, then the nightly training."""

from __future__ import annotations

import asyncio
import configparser
import datetime as dt
import os
import shlex
import sqlite3
import sys
import time
from pathlib import Path

import pytest

from stairway.core.bar_files import load_bars
from stairway.core.bar_ticks import bars_to_ticks
from stairway.emulators.oanda_v20 import OandaEmulator
from tests.helpers import EURUSD, ROOT, write_bars_csv
from tests.integration.test_gates import LENIENT

WEEK = 7 * 86_400 * 10**9
FAST = LENIENT | {  # a quick run of the same command (the unit's settings, smaller)
    "STAIRWAY_CYCLES__COUNT": "1",
    "STAIRWAY_CYCLES__STEPS": "500",
    "STAIRWAY_PPO__NUM_ENVS": "4",
    "STAIRWAY_PPO__NUM_STEPS": "64",
    "STAIRWAY_PPO__HIDDEN": "16",
    "STAIRWAY_TRAIN__ROLLING_DAYS": "90",
}


def exec_start(unit: str, etc: Path) -> list[str]:
    p = configparser.ConfigParser(strict=False, interpolation=None)
    p.read(ROOT / "systemd" / unit)
    argv = shlex.split(p["Service"]["ExecStart"])
    assert argv[0] == "/opt/stairway/.venv/bin/stairway"
    return [sys.executable, "-m", "stairway.cli", *(a.replace("/etc/stairway", str(etc)) for a in argv[1:])]


def redated_bars():
    """The real EUR/USD year moved by whole weeks (weekday and hour kept) so that its last bar
    (a Friday's) closed within the last week: the unit's `--days 7` has a week of candles on
    any weekday (on a Saturday, a day's margin had moved them out of the window)."""
    bars = load_bars(EURUSD)[0]
    weeks = (time.time_ns() - int(bars["ts_ns"][-1]) - 3600 * 10**9) // WEEK
    bars = bars.copy()
    bars["ts_ns"] += weeks * WEEK
    return bars


@pytest.mark.slow
def test_the_fetch_unit_then_the_trainer_unit_run_as_installed(tmp_path):
    etc, var = tmp_path / "etc" / "stairway", tmp_path / "var" / "lib" / "stairway"
    (etc / "credentials").mkdir(parents=True)
    var.mkdir(parents=True)
    bars = redated_bars()
    history = write_bars_csv(tmp_path / "FOREX_EURUSD_1H_ASK.csv", bars[: -24 * 10])  # the operator's history

    async def go():
        emu = OandaEmulator()
        url = await emu.start()
        q = bars_to_ticks(bars[-24 * 20 :], 3600 * 10**9, "ask", 0.0001)
        emu.prices = list(zip(q["ts_ns"].tolist(), q["bid"].tolist(), q["ask"].tolist()))
        emu.now_ns = time.time_ns()
        # README: cp config/paper-live-oanda.toml /etc/stairway/daemon.toml (broker URLs: the emulator's)
        # and its root set to /var/lib/stairway (here: var), as the README's install does with sed
        daemon = (ROOT / "config" / "paper-live-oanda.toml").read_text().replace('root = ".."', f'root = "{var}"')
        daemon = daemon.replace("https://api-fxpractice.oanda.com", url).replace(
            "https://stream-fxpractice.oanda.com", url
        )
        (etc / "daemon.toml").write_text(daemon)
        # README: cp config/trainer-service.toml /etc/stairway/trainer.toml
        trainer = (ROOT / "config" / "trainer-service.toml").read_text().replace("/var/lib/stairway", str(var))
        (etc / "trainer.toml").write_text(trainer.replace("/etc/stairway", str(etc)))
        (etc / "credentials" / "oanda-token").write_text(emu.token)
        (etc / "credentials" / "oanda-account").write_text(emu.account)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("STAIRWAY_", "OANDA_"))}
        env |= {"CREDENTIALS_DIRECTORY": str(etc / "credentials"), "PYTHONUNBUFFERED": "1"}

        async def run(argv, extra=None):
            p = await asyncio.create_subprocess_exec(
                *argv, cwd=var, env=env | (extra or {}), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
            )
            out, err = await asyncio.wait_for(p.communicate(), 600)
            return p.returncode, out.decode(), err.decode()

        try:
            imp = [*exec_start("stairway-trainer.service", etc)[:3], "data", "--config", str(etc / "trainer.toml")]
            first = await run([*imp, "import", str(history)])  # README: import your history once
            fetched = await run(exec_start("stairway-data-fetch.service", etc))
            trained = await run(exec_start("stairway-trainer.service", etc), FAST)
        finally:
            await emu.stop()
        return first, fetched, trained

    first, fetched, trained = asyncio.run(go())
    assert first[0] == 0, first
    assert fetched[0] == 0, fetched
    assert "fetched" in fetched[1] and "bars of EUR_USD" in fetched[1]
    store = var / "state" / "data" / "EUR_USD"
    (got,) = list((store / "fetched").glob("*.csv"))
    last_day = dt.date.fromisoformat(got.stem.split("_")[1])
    assert last_day == dt.datetime.now(dt.UTC).date()  # --days 7 up to today
    rc, out, err = trained
    assert rc in (0, 1), out[-3000:] + err[-3000:]  # published, or gates failed: never bad input
    assert "cycle(s), candidate" in out
    with sqlite3.connect(var / "state" / "gate.db") as db:
        (outcome,) = db.execute("SELECT outcome FROM training_runs").fetchone()
    assert outcome in ("published", "published+gold", "not_published", "rolled_back_to_gold")
    assert (var / "state" / "data" / "EUR_USD" / "merged_60m.csv").exists()
    assert (var / "state" / "trainer.prom").exists()  # the run's figures for node_exporter
