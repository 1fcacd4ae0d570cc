"""Issue 9.11: pacing works with the shipped batch size, the stale-data rule sees replay time,
and with http_port = 0 the bound port is logged."""

import asyncio
import json
import sqlite3
import time

from stairway.core.bar_files import load_bars
from stairway.daemon.app import Daemon
from stairway.daemon.feeds.replay import ReplayFeed
from tests.helpers import EURUSD, daemon_config, tiny_checkpoint, write_bars_csv

HOUR = 3600 * 10**9


def _bars(n):
    b = load_bars(EURUSD)[0]
    return b[b["ts_ns"] >= 1506816000 * 10**9][:n]


def test_paced_feed_never_hands_over_future_quotes_with_a_huge_batch():
    from stairway.core.bar_ticks import bars_to_ticks

    ticks = bars_to_ticks(_bars(60), HOUR, "ask", 1e-4)
    speed = 3600 * 40.0  # an hour of quotes in 25 ms
    feed = ReplayFeed({"EUR_USD": ticks}, 65_536, speed)

    async def consume():
        lateness, early, batches = [], 0, 0
        async for inst, batch in feed.batches():
            assert inst == "EUR_USD"
            now_tick = feed.replay_now_ns()
            batches += 1
            early += int((batch["ts_ns"] > now_tick + int(0.002 * speed * 1e9)).sum())  # 2 ms tolerance
            lateness.append((now_tick - int(batch["ts_ns"][0])) / 1e9 / speed)
        return lateness, early, batches

    t0 = time.monotonic()
    lateness, early, batches = asyncio.run(consume())
    wall = time.monotonic() - t0
    span = (int(ticks["ts_ns"][-1]) - int(ticks["ts_ns"][0])) / 1e9 / speed
    assert early == 0  # no quote before its time
    assert batches > 50  # the 65,536-quote batch was split by time
    assert wall >= span * 0.95  # paced: the replay takes its (scaled) real time


def test_paced_replay_with_shipped_batch_size_trades_without_stale_blocks_and_logs_port(tmp_path, spec, capsys):
    from stairway.core.logs import configure_logging

    configure_logging(json=True, level="info")  # as the service logs (the fixture resets it afterwards)
    bars = _bars(200)
    tiny_checkpoint(tmp_path / "models", spec, seed=1)
    cfg, _ = daemon_config(
        tmp_path, write_bars_csv(tmp_path / "b.csv", bars), "2017-10-01", "2018-01-01", speed=3600 * 60.0, http_port="0"
    )
    assert cfg.replay.batch_ticks == 65_536 and cfg.service.http_port == 0

    async def go():
        d = Daemon(cfg)
        t0 = time.monotonic()
        res = await d.run()
        return res, time.monotonic() - t0, d

    res, wall, d = asyncio.run(go())
    span_secs = (int(bars["ts_ns"][-1]) - int(bars["ts_ns"][0])) / 1e9 / (3600 * 60.0)
    assert wall >= span_secs * 0.9  # ~3.3 s: the speed setting took effect
    db = sqlite3.connect(res.db_path)
    kinds = {r[0] for r in db.execute("SELECT kind FROM risk_events")}
    assert "stale_data" not in kinds and res.counters["orders"] > 0
    out = capsys.readouterr().out
    events = [json.loads(ln) for ln in out.splitlines() if ln.startswith("{")]
    listening = [e for e in events if e.get("event") == "http_listening"]
    assert res.http_port > 0 and [e["port"] for e in listening] == [res.http_port]
