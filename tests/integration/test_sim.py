"""Issue 22 §5: `stairway sim oanda` serves a bar file's quotes over the OANDA v20 wire from a
process of its own; the stream carries the file's quotes (the replay's bar-to-quote path),
moved by whole weeks to start near now, and SIGTERM ends it cleanly."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
import urllib.request

import numpy as np

from stairway.cli import main as cli_main
from stairway.core.bar_files import load_bars
from stairway.core.bar_ticks import bars_to_ticks
from tests.helpers import EURUSD, ROOT

WEEK_NS = 7 * 86_400 * 10**9


def test_sim_oanda_streams_the_files_quotes_and_stops_on_sigterm():
    cmd = [sys.executable, "-m", "stairway.cli", "sim", "oanda", "--port", "0", "--speed", "1000000",
           "--from", "2017-10-02", "--bars", str(EURUSD), "--token", "t0k"]  # fmt: skip
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()
        url = re.search(r"at (http://127\.0\.0\.1:\d+)", line).group(1)
        assert "OANDA_TOKEN=t0k" in line and f"STAIRWAY_BROKER__OANDA__STREAM_URL={url}" in line
        req = urllib.request.Request(
            f"{url}/v3/accounts/101-001-0000000-001/pricing/stream?instruments=EUR_USD",
            headers={"Authorization": "Bearer t0k"},
        )
        got = []
        with urllib.request.urlopen(req, timeout=30) as r:
            while len(got) < 12:
                msg = json.loads(r.readline())
                if msg["type"] == "PRICE":
                    got.append(msg)
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=20) == 0, p.stderr.read()
    finally:
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
    bars, rep = load_bars(EURUSD)
    bars = bars[bars["ts_ns"] >= int(dt.datetime(2017, 10, 2, tzinfo=dt.UTC).timestamp()) * 10**9]
    want = bars_to_ticks(bars, rep.period_minutes * 60 * 10**9, "ask", 1e-4)[:12]
    assert [float(m["asks"][0]["price"]) for m in got] == [round(float(a), 5) for a in want["ask"]]
    ts = np.array([int(dt.datetime.fromisoformat(m["time"][:26] + "+00:00").timestamp() * 1e6) * 1000 for m in got])
    shift = ts - want["ts_ns"]
    assert len(set((shift // 1000).tolist())) == 1 and shift[0] % WEEK_NS < 10**6  # whole weeks, one shift
    assert abs(ts[0] - dt.datetime.now(dt.UTC).timestamp() * 1e9) < WEEK_NS + 86_400 * 10**9  # near now


def test_sim_bad_input_is_one_line(capsys, tmp_path):
    assert cli_main(["sim", "oanda", "--speed", "0", "--bars", str(EURUSD)]) == 2
    assert "--speed 0.0: must be > 0" in capsys.readouterr().err
    assert cli_main(["sim", "oanda", "--bars", str(tmp_path / "none.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert "none.csv: bar file not found" in err and err.count("\n") == 0
    assert cli_main(["sim", "oanda", "--bars", str(EURUSD), "--from", "2030-01-01"]) == 2
    assert "has no bars from then" in capsys.readouterr().err


def test_sim_ib_serves_quotes_to_the_real_ib_async_client():
    """`stairway sim ib`: the real ib_async client connects as to IB Gateway, qualifies EURUSD
    and receives the file's first quote; SIGTERM ends the emulator with exit 0."""
    import asyncio

    import ib_async
    from ib_async import IB, Forex

    cmd = [sys.executable, "-m", "stairway.cli", "sim", "ib", "--port", "0", "--speed", "100000",
           "--from", "2017-10-02", "--bars", str(EURUSD)]  # fmt: skip
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    bars, rep = load_bars(EURUSD)
    bars = bars[bars["ts_ns"] >= int(dt.datetime(2017, 10, 2, tzinfo=dt.UTC).timestamp()) * 10**9]
    first = bars_to_ticks(bars[:1], rep.period_minutes * 60 * 10**9, "ask", 1e-4)[0]

    async def client(port: int) -> tuple[float, float]:
        ib_async.util.getLoop.cache_clear()
        ib = IB()
        await ib.connectAsync("127.0.0.1", port, clientId=5, timeout=10)
        try:
            eur = Forex("EURUSD")
            await ib.qualifyContractsAsync(eur)
            ticker = ib.reqMktData(eur)

            async def quoted():
                while not (ticker.bid == ticker.bid and ticker.bid > 0):  # NaN until the first tick
                    await ib.updateEvent

            await asyncio.wait_for(quoted(), 20)
            return ticker.bid, ticker.ask
        finally:
            ib.disconnect()

    try:
        line = p.stdout.readline()
        port = int(re.search(r"at 127\.0\.0\.1:(\d+)", line).group(1))
        assert f"STAIRWAY_BROKER__IB__PORT={port}" in line and "paper-live-ib.toml" in line
        bid, ask = asyncio.run(client(port))
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=20) == 0, p.stderr.read()
    finally:
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
    assert (round(bid, 5), round(ask, 5)) == (round(float(first["bid"]), 5), round(float(first["ask"]), 5))
