"""Warm start (daemon.warm_start): a restarted daemon fills its feature and regime buffers
from history and decides at its first bar close, with the observations an uninterrupted run
has; from its own stored bars (replay), from OANDA candles and IB historical bars (live,
through the emulators); bad history is refused whole, never used."""

from __future__ import annotations

import asyncio
import sqlite3

import ib_async
import numpy as np
import pytest

from stairway.core.bar_builder import BarBuilder
from stairway.core.bar_files import load_bars
from stairway.core.policy import NO_CARD
from stairway.core.types import BAR_DTYPE, TICK_DTYPE
from stairway.daemon.app import run_daemon
from stairway.daemon.feeds.replay import replay_ticks
from stairway.daemon.warm_start import BadHistory, check_bars, gather
from stairway.emulators.oanda_v20 import OandaEmulator
from stairway.emulators.tws import TwsEmulator
from tests.faults.harness import Rig, prices
from tests.helpers import EURUSD, daemon_config, write_bars_csv

pytestmark = pytest.mark.usefixtures("no_blocking")  # fail on blocking calls in the event loop
H = 3600 * 10**9


class RecordingHold:
    """Holds on every bar (the book stays flat, so whole observations compare) and keeps each
    observation it was shown; a warm-up call is dropped by ``reset``."""

    kind, sha, note, card = "ppo", "f" * 64, "", NO_CARD

    def __init__(self) -> None:
        self.seen: list[np.ndarray] = []

    def act(self, obs):
        self.seen.append(obs.copy())
        return 0, 1.0

    def reset(self) -> None:
        self.seen.clear()


def decided(db, run_id=None) -> list[int]:
    with sqlite3.connect(db) as c:
        sql = "SELECT bar_ts_ns FROM decisions" + (" WHERE run_id = ?" if run_id else "") + " ORDER BY bar_ts_ns"
        return [r[0] for r in c.execute(sql, (run_id,) if run_id else ())]


@pytest.fixture()
def csv600(tmp_path):
    bars = load_bars(EURUSD)[0]
    return write_bars_csv(tmp_path / "bars.csv", bars[bars["ts_ns"] >= 1506816000 * 10**9][:600])


def config(where, csv, **service):
    where.mkdir(parents=True, exist_ok=True)
    return daemon_config(where, csv, "2017-10-01", "2018-01-01", record_ticks="false", http_port="0", **service)[0]


def run(cfg, ticks):
    policy = RecordingHold()
    res = asyncio.run(run_daemon(cfg, policy=policy, ticks=ticks))
    return policy, res


def test_restart_decides_at_first_bar_close_with_the_uninterrupted_observations(tmp_path, csv600, spec):
    a = config(tmp_path / "a", csv600)
    ticks = replay_ticks(a, *a.replay.range.ns())
    straight, res = run(a, ticks)
    obs_at = dict(zip(decided(res.db_path), straight.seen, strict=True))

    cut = int(np.unique(ticks["ts_ns"] - ticks["ts_ns"] % H)[300])  # a bar's open, 300 bars in
    j = int(np.searchsorted(ticks["ts_ns"], cut))  # its first quote closes the bar before it
    for warm in (True, False):
        cfg = config(tmp_path / str(warm), csv600, warm_start=str(warm).lower())
        run(cfg, ticks[: j + 1])  # stops right after a bar close; the next run starts at that quote
        again, res2 = run(cfg, ticks[j:])
        after = decided(res2.db_path, res2.run_id)
        if not warm:  # the control: a cold restart waits a window of bars
            assert after[0] > cut and res2.counters["bars"] - len(after) == spec.window  # window - 1 + the last
            continue
        assert res2.counters["history_bars"] >= spec.window
        assert after[0] == cut  # the first bar this run closed
        # every bar it closed was decided but the last (no quote after it to execute at)
        assert len(after) == res2.counters["bars"] - 1 == len(again.seen) > 250
        for ts, obs in zip(after, again.seen, strict=True):
            assert np.array_equal(obs, obs_at[ts]), f"observation at {ts} differs after the restart"


def bars_of(quotes, period_ns, price="mid") -> np.ndarray:
    q = np.array([tuple(p[:3]) for p in quotes], dtype=TICK_DTYPE)
    b = BarBuilder(period_ns, price)
    return b.push(q).bars


def test_oanda_candles_page_and_equal_the_bars_built_from_the_same_quotes(tmp_path):
    from stairway.daemon.brokers.oanda.broker import OandaBroker

    cfg, _ = daemon_config(tmp_path, EURUSD, "2017-10-01", "2017-11-01")

    async def go():
        emu = OandaEmulator()
        url = await emu.start()
        try:
            emu.prices = await asyncio.to_thread(prices, cfg, 10)
            emu.now_ns = emu.prices[-40][0]  # "now": candles after it do not exist yet
            broker = OandaBroker(url, emu.account, emu.token, url)
            broker.CANDLES_PAGE = 50
            await broker.connect()
            try:
                lo, hi = emu.prices[0][0] - 3 * H, emu.now_ns - emu.now_ns % H  # the daemon's "until"
                got = {p: await broker.history_bars("EUR_USD", 60, p, lo, hi) for p in ("mid", "ask")}
            finally:
                await broker.close()
            return emu, got
        finally:
            await emu.stop()

    emu, got = asyncio.run(go())
    assert emu.candle_requests >= 2 * 4  # 10 days of hours, 50 candles a page, two sides
    for price, bars in got.items():
        built = bars_of([p for p in emu.prices if p[0] <= emu.now_ns], H, price)
        complete = built[built["ts_ns"] + H <= emu.now_ns]
        assert len(bars) == len(complete) > 150
        for k in BAR_DTYPE.names[:5]:
            assert np.array_equal(bars[k], complete[k]), (price, k)


def test_ib_historical_bars_page_and_equal_the_bars_built_from_the_same_quotes(tmp_path):
    from stairway.daemon.brokers.ib.broker import IBBroker

    cfg, _ = daemon_config(tmp_path, EURUSD, "2017-10-01", "2017-11-01")

    async def go():
        ib_async.util.getLoop.cache_clear()  # ib_async keeps the first loop it saw; this test runs its own
        fake = TwsEmulator()  # the gateway at the wire, the real ib_async client
        fake.prices = await asyncio.to_thread(prices, cfg, 10)
        fake.now_ns = fake.prices[-40][0]
        port = await fake.start()
        ib_cfg = cfg.broker.ib.model_copy(update={"host": "127.0.0.1", "port": port})
        broker = IBBroker(ib_cfg, "EUR_USD", max_connect_attempts=1)
        broker.HISTORY_PAGE_GAP_SECS, broker.HISTORY_MAX_PAGE_DAYS = 0.0, 2
        await broker.connect()
        bars = await broker.history_bars("EUR_USD", 60, "mid", fake.prices[0][0] - 3 * H, fake.now_ns - fake.now_ns % H)
        await broker.close()
        await fake.close()
        return fake, bars

    fake, bars = asyncio.run(go())
    assert fake.calls.count("req_historical") >= 5  # 10+ days in pages of 2
    built = bars_of([p for p in fake.prices if p[0] <= fake.now_ns], H)
    complete = built[built["ts_ns"] + H <= fake.now_ns]  # the bar still open is left out
    assert len(bars) == len(complete) > 150
    assert np.array_equal(bars["ts_ns"], complete["ts_ns"])
    for k in ("open", "high", "low", "close"):
        assert np.array_equal(bars[k], complete[k]), k


def test_live_restart_warms_from_oanda_candles_and_matches_the_straight_run(tmp_path, spec):
    """Straight: the stream from the first quote. Restart: a daemon with no state starts with
    the broker "now" at a bar's open 110 bars in; its history comes from candles."""

    async def go(where, start_at):
        rig = Rig(where, spec)
        await rig.start()
        try:
            rig.emu.prices = await asyncio.to_thread(prices, rig.cfg, 10)
            ts = [p[0] for p in rig.emu.prices]
            cut = sorted({t - t % H for t in ts})[110]  # a bar's open, 110 bars in
            j = next(k for k, t in enumerate(ts) if t >= cut)
            if start_at:
                rig.emu.cursor, rig.emu.now_ns = j, ts[j]
            policy = RecordingHold()
            done = lambda d: (d.slot.counters.last_bar_ts or 0) >= cut + 12 * H  # noqa: E731
            out = await rig.run(done, timeout=40, policy=policy)
            assert out.error is None
            with rig.db() as c:
                run_id = out.daemon.parts.run_id
                bars = [
                    r[0] for r in c.execute("SELECT bar_ts_ns FROM decisions WHERE run_id = ? ORDER BY 1", (run_id,))
                ]
            return cut, dict(zip(bars, policy.seen, strict=False)), out.daemon.slot.counters.history_bars
        finally:
            await rig.close()

    cut, straight, _ = asyncio.run(go(tmp_path / "a", False))
    cut2, restarted, history = asyncio.run(go(tmp_path / "b", True))
    assert cut == cut2 and history >= spec.window
    assert min(restarted) == cut  # decided at the first bar close after the restart
    common = sorted(set(restarted) & set(straight))
    assert len(common) >= 5
    for ts in common:
        assert np.array_equal(restarted[ts], straight[ts]), ts


def test_bad_history_is_refused_whole_and_the_next_source_used():
    good = np.zeros(5, dtype=BAR_DTYPE)
    good["ts_ns"] = np.arange(5) * H
    good["open"] = good["high"] = good["low"] = good["close"] = 1.1
    bad = good.copy()
    bad["high"][2] = 1.0  # high below the close
    with pytest.raises(BadHistory, match=r"broker: bar 2 \(ts_ns 7200000000000\)"):
        check_bars(bad, H, "broker")
    off_grid = good.copy()
    off_grid["ts_ns"][3] += 1
    with pytest.raises(BadHistory, match="bar 3"):
        check_bars(off_grid, H, "store")

    async def src(bars, delay=0.0):
        await asyncio.sleep(delay)
        return bars

    async def failing(lo, hi):
        raise ConnectionError("HTTP 503")

    w = asyncio.run(
        gather(
            [("broker", lambda lo, hi: src(bad)), ("slow", lambda lo, hi: src(good, 5)), ("down", failing),
             ("store", lambda lo, hi: src(good))],
            0, 5 * H, 10, H, timeout_secs=0.2,
        )
    )  # fmt: skip
    assert w.sources == {"store": 5} and np.array_equal(w.bars, good)
    assert set(w.refused) == {"broker", "slow", "down"} and "not done within" in w.refused["slow"]
    # earlier sources win where they overlap; only the last `need` bars are kept
    newer = good.copy()
    newer["close"] = newer["high"] = 1.2
    w = asyncio.run(
        gather([("broker", lambda lo, hi: src(newer[2:])), ("store", lambda lo, hi: src(good))], 0, 5 * H, 4, H)
    )
    assert w.sources == {"broker": 3, "store": 1}
    assert w.bars["close"].tolist() == [1.1, 1.2, 1.2, 1.2]
