"""Small pieces of the live path: secrets, rate limiter, candle parsing, config rules,
client ids, the store's concurrent flushes."""

from __future__ import annotations

import asyncio
import time

import pytest

from stairway.core.errors import BadPayload, ConfigError
from stairway.core.types import client_order_id, is_stop_id, parse_client_order_id, stop_order_id
from stairway.daemon.brokers.credentials import read_secret
from stairway.daemon.brokers.oanda.parsing import parse_candles, parse_time_ns, rfc3339
from stairway.daemon.brokers.rate_limit import RateLimiter
from stairway.daemon.rows import RiskEventRow


def test_secret_from_credentials_directory_beats_environment(tmp_path):
    (tmp_path / "oanda-token").write_text("from-systemd\n")
    env = {"CREDENTIALS_DIRECTORY": str(tmp_path), "OANDA_TOKEN": "from-env"}
    assert read_secret("oanda-token", "OANDA_TOKEN", env) == "from-systemd"
    assert read_secret("oanda-account", "OANDA_ACCOUNT", {**env, "OANDA_ACCOUNT": "101-1"}) == "101-1"


def test_missing_or_empty_secret_names_where_to_put_it(tmp_path):
    with pytest.raises(ConfigError, match="OANDA_TOKEN"):
        read_secret("oanda-token", "OANDA_TOKEN", {})
    (tmp_path / "oanda-token").write_text("  \n")
    with pytest.raises(ConfigError, match="oanda-token is empty"):
        read_secret("oanda-token", "OANDA_TOKEN", {"CREDENTIALS_DIRECTORY": str(tmp_path)})


def test_rate_limiter_holds_the_rate():
    async def go():
        lim = RateLimiter(50.0, burst=5)
        t0 = time.monotonic()
        for _ in range(30):
            await lim.acquire()
        return time.monotonic() - t0

    # 5 immediately, 25 more at 50/s: at least 0.5 s (never faster than the limit)
    assert asyncio.run(go()) >= 0.45
    with pytest.raises(ValueError):
        RateLimiter(0)


def _candle(t, bid, ask, complete=True):
    def ohlc(o, h, lo, c):
        return {"o": f"{o:.5f}", "h": f"{h:.5f}", "l": f"{lo:.5f}", "c": f"{c:.5f}"}

    return {"complete": complete, "volume": 4, "time": t, "bid": ohlc(*bid), "ask": ohlc(*ask)}


def test_candles_become_five_quotes_each_inside_the_window():
    t0 = "2017-10-02T09:00:00.000000000Z"
    body = {
        "granularity": "S5",
        "candles": [
            _candle(t0, (1.1, 1.2, 1.02, 1.15), (1.1001, 1.2001, 1.0201, 1.1501)),  # the low is nearer the open
            _candle("2017-10-02T09:00:05.000000000Z", (1.2, 1.25, 1.1, 1.12), (1.2001, 1.2501, 1.1001, 1.1201), False),
        ],
    }
    lo = parse_time_ns(t0)
    q = parse_candles(body, "EUR_USD", lo, lo + 10 * 10**9)
    assert len(q) == 5  # the incomplete candle is not used
    assert q["bid"].tolist() == [1.1, 1.1, 1.02, 1.2, 1.15] and (q["ask"] > q["bid"]).all()
    assert (q["ts_ns"] - lo).tolist() == [0, 1_000_000_000, 2_000_000_000, 3_000_000_000, 4_000_000_000]
    assert len(parse_candles(body, "EUR_USD", lo + 2 * 10**9, lo + 10 * 10**9)) == 3  # window respected


@pytest.mark.parametrize(
    "body,match",
    [
        ({"granularity": "H1", "candles": []}, "granularity"),
        ({"granularity": "S5"}, "candles: missing"),
        ({"granularity": "S5", "candles": [{"complete": True, "time": "2017-10-02T09:00:00Z", "bid": {}}]}, "bid.o"),
        ({"granularity": "S5", "candles": [{"complete": True, "time": "yesterday"}]}, "time"),
    ],
)
def test_bad_candle_payloads_name_the_field(body, match):
    with pytest.raises(BadPayload, match=match):
        parse_candles(body, "EUR_USD", 0, 2**62)


def test_rfc3339_round_trip_keeps_nanoseconds():
    ts = 1_506_934_800_123_456_789
    assert parse_time_ns(rfc3339(ts)) == ts


def test_client_ids_parse_back_and_foreign_ids_do_not():
    coid = client_order_id("EUR_USD", 1_506_934_800 * 10**9, 3)
    assert parse_client_order_id(coid) == ("EUR_USD", 1_506_934_800 * 10**9, 3)
    assert parse_client_order_id("manual-123") is None and parse_client_order_id("sw-EUR_USD-x-1") is None
    # a protective stop's id is its order's and a suffix: ours, the same decision
    assert is_stop_id(stop_order_id(coid)) and not is_stop_id(coid)
    assert parse_client_order_id(stop_order_id(coid)) == parse_client_order_id(coid)
    assert parse_client_order_id("manual-123-stop") is None


def test_paper_daemon_needs_a_replay_range(tmp_path):
    from stairway.core.config import load_config
    from stairway.daemon.config import DaemonConfig
    from tests.helpers import ROOT, shipped_text

    text = shipped_text("paper.toml")
    p = tmp_path / "d.toml"
    p.write_text(text[: text.index("[replay]")])
    with pytest.raises(ConfigError, match="replay"):
        load_config(DaemonConfig, p, environ={})
    live = load_config(DaemonConfig, ROOT / "config" / "live-oanda.toml", environ={})
    assert live.real_orders and live.replay is None
    env = {"STAIRWAY_BROKER__KIND": "kraken"}
    with pytest.raises(ConfigError, match="broker.kind"):
        load_config(DaemonConfig, ROOT / "config" / "live-oanda.toml", environ=env)


def test_store_flushes_from_two_tasks_lose_no_row(tmp_path):
    from stairway.daemon.store import Store

    async def go():
        store = await Store.open(tmp_path / "s.db")

        async def writer(k):
            for i in range(200):
                store.add(RiskEventRow("r", i, "EUR_USD", f"w{k}", "", 0.0, 0.0))
                if i % 7 == 0:
                    await store.flush()
                await asyncio.sleep(0)

        await asyncio.gather(writer(0), writer(1), writer(2))
        await store.flush()
        n = (await (await store.db.execute("SELECT COUNT(*) FROM risk_events")).fetchone())[0]
        await store.close()
        return n

    assert asyncio.run(go()) == 600


def test_new_connections_are_limited_to_two_per_second():
    """Six concurrent REST calls on a fresh adapter open four connections (the pool's
    limit); OANDA allows 2 new ones per second, so they cannot all open at once."""
    from stairway.daemon.brokers.oanda.broker import OandaBroker
    from stairway.emulators.oanda_v20 import OandaEmulator

    async def go():
        emu = OandaEmulator()
        url = await emu.start()
        b = OandaBroker(url, emu.account, emu.token)
        await b.connect()
        emu.knobs.slow_secs = 0.05  # keep each connection busy so the pool must open more
        try:
            t0 = time.monotonic()
            await asyncio.gather(*(b.account() for _ in range(6)))
            return time.monotonic() - t0, b.session.connector.opened
        finally:
            await b.close()
            await emu.stop()

    elapsed, opened = asyncio.run(go())
    assert opened == 4 and elapsed >= 1.45  # the 2nd, 3rd and 4th each waited 0.5 s


def test_every_adapter_provides_the_broker_protocol():
    """Each Broker method is a coroutine method on a live instance (nothing shadowed by an
    attribute of the same name, as the OANDA account id once did)."""
    import inspect

    from stairway.core.broker import Broker
    from stairway.daemon.brokers.ib.broker import IBBroker
    from stairway.daemon.brokers.oanda.broker import OandaBroker
    from stairway.daemon.config import IBConfig

    names = [n for n, v in vars(Broker).items() if inspect.iscoroutinefunction(v)]
    assert {"connect", "close", "submit", "cancel", "order_status", "fills", "positions", "account"} <= set(names)
    for b in (OandaBroker("http://127.0.0.1:1", "101-1", "secret-token"), IBBroker(IBConfig(), "EUR_USD")):
        for n in names:
            assert inspect.iscoroutinefunction(getattr(b, n)), (type(b).__name__, n)
        assert isinstance(b.name, str) and "secret-token" not in repr(b)


def test_one_backoff_formula_capped_and_jittered():
    import random

    from stairway.daemon.aio import backoff_delay

    rng = random.Random(0)
    for attempt, base, cap in ((1, 0.5, 30.0), (3, 0.5, 30.0), (12, 0.5, 30.0), (0, 1.0, 60.0)):
        full = min(cap, base * 2 ** (max(attempt, 1) - 1))
        ds = [backoff_delay(attempt, base, cap, rng) for _ in range(2000)]
        assert full / 2 <= min(ds) and max(ds) <= full  # jitter takes off up to half, never adds
        assert max(ds) - min(ds) > full / 4  # and it does spread the retries


def test_first_of_returns_the_first_done_and_cancels_the_rest():
    import asyncio

    from stairway.daemon.aio import first_of

    async def main():
        slow = asyncio.ensure_future(asyncio.sleep(10))
        ev = asyncio.Event()
        asyncio.get_running_loop().call_later(0.01, ev.set)
        done = await first_of(slow, ev.wait(), timeout=5)
        assert len(done) == 1 and slow not in done
        await asyncio.sleep(0)
        assert slow.cancelled()
        t0 = asyncio.get_running_loop().time()
        assert await first_of(asyncio.sleep(10), timeout=0.05) == set()
        assert asyncio.get_running_loop().time() - t0 < 1.0

    asyncio.run(main())


def test_within_returns_times_out_and_passes_a_cancellation_on():
    import asyncio

    import pytest

    from stairway.daemon.aio import within

    async def main():
        assert await within(asyncio.sleep(0.01, result=7), 5) == 7
        inner = asyncio.ensure_future(asyncio.sleep(10))
        with pytest.raises(TimeoutError, match="within 0.05 s"):
            await within(inner, 0.05)
        assert inner.cancelled()  # nothing left running behind the time limit
        with pytest.raises(ValueError):
            await within(_boom(), 5)
        outer = asyncio.ensure_future(within(asyncio.sleep(10), 30))
        await asyncio.sleep(0.01)
        outer.cancel()  # the caller's cancellation is not swallowed
        with pytest.raises(asyncio.CancelledError):
            await outer

    async def _boom():
        raise ValueError("the awaited thing's own error")

    asyncio.run(main())


def test_spawned_tasks_are_held_until_they_end_and_found_by_the_sweep():
    import asyncio
    import gc

    from stairway.daemon.aio import spawn, spawned

    async def main():
        ev = asyncio.Event()
        done = []

        async def work():
            await ev.wait()
            done.append(1)

        spawn(work(), "w")  # no reference kept by the caller
        gc.collect()
        await asyncio.sleep(0)
        alive = spawned()
        assert [t.get_name() for t in alive] == ["w"]
        ev.set()
        await asyncio.sleep(0.01)
        assert done == [1] and spawned() == []
        spawn(asyncio.sleep(10), "stuck")
        (left,) = spawned()
        left.cancel()
        await asyncio.sleep(0)
        assert spawned() == []

    asyncio.run(main())


def test_the_no_blocking_fixture_catches_file_io_on_the_loop_and_not_in_a_thread(no_blocking, tmp_path):
    import asyncio

    from blockbuster import BlockingError

    from stairway.daemon.control import ControlFiles

    async def on_loop():
        ControlFiles(tmp_path / "a")  # mkdir + stat, on the loop's thread

    async def in_thread():
        return await asyncio.to_thread(ControlFiles, tmp_path / "b")

    with pytest.raises(BlockingError, match="os.mkdir"):
        asyncio.run(on_loop())
    assert asyncio.run(in_thread()).dir == tmp_path / "b"


def test_bar_candles_keep_complete_ones_and_name_bad_fields():
    from stairway.core.errors import BadPayload
    from stairway.daemon.brokers.oanda.parsing import parse_bar_candles

    def candle(t, complete=True, **side):
        return {
            "time": t,
            "complete": complete,
            "volume": 7,
            "mid": side or {"o": "1.1", "h": "1.2", "l": "1.0", "c": "1.15"},
        }

    body = {
        "granularity": "H1",
        "candles": [candle("2017-10-02T09:00:00.000000000Z"), candle("2017-10-02T10:00:00Z", False)],
    }
    bars, last = parse_bar_candles(body, "EUR_USD", "H1", "mid")
    assert len(bars) == 1 and bars["close"][0] == 1.15 and bars["volume"][0] == 7.0  # the open candle is no bar
    assert last == 1506938400 * 10**9  # ...but the next page starts after it
    for bad, msg in (
        ({"granularity": "M1", "candles": []}, "asked for 'H1'"),
        ({"granularity": "H1"}, "candles: missing or not a list"),
        ({"granularity": "H1", "candles": [{"time": "yesterday", "complete": True}]}, r"\[0\].time"),
        ({"granularity": "H1", "candles": [{"time": "2017-10-02T09:00:00Z", "complete": True}]}, r"\[0\].mid: missing"),
        (
            {"granularity": "H1", "candles": [candle("2017-10-02T09:00:00Z", o="x", h="1", l="1", c="1")]},
            r"mid.o = 'x'",
        ),
    ):
        with pytest.raises(BadPayload, match=msg):
            parse_bar_candles(bad, "EUR_USD", "H1", "mid")
