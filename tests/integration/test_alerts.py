"""Issue 13 §4: alerts reach a local HTTP receiver through apprise (json://), deduplicated and
rate-limited, delivery failures counted and never fatal; the daemon alerts its start, its
risk tier changes and its stop."""

import asyncio
import json

import pytest
from aiohttp import web

from stairway.core.config import load_config
from stairway.core.errors import ConfigError
from stairway.daemon.alerts import Alerter
from stairway.daemon.app import Daemon
from stairway.daemon.config import DaemonConfig
from tests.helpers import EURUSD, daemon_config, paced_config, tiny_checkpoint
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


def test_critical_alerts_pass_deduplication_and_the_rate_limit_and_go_first():
    """Issue 19.2: a halt, a flatten, a refused model... are never deduplicated or rate-limited
    away, and are delivered ahead of normal alerts already queued."""

    async def go():
        rx = Receiver()
        port = await rx.start()
        a = Alerter([f"json://127.0.0.1:{port}/alerts"], min_interval_secs=300, max_per_minute=2)
        # queued before the worker runs: the order of delivery is the queue's
        assert [a.notify("health", f"feed stale {k}", key=f"h{k}") for k in range(4)] == [True, True, False, False]
        assert a.notify("halted", "intraday drawdown 2.61 % >= 2.5 %", level="failure")
        assert a.notify("halted", "the same again")  # not deduplicated
        assert a.notify("tier_flatten", "EUR_USD: 2.6 %") and a.notify("reconcile_close_missing", "EUR_USD: gone")
        assert a.notify("reload_failed", "SIGHUP: bad toml") and a.notify("backup_failed", "disk full")
        assert not a.notify("tier_warn", "EUR_USD: 1.5 %")  # normal: still rate-limited
        a.start()
        try:
            await until(lambda: len(rx.got) == 8)
        finally:
            assert await asyncio.to_thread(a.stop, 10)
        await rx.stop()
        return [g["title"].removeprefix("stairway: ") for g in rx.got], a.stats

    titles, stats = asyncio.run(go())
    assert titles[:6] == [
        "halted",
        "halted",
        "tier_flatten",
        "reconcile_close_missing",
        "reload_failed",
        "backup_failed",
    ]
    assert titles[6:] == ["health", "health"]
    assert stats.critical == 6 and stats.rate_limited == 3 and stats.sent == 8


def test_conditions_alert_what_held_once_and_resolve_what_cleared():
    """A tier that flaps inside its hold time sends nothing; one that holds is alerted once and
    its clearing is "resolved"; a broker disconnected only during start-up sends nothing."""
    from stairway.daemon.alerts import Conditions, hold_secs
    from stairway.daemon.config import AlertsConfig

    now = [0.0]
    sent: list[tuple[str, str]] = []

    class Sink:
        def notify(self, kind, message, key=None, level="warning", critical=None):
            sent.append((kind, message))
            return True

    c = Conditions(Sink(), lambda k: hold_secs(AlertsConfig(hold_secs=60, disconnect_alert_secs=30), k), lambda: now[0])
    disc = {"health:broker disconnected": ("broker_disconnected", "broker disconnected: oanda feed connecting")}
    c.update(disc)
    now[0] = 5.0
    c.update({})  # connected within 5 s: a normal start-up
    for k in range(100):  # warn <-> normal every second for 100 s
        now[0] = 10.0 + k
        c.update({"drawdown_tier": ("tier_warn", "warn")} if k % 2 == 0 else {})
    assert sent == []
    c.update({"drawdown_tier": ("tier_warn", "drawdown tier warn: 1.52 %")})
    now[0] += 59.0
    c.update({"drawdown_tier": ("tier_warn", "drawdown tier warn: 1.55 %")})
    assert sent == []
    now[0] += 1.0
    c.update({"drawdown_tier": ("tier_warn", "drawdown tier warn: 1.56 %")})
    c.update({"drawdown_tier": ("tier_flatten", "drawdown tier flatten: 2.6 %")})  # critical: at once
    now[0] += 1.0
    c.update({"drawdown_tier": ("tier_flatten", "drawdown tier flatten: 2.6 %")})
    assert sent == [("tier_warn", "drawdown tier warn: 1.56 %"), ("tier_flatten", "drawdown tier flatten: 2.6 %")]
    c.update(disc)  # the tier cleared (a new session), the broker dropped
    now[0] += 31.0
    c.update({**disc})
    c.update({})
    assert sent[2:] == [
        ("tier_flatten_resolved", "resolved: drawdown tier flatten: 2.6 %"),
        ("broker_disconnected", "broker disconnected: oanda feed connecting"),
        ("broker_disconnected_resolved", "resolved: broker disconnected: oanda feed connecting"),
    ]


def test_a_paced_daemon_with_tight_tiers_delivers_its_halt_and_flatten_despite_the_rate_limit(tmp_path, spec):
    """Issue 19.2 as it was seen: a paced replay with tight tiers flattens and halts; with a
    limit of 2 alerts a minute the halt and the flatten still reach the receiver, the tiers
    are alerted only once they held, and nothing says "broker disconnected"."""
    tiny_checkpoint(tmp_path / "models", spec, seed=3)
    base, _ = paced_config(tmp_path, batch_ticks=4, speed=400_000)

    async def go():
        rx = Receiver()
        port = await rx.start()
        cfg = base
        risk = cfg.risk.model_copy(update={"drawdown_tiers_pct": (0.05, 0.1, 0.15, 0.2)})  # tiers that move
        alerts = cfg.alerts.model_copy(
            update={"urls": (f"json://127.0.0.1:{port}/alerts",), "max_per_minute": 2, "hold_secs": 0.5}
        )
        d = Daemon(cfg.model_copy(update={"risk": risk, "alerts": alerts}))
        res = await d.run()
        await rx.stop()
        return res, rx.got, d.parts.alerter.stats, list(d.lifecycle.history)

    res, got, stats, history = asyncio.run(go())
    titles = [g["title"].removeprefix("stairway: ") for g in got]
    halts = [why for _, state, why in history if state == "halted"]  # daemon.lifecycle: the halt is a state
    assert halts and all(why for why in halts), history
    assert res.counters["risk_events"].get("flatten"), res.counters  # the scenario: the flatten tier fired
    assert "halted" in titles and "flatten" in titles and "flatten_tier_rollback" in titles, titles
    assert stats.rate_limited > 0 and stats.critical >= 2  # the limit was in play; the critical ones passed it
    assert not any(t.startswith("broker_disconnected") for t in titles)
    changes = res.counters["risk_events"]
    tier_alerts = [t for t in titles if t.startswith("tier_")]
    assert len(tier_alerts) <= sum(v for k, v in changes.items() if k.startswith("tier_"))
    assert stats.sent == len(got) and stats.failed == 0


def test_alert_urls_are_checked(tmp_path):
    cfg, path = daemon_config(tmp_path, EURUSD, "2017-10-01", "2018-01-01")
    path.write_text(path.read_text() + '\n[alerts]\nurls = ["hooks.slack.com/services/T000"]\n')
    with pytest.raises(ConfigError, match="alerts.urls.*not URLs"):
        load_config(DaemonConfig, path, environ={})
