"""Shared test helpers: real-data fixtures, a pure-Python reference bar builder, tiny models."""

from __future__ import annotations

import calendar
import csv
import json
import math
from pathlib import Path

import numpy as np
import torch

from stairway.core.checkpoint import CheckpointMeta, publish, save_checkpoint
from stairway.core.config import load_config
from stairway.core.features import FeatureSpec
from stairway.core.ppo_net import ActorCritic
from stairway.core.types import ACTION_NAMES, TICK_DTYPE

ROOT = Path(__file__).resolve().parents[1]
RESOURCES = Path(__file__).resolve().parent / "resources"
EURUSD = ROOT / "data" / "FOREX_EURUSD_1H_ASK.csv"


def usdthb_ticks() -> np.ndarray:
    """The USD/THB quotes in file order (minute timestamps, as delivered)."""
    rows = list(csv.DictReader(open(RESOURCES / "usdthb_ticks_1997-06.csv")))
    out = np.empty(len(rows), dtype=TICK_DTYPE)
    for k, r in enumerate(rows):
        x = r["XDATE"]
        secs = calendar.timegm((int(x[:4]), int(x[4:6]), int(x[6:8]), int(x[8:10]), int(x[10:12]), 0, 0, 0, 0))
        out[k] = (secs * 10**9, float(r["BID"]), float(r["ASK"]))
    return out


def reference_bars(ticks: np.ndarray, period_ns: int, price: str = "mid", max_jump: float = 0.10, confirm: int = 3):
    """Obviously-correct Python bar builder: the oracle for the numba kernel."""
    bars, counts = [], {"accepted": 0, "bad": 0, "ooo": 0, "dup": 0, "jump": 0}
    last = None
    cur = None
    pending: list[float] = []  # consecutive jumped mids agreeing with the first of them

    def far(x: float, ref: float) -> bool:
        return x > ref * (1 + max_jump) or x * (1 + max_jump) < ref

    for t, b, a in ticks.tolist():
        if not (b > 0 and a > 0 and b <= a and math.isfinite(a) and math.isfinite(b)):
            counts["bad"] += 1
            continue
        if last is not None and t < last[0]:
            counts["ooo"] += 1
            continue
        if last is not None and (t, b, a) == last:
            counts["dup"] += 1
            continue
        if last is not None:
            m = 0.5 * (a + b)
            if far(m, 0.5 * (last[1] + last[2])):
                pending = pending + [m] if pending and not far(m, pending[0]) else [m]
                if len(pending) < confirm:
                    counts["jump"] += 1
                    continue
            pending = []
        p = {"ask": a, "bid": b, "mid": 0.5 * (a + b)}[price]
        bucket = t - t % period_ns
        if cur is not None and cur[0] != bucket:
            bars.append(tuple(cur))
            cur = None
        if cur is None:
            cur = [bucket, p, p, p, p, 1]
        else:
            cur[2], cur[3], cur[4], cur[5] = max(cur[2], p), min(cur[3], p), p, cur[5] + 1
        last = (t, b, a)
        counts["accepted"] += 1
    return bars, cur, counts


def without_stops(cfg):
    """``cfg`` with the shipped protective stop off (for tests that pin down fills, costs or a
    mirror symmetry to the cent, which a stop would blur; stops have their own tests)."""
    plain = cfg.execution.model_copy(update={"stop_atr_multiple": None, "stop_max_loss": None, "stop_pips": None})
    return cfg.model_copy(update={"execution": plain})


def write_bars_csv(path: Path, bars: np.ndarray) -> Path:
    """Write bars in the gym-anytrading day-first layout."""
    import time

    with open(path, "w") as fh:
        fh.write("Time,Open,High,Low,Close,Volume\n")
        for r in bars:
            t = time.gmtime(int(r["ts_ns"]) // 10**9)
            o, h, lo, c, v = (repr(float(r[f])) for f in ("open", "high", "low", "close", "volume"))
            fh.write(f"{time.strftime('%d.%m.%Y %H:%M:%S', t)}.000,{o},{h},{lo},{c},{v}\n")
    return path


def tiny_checkpoint(
    models_dir: Path,
    spec: FeatureSpec,
    seed: int = 0,
    hidden: int = 16,
    action_space=ACTION_NAMES,
    feature_hash: str | None = None,
    gate_db: Path | None = None,
    validation: dict | None = None,
    feature_profile: dict | None = None,
):
    """A small PPO checkpoint, published as ``current`` (with ``validation``: the trainer's
    validation metrics, recorded as the trainer records them). With ``gate_db`` its passing gate record
    is written first, as the trainer does: a daemon polling ``current`` never sees it ungated."""
    torch.manual_seed(seed)
    net = ActorCritic(spec.obs_dim, len(action_space), hidden=hidden)
    # larger output weights than PPO's init so an untrained net actually trades
    with torch.no_grad():
        net.actor[-1].weight.mul_(300.0)
    meta = CheckpointMeta(
        "ppo",
        feature_hash or spec.hash,
        spec.to_json(),
        (spec.obs_dim,),
        tuple(action_space),
        hidden,
        extra=json.dumps(
            ({"validation": validation} if validation is not None else {})
            | ({"feature_profile": feature_profile} if feature_profile is not None else {})
        ),
    )
    ck = save_checkpoint(models_dir, net.state_dict(), meta)
    if gate_db is not None:
        pass_gate(gate_db, ck)
    publish(models_dir, ck.sha)
    return ck, net


def pass_gate(gate_db: Path, ck) -> None:
    from stairway.trainer.gatedb import GateDB

    db = GateDB(gate_db)
    db.add_model(ck.sha, ck.meta, 1, "t", 0)
    db.set_verdict(ck.sha, True, {"passed": True})
    db.close()


def shipped_text(name: str) -> str:
    """A shipped config's text, for a copy elsewhere: its ``root`` (``..``, the repository seen
    from config/) made absolute, so its relative paths still name the repository's files."""
    return (ROOT / "config" / name).read_text().replace('root = ".."', f'root = "{ROOT}"', 1)


def daemon_config(tmp: Path, csv_path: Path, start: str, end: str, stops: bool = True, **replay):
    """config/paper.toml on this bar file and range, in ``tmp``; ``stops=False``: without its
    protective stop (for cases about the drawdown tiers, which a stop would pre-empt)."""
    from stairway.daemon.config import DaemonConfig

    text = shipped_text("paper.toml")
    if not stops:
        text = "".join(line for line in text.splitlines(True) if not line.startswith(("stop_atr_", "stop_max_loss")))
    text = text.replace('bars_csv = "data/FOREX_EURUSD_1H_ASK.csv"', f'bars_csv = "{csv_path}"')
    text = text.replace('state_dir = "state"', f'state_dir = "{tmp / "state"}"')
    text = text.replace('models_dir = "models"', f'models_dir = "{tmp / "models"}"')
    text = text.replace(
        "range = { start = 2017-10-01, end = 2018-01-01 }", f"range = {{ start = {start}, end = {end} }}"
    )
    text = text.replace('gate_db = "state/gate.db"', f'gate_db = "{tmp / "state" / "gate.db"}"')
    replay.setdefault("require_gate_record", "false")
    for k, v in replay.items():
        if f"\n{k} = " in text:
            text = text.replace(f"\n{k} = ", f"\n{k} = {v}  # was ")
        else:  # not in the shipped file: a [service] setting
            text = text.replace("[service]\n", f"[service]\n{k} = {v}\n")
    p = tmp / "paper.toml"
    p.write_text(text)
    return load_config(DaemonConfig, p, environ={}), p


def paced_config(tmp: Path, n_bars: int = 400, **settings):
    """A paper replay of the real EUR/USD bars from 2017-10-01 (``n_bars`` of them) with the
    shipped paper config and ``settings`` ([replay] or [service] keys, e.g. speed, batch_ticks,
    http_port): the set-up of the tests that run a daemon while they act on it."""
    from stairway.core.bar_files import load_bars

    b = load_bars(EURUSD)[0]
    bars = b[b["ts_ns"] >= 1506816000 * 10**9][:n_bars]
    return daemon_config(tmp, write_bars_csv(tmp / "b.csv", bars), "2017-10-01", "2018-01-01", **settings)


class StatusPoller:
    """A thread polling a daemon's /status every ``every_secs`` while in its ``async with`` block; the
    latency of each answer (seconds) in ``latencies``: whether the event loop kept answering."""

    def __init__(self, port: int, every_secs: float = 0.02) -> None:
        import threading

        self.url, self.every = f"http://127.0.0.1:{port}/status", every_secs
        self.latencies: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="status-poller")

    def _run(self) -> None:
        import time
        import urllib.request

        while not self._stop.is_set():
            t0 = time.perf_counter()
            with urllib.request.urlopen(self.url, timeout=10) as r:
                r.read()
            self.latencies.append(time.perf_counter() - t0)
            self._stop.wait(self.every)

    # async only: used from the daemon's own event loop, a blocking join there would stall the
    # very request the poller is waiting on (a poll caught in flight read as a 10 s "stall")
    async def __aenter__(self) -> StatusPoller:
        self._thread.start()
        return self

    async def __aexit__(self, *exc) -> None:
        import asyncio

        self._stop.set()
        await asyncio.to_thread(self._thread.join, 10)


# A portfolio of three instruments from the one real FX series bundled: EUR/USD as it is, and
# the real EUR/USD hours of 13 and 26 weeks earlier re-dated by whole weeks (same weekday and
# hour) under two other names. Real market moves, not simulated ones; the names are labels.
PORTFOLIO_WEEKS = {"EUR_USD": 0, "GBP_USD": 13, "AUD_USD": 26}


def portfolio_bars(tmp: Path) -> dict[str, Path]:
    from stairway.core.bar_files import load_bars

    bars = load_bars(EURUSD)[0]
    out = {}
    for sym, weeks in PORTFOLIO_WEEKS.items():
        b = bars.copy()
        b["ts_ns"] += weeks * 7 * 86_400 * 10**9
        out[sym] = write_bars_csv(tmp / f"FOREX_{sym.replace('_', '')}_1H_ASK.csv", b)
    return out


def portfolio_config(cfg, files: dict[str, Path], **portfolio):
    """``cfg`` (a daemon config) trading every instrument of ``files``; models in models/<symbol>."""
    from stairway.daemon.config import LegConfig, PortfolioConfig

    legs = tuple(LegConfig(symbol=s, pip_size=0.0001, lot_units=100_000, bars_csv=p) for s, p in files.items())
    return cfg.model_copy(update={"portfolio": PortfolioConfig(instruments=legs, **portfolio)})


def html_outline(text: str) -> dict:
    """What a report page holds, parsed with the standard library's HTML parser: tag counts,
    table header cells, link targets and the text (issue 22 §2: tables as tables, no <pre>)."""
    from html.parser import HTMLParser

    out: dict = {"tags": {}, "th": [], "links": [], "text": []}

    class P(HTMLParser):
        cell: str | None = None

        def handle_starttag(self, tag, attrs):
            out["tags"][tag] = out["tags"].get(tag, 0) + 1
            if tag == "a":
                out["links"].append(dict(attrs).get("href"))
            self.cell = "" if tag == "th" else self.cell

        def handle_endtag(self, tag):
            if tag == "th" and self.cell is not None:
                out["th"].append(self.cell.strip())
                self.cell = None

        def handle_data(self, data):
            out["text"].append(data)
            if self.cell is not None:
                self.cell += data

    P().feed(text)
    return out
