"""Issue 13 §4: alerts reach a local HTTP receiver through apprise (json://), deduplicated and
rate-limited, delivery failures counted and never fatal; the daemon alerts its start, its
risk tier changes and its stop."""

import asyncio
import json

import pytest
from aiohttp import web

from stairway.core.bar_files import load_bars
from stairway.core.config import load_config
from stairway.core.errors import ConfigError
from stairway.daemon.alerts import Alerter
from stairway.daemon.app import Daemon
from stairway.daemon.config import DaemonConfig
from tests.helpers import EURUSD, daemon_config, tiny_checkpoint, write_bars_csv
from tests.integration.test_service import until

pytestmark = pytest.mark.usefixtures("no_blocking")  # fail on blocking calls in the event loop


class Receiver:
    """127.0.0.1 HTTP endpoint collecting what apprise's json:// posts; /fail answers 500."""

    def __init__(self) -> None:
        self.got: list[dict] = []
        self.runner: web.AppRunner | None = None

    async def start(self) -> int:
        app = web.Application()
        app.router.add_post("/alerts", self._ok)
        app.router.add_post("/fail", self._fail)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        return self.runner.addresses[0][1]

    async def _ok(self, request: web.Request) -> web.Response:
        self.got.append(json.loads(await request.text()))
        return web.json_response({})

    async def _fail(self, request: web.Request) -> web.Response:
        return web.json_response({"error": "no"}, status=500)

    async def stop(self) -> None:
        await self.runner.cleanup()


def test_delivered_deduplicated_rate_limited_and_failures_counted():
    async def go():
        rx = Receiver()
        port = await rx.start()
        a = Alerter([f"json://127.0.0.1:{port}/alerts"], min_interval_secs=60, max_per_minute=10)
        a.start()
        try:
            assert a.notify("tier_warn", "EUR_USD: intraday drawdown 1.52 %", key="tier_warn:EUR_USD")
            assert not a.notify("tier_warn", "EUR_USD: again", key="tier_warn:EUR_USD")  # within the interval
            assert a.notify("tier_warn", "GBP_USD: 1.6 %", key="tier_warn:GBP_USD")  # another key
            await until(lambda: len(rx.got) == 2)
            assert rx.got[0]["title"] == "stairway: tier_warn" and "1.52 %" in rx.got[0]["message"]
            assert rx.got[0]["type"] == "warning"
            # a storm: 10,000 distinct events in a burst; at most 10 a minute go out (8 left here)
            accepted = sum(a.notify("health", f"feed stale {k}", key=f"k{k}") for k in range(10_000))
            assert accepted == 8 and a.stats.rate_limited == 10_000 - 8
            await until(lambda: len(rx.got) == 10)
            await asyncio.sleep(0.3)
            assert len(rx.got) == 10 and a.stats.sent == 10 and a.stats.deduplicated == 1
        finally:
            assert await asyncio.to_thread(a.stop, 10)
        # failures: a 500 and a port nobody listens on are counted and logged, not raised
        bad = Alerter([f"json://127.0.0.1:{port}/fail"], min_interval_secs=1, max_per_minute=10, timeout_secs=2)
        bad.start()
        bad.notify("halted", "3 over-fill violations", level="failure")
        assert await asyncio.to_thread(bad.stop, 20)
        assert bad.stats.failed == 1 and bad.stats.sent == 0
        await rx.stop()

    asyncio.run(go())


def test_the_daemon_alerts_start_tier_changes_and_stop(tmp_path, spec):
    bars = load_bars(EURUSD)[0]
    bars = bars[bars["ts_ns"] >= 1506816000 * 10**9][:400]
    tiny_checkpoint(tmp_path / "models", spec, seed=3)
    base, _ = daemon_config(tmp_path, write_bars_csv(tmp_path / "b.csv", bars), "2017-10-01", "2018-01-01")

    async def go():
        rx = Receiver()
        port = await rx.start()
        cfg = base
        risk = cfg.risk.model_copy(update={"drawdown_tiers_pct": (0.05, 0.1, 20.0, 30.0)})  # tiers that move
        alerts = cfg.alerts.model_copy(update={"urls": (f"json://127.0.0.1:{port}/alerts",), "min_interval_secs": 1})
        cfg = cfg.model_copy(update={"risk": risk, "alerts": alerts})
        d = Daemon(cfg)
        res = await d.run()
        await rx.stop()
        return res, rx.got, d.alerter.stats

    res, got, stats = asyncio.run(go())
    titles = [g["title"].removeprefix("stairway: ") for g in got]
    assert titles[0] == "daemon_started" and titles[-1] == "daemon_stopped"
    assert res.run_id in got[0]["message"] and "end of data" in got[-1]["message"]
    tiers = [t for t in titles if t.startswith("tier_")]
    assert tiers and all(
        g["message"].startswith("EUR_USD: intraday drawdown") for g in got if g["title"][10:15] == "tier_"
    )
    assert stats.sent == len(got) and stats.failed == 0
    assert res.counters["risk_events"].get("tier_warn", 0) >= 1


def test_alert_urls_are_checked(tmp_path):
    cfg, path = daemon_config(tmp_path, EURUSD, "2017-10-01", "2018-01-01")
    path.write_text(path.read_text() + '\n[alerts]\nurls = ["hooks.slack.com/services/T000"]\n')
    with pytest.raises(ConfigError, match="alerts.urls.*not URLs"):
        load_config(DaemonConfig, path, environ={})
