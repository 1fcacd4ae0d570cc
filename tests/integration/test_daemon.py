"""The daemon end to end on real bars with a tiny checkpoint: everything lands in SQLite,
a SIGTERM mid-run loses nothing acknowledged, bad models and configs are refused clearly."""

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from stairway.cli import main as cli_main
from stairway.core.bar_files import load_bars
from stairway.core.errors import CheckpointMismatch
from stairway.daemon.app import run_daemon
from tests.helpers import EURUSD, ROOT, daemon_config, tiny_checkpoint, write_bars_csv

pytestmark = pytest.mark.usefixtures("no_blocking")  # fail on blocking calls in the event loop


@pytest.fixture()
def small_csv(tmp_path):
    bars = load_bars(EURUSD)[0]
    return write_bars_csv(tmp_path / "bars.csv", bars[(bars["ts_ns"] >= 1506816000 * 10**9)][:400])  # from 2017-10-01


def query(db, sql):
    with sqlite3.connect(db) as c:
        return c.execute(sql).fetchall()


def test_daemon_replay_persists_every_decision_order_and_fill(tmp_path, spec, small_csv):
    ck, _ = tiny_checkpoint(tmp_path / "models", spec, seed=3)
    cfg, _ = daemon_config(tmp_path, small_csv, "2017-10-01", "2018-01-01")
    res = asyncio.run(run_daemon(cfg))
    db = res.db_path
    c = res.counters
    assert c["bars"] == 400 and c["decisions"] == 400 - spec.window
    assert query(db, "SELECT count(*) FROM decisions")[0][0] == c["decisions"]
    assert query(db, "SELECT DISTINCT model_sha FROM decisions") == [(ck.sha,)]
    assert query(db, "SELECT count(*) FROM fills")[0][0] == c["fills"] > 10
    assert query(db, "SELECT count(*) FROM orders")[0][0] == c["orders"]
    # every order's filled units equal the sum of its fills, and statuses agree
    for coid, units, filled, status in query(db, "SELECT client_order_id, units, filled_units, status FROM orders"):
        (total,) = query(db, f"SELECT coalesce(sum(units), 0) FROM fills WHERE client_order_id = '{coid}'")[0]
        assert total == pytest.approx(filled)
        assert status == ("filled" if abs(filled) == abs(units) else "partial" if filled else "cancelled")
    # every fill is after its bar closed, and no earlier than the closing quote + latency
    late = query(
        db,
        "SELECT count(*) FROM fills f JOIN orders o USING (run_id, client_order_id) "
        "WHERE f.ts_ns < o.not_before_ns OR f.ts_ns <= o.bar_ts_ns + 3600 * 1000000000",
    )
    assert late == [(0,)]
    assert query(db, "SELECT min(not_before_ns - bar_ts_ns) FROM orders")[0][0] == 3600 * 10**9 + 250 * 10**6
    # the final position equals the sum of all fills; the run is closed with its summary
    (net,) = query(db, "SELECT sum(units) FROM fills")[0]
    last_units = query(db, "SELECT units FROM positions ORDER BY ts_ns DESC LIMIT 1")[0][0]
    assert last_units == pytest.approx(net)
    (summary,) = query(db, "SELECT summary_json FROM runs")[0]
    assert json.loads(summary)["trades"] == res.summary["trades"]
    # per-session (UTC day) rows add up to the run
    sessions = query(
        db, "SELECT session_date, decisions, orders, fills, equity_open, equity_close, pnl FROM session_metrics"
    )
    # sessions are tracked from the first bar (a restored position is protected while warming
    # up); performance counts the days with decisions
    assert len([r for r in sessions if r[1]]) == res.summary["days"] >= 10
    assert sum(r[1] for r in sessions) == c["decisions"] and sum(r[2] for r in sessions) == c["orders"]
    assert sum(r[6] for r in sessions) == pytest.approx(res.summary["pnl"], abs=1e-6)
    assert all(a[5] == b[4] for a, b in zip(sessions, sessions[1:]))  # each day opens at the last close
    assert query(db, "PRAGMA journal_mode") == [("wal",)]
    assert query(db, "PRAGMA integrity_check") == [("ok",)]
    assert not res.interrupted


def test_daemon_refuses_incompatible_checkpoint(tmp_path, spec, small_csv):
    tiny_checkpoint(tmp_path / "models", spec, feature_hash="feedfacefeedface")
    cfg, _ = daemon_config(tmp_path, small_csv, "2017-10-01", "2018-01-01")
    with pytest.raises(
        CheckpointMismatch, match=f"feature spec feedfacefeedface \\(checkpoint\\) != {spec.hash} \\(ours\\)"
    ):
        asyncio.run(run_daemon(cfg))
    assert not (tmp_path / "state" / "paper-replay.db").exists()  # refused before touching anything


def test_cli_reports_bad_config_and_missing_model_without_traceback(tmp_path, small_csv, capsys):
    cfg, path = daemon_config(tmp_path, small_csv, "2017-10-01", "2018-01-01")
    assert cli_main(["daemon", "run", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "no current model" in err and "Traceback" not in err
    path.write_text(path.read_text().replace("batch_ticks = 65536", "batch_ticks = -1"))
    assert cli_main(["daemon", "run", "--config", str(path)]) == 2
    assert "replay.batch_ticks = -1: Input should be greater than 0" in capsys.readouterr().err


@pytest.mark.slow
def test_sigterm_mid_run_loses_nothing_acknowledged(tmp_path, spec, small_csv):
    tiny_checkpoint(tmp_path / "models", spec, seed=3)
    _, path = daemon_config(tmp_path, small_csv, "2017-10-01", "2018-01-01", batch_ticks=4, speed=72000)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "stairway.cli", "daemon", "run", "--config", str(path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    acked, lines = [], []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if '"order_filled"' in line:
            acked.append(json.loads(line)["client_order_id"])
            if len(acked) >= 5:
                proc.send_signal(signal.SIGTERM)
                break
    rest, _ = proc.communicate(timeout=60)
    out = "".join(lines) + rest
    acked += [json.loads(x)["client_order_id"] for x in rest.splitlines() if '"order_filled"' in x]
    assert proc.returncode == 0, out
    assert "INTERRUPTED" in out and '"shutdown_requested"' in out
    db = tmp_path / "state" / "paper-replay.db"
    stored = {r[0] for r in query(db, "SELECT client_order_id FROM fills")}
    assert len(acked) >= 5 and set(acked) <= stored
    (ended, summary) = query(db, "SELECT ended_ns, summary_json FROM runs")[0]
    assert ended is not None
    decisions = json.loads(summary)["decisions"]
    assert query(db, "SELECT count(*) FROM decisions")[0][0] == decisions < 400 - spec.window
    assert query(db, "SELECT count(*) FROM orders WHERE status NOT IN ('filled', 'partial', 'cancelled')") == [(0,)]
    assert query(db, "PRAGMA integrity_check") == [("ok",)]


def test_decision_orders_fill_at_the_next_bars_open_not_at_an_extreme(tmp_path, spec, small_csv):
    """Issue 10.1: with bar-derived quotes, an order decided at a bar's close fills at the next
    bar's open (plus the modelled spread and slippage), never at one of that bar's extremes."""
    tiny_checkpoint(tmp_path / "models", spec, seed=3)
    cfg, _ = daemon_config(tmp_path, small_csv, "2017-10-01", "2018-01-01")
    res = asyncio.run(run_daemon(cfg))
    pip = cfg.instrument.pip_size
    slip, spread = cfg.execution.slippage_pips * pip, cfg.data.modelled_spread_pips * pip
    opens = dict(query(res.db_path, "SELECT ts_ns, open FROM bars"))
    rows = query(
        res.db_path, "SELECT o.bar_ts_ns, f.units, f.price FROM fills f JOIN orders o USING (run_id, client_order_id)"
    )
    assert len(rows) > 10
    times = sorted(opens)
    for bar_ts, units, price in rows:
        nxt = times[times.index(bar_ts) + 1]  # the bar the order trades into (after a gap: the next one)
        next_open = opens[nxt]  # its ask-side open
        want = next_open + slip if units > 0 else next_open - spread - slip
        assert price == pytest.approx(want, abs=1e-12), (bar_ts, units, price, next_open)


def test_paper_replay_summary_shows_baselines_intervals_and_risk(tmp_path, spec, small_csv, capsys):
    """Issue 10 §2/§5: the paper replay's printed summary puts the policy next to its baselines
    with intervals and the random-entry share, and says what the risk engine did."""
    tiny_checkpoint(tmp_path / "models", spec, seed=3)
    _, path = daemon_config(tmp_path, small_csv, "2017-10-01", "2018-01-01")
    assert cli_main(["daemon", "run", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    for frag in (
        "paper replay",
        "buy_and_hold",
        "sell_and_hold",
        "sma_cross",
        "flat",
        "Sharpe 90 % interval",
        "random entries (100 draws",
        "the policy beat",
        "risk: ",
    ):
        assert frag in out, frag


def test_replay_events_carry_the_replay_time_beside_the_wall_time(tmp_path, spec, small_csv):
    """Issue 22 §1: in a replay, an event logged while a batch of quotes is handled names the
    replayed time (UTC ISO 8601, inside the replayed range) next to the wall clock's timestamp;
    events outside the replay (start-up) carry none."""
    import io
    import json

    from stairway.core.logs import configure_logging

    tiny_checkpoint(tmp_path / "models", spec, seed=3)
    cfg, _ = daemon_config(tmp_path, small_csv, "2017-10-01", "2018-01-01")
    out = io.StringIO()
    configure_logging(json=True, level="info", stream=out)
    try:
        asyncio.run(run_daemon(cfg))
    finally:
        configure_logging(level="warning")
    events = [json.loads(line) for line in out.getvalue().splitlines() if line.startswith("{")]
    filled = [e for e in events if e["event"] == "order_filled"]
    assert filled and all(e["replay_time"].startswith("2017-10") for e in filled)
    assert all(not e["timestamp"].startswith("2017") for e in filled)  # the wall clock's, not the replay's
    started = next(e for e in events if e["event"] == "daemon_started")
    assert "replay_time" not in started
