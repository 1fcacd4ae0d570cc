"""Restart to first decision: a paper replay of real EUR/USD hours stopped right after a bar
close, then restarted at that quote in a new process, with and without warm start. Figures:
seconds from the new process's start (interpreter, imports, config, model, history) to its
first decision, and how many bars it closed before that decision (warm: the first; cold: a
feature window). Plus the time to fetch the warm start's history from the local OANDA v20
emulator (H1 candles for the regime's 30 days, paged).

    python bench/restart.py [--runs R]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHILD = r"""
import asyncio, json, sys, time
import numpy as np
sys.path.insert(0, sys.argv[1] + "/bench")
from common import bench_policy
from stairway.core.config import load_config
from stairway.core.logs import configure_logging
from stairway.daemon.app import run_daemon
from stairway.daemon.config import DaemonConfig
from stairway.daemon.feeds.replay import replay_ticks

configure_logging(level="warning")
cfg = load_config(DaemonConfig, sys.argv[2], environ={})
half = sys.argv[3]
ticks = replay_ticks(cfg, *cfg.replay.range.ns())
H = cfg.bars.period_ns
cut = int(np.unique(ticks["ts_ns"] - ticks["ts_ns"] % H)[len(np.unique(ticks["ts_ns"] // H)) // 2])
j = int(np.searchsorted(ticks["ts_ns"], cut))
part = ticks[: j + 1] if half == "first" else ticks[j:]

class Timed:
    def __init__(self, inner):
        self.inner, self.kind, self.sha, self.note, self.card = inner, inner.kind, inner.sha, "", inner.card
        self.first = None
    def act(self, obs):
        if self.first is None:
            self.first = time.time()
        return self.inner.act(obs)
    def reset(self):
        self.first = None
        self.inner.reset()

p = Timed(bench_policy("ppo"))
res = asyncio.run(run_daemon(cfg, policy=p, ticks=part))
print(json.dumps({"first_decision_wall": p.first, "bars": res.counters["bars"],
                  "decisions": res.counters["decisions"], "history_bars": res.counters["history_bars"]}))
"""


def config(tmp: Path, warm: bool) -> Path:
    text = (ROOT / "config" / "paper.toml").read_text()
    text = text.replace(
        'bars_csv = "data/FOREX_EURUSD_1H_ASK.csv"', f'bars_csv = "{ROOT / "data" / "FOREX_EURUSD_1H_ASK.csv"}"'
    )
    for k in ("state_dir", "models_dir", "gate_db"):
        text = text.replace(f'{k} = "', f'{k} = "{tmp}/')
    text = text.replace("require_gate_record = true", "require_gate_record = false")
    text = text.replace("[service]\n", f"[service]\nwarm_start = {str(warm).lower()}\n")
    p = tmp / "paper.toml"
    p.write_text(text)
    return p


def child(cfg: Path, half: str) -> tuple[float, dict]:
    t0 = time.time()
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(ROOT), str(cfg), half], capture_output=True, text=True, check=True
    )
    return t0, json.loads(out.stdout.strip().splitlines()[-1])


def candles_fetch() -> dict:
    """OANDA emulator: the warm start's H1 history (30 days of regime window) through the adapter."""
    import datetime as dt

    from stairway.core.config import load_config
    from stairway.daemon.brokers.oanda.broker import OandaBroker
    from stairway.daemon.config import DaemonConfig
    from stairway.daemon.feeds.replay import replay_ticks
    from stairway.emulators.oanda_v20 import OandaEmulator

    cfg = load_config(DaemonConfig, ROOT / "config" / "paper.toml", environ={})
    cfg = cfg.model_copy(
        update={"data": cfg.data.model_copy(update={"bars_csv": ROOT / "data" / "FOREX_EURUSD_1H_ASK.csv"})}
    )
    t0 = int(dt.datetime(2017, 9, 1, tzinfo=dt.UTC).timestamp()) * 10**9
    q = replay_ticks(cfg, t0, t0 + 60 * 86400 * 10**9)

    async def go():
        emu = OandaEmulator()
        url = await emu.start()
        emu.prices = list(zip(q["ts_ns"].tolist(), q["bid"].tolist(), q["ask"].tolist()))
        emu.now_ns = emu.prices[-1][0]
        broker = OandaBroker(url, emu.account, emu.token, url)
        await broker.connect()
        try:
            s = time.perf_counter()
            bars = await broker.history_bars("EUR_USD", 60, "mid", emu.now_ns - 60 * 86400 * 10**9, emu.now_ns)
            return time.perf_counter() - s, len(bars), emu.candle_requests
        finally:
            await broker.close()
            await emu.stop()

    secs, n, requests = asyncio.run(go())
    return {"oanda_h1_60d_fetch_s": round(secs, 3), "oanda_h1_60d_bars": n, "oanda_requests": requests}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    fig: dict = {}
    for warm in (True, False):
        secs, bars_before = [], []
        for _ in range(a.runs):
            with tempfile.TemporaryDirectory() as tmp:
                cfg = config(Path(tmp), warm)
                child(cfg, "first")
                t0, r = child(cfg, "second")
                secs.append(r["first_decision_wall"] - t0)
                bars_before.append(r["bars"] - r["decisions"] - 1)  # bars closed before the first decision
        key = "warm" if warm else "cold"
        fig[f"{key}_process_start_to_first_decision_s_median"] = round(statistics.median(secs), 3)
        fig[f"{key}_process_start_to_first_decision_s"] = [round(s, 3) for s in secs]
        fig[f"{key}_bars_before_first_decision"] = bars_before[0]
        fig[f"{key}_history_bars"] = r["history_bars"]
    fig.update(candles_fetch())
    from common import report

    report("restart", fig)


if __name__ == "__main__":
    main()
