"""HTTP on 127.0.0.1: /health (200, or 503 with reasons), /metrics (Prometheus text via
prometheus_client, collected from daemon state at scrape time), /status (JSON)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, InfoMetricFamily

from stairway.core.errors import FatalError
from stairway.daemon.lifecycle import State
from stairway.daemon.status import LATENCY_BUCKETS

CONTENT_TYPE = "text/plain; version=0.0.4"


class DaemonCollector:
    """Reads a snapshot dict (``snapshot()``) on every scrape."""

    def __init__(self, snapshot: Callable[[], dict]) -> None:
        self.snapshot = snapshot

    def collect(self):
        s = self.snapshot()
        counters = {
            "ticks": "Quotes received",
            "bars": "Bars closed",
            "decisions": "Decisions taken",
            "orders": "Orders sent",
            "fills": "Fills received",
            "swaps": "Model swaps applied",
            "swaps_refused": "Checkpoints refused",
            "policy_errors": "Decisions where the policy raised (taken as HOLD)",
            "bound_cancels": "Decision orders cancelled at a price beyond their bound (execution.price_bound_pips)",
            "rejected_quotes": "Quotes rejected (bad, out of order, duplicate, implausible jump)",
            "rejected_jump_quotes": "Quotes rejected as implausible jumps from the last accepted price",
            "recorder_dropped_ticks": "Ticks the recorder had to drop",
            "reconcile_discrepancies": "Reconciliation discrepancies found",
            "alerts_sent": "Alerts delivered",
            "alerts_failed": "Alerts that could not be delivered",
            "alerts_suppressed": "Alerts not sent: repeated within the interval, over the rate limit, or queue full",
        }
        per = s["instruments"]  # one entry per instrument traded
        for name, doc in counters.items():
            c = CounterMetricFamily(f"stairway_{name}", doc, labels=["instrument"])
            if name in per[next(iter(per))]:
                for inst, p in per.items():
                    c.add_metric([inst], float(p[name]))
            else:  # an account-level count
                c.add_metric([s["instrument"]], float(s[name]))
            yield c
        st = GaugeMetricFamily(
            "stairway_daemon_state", "1 for the daemon's state now (daemon.lifecycle)", labels=["state"]
        )
        for state in State:
            st.add_metric([state.value], float(s["state"] == state.value))
        yield st
        d = CounterMetricFamily("stairway_decisions_by_action", "Decisions by action", labels=["instrument", "action"])
        for inst, p in per.items():
            for action, n in p["actions"].items():
                d.add_metric([inst, action], float(n))
        yield d
        for name, doc in (
            ("regime", "Composite market regime (core.regime; 0 until warm)"),
            ("live_sharpe", "Live Sharpe over the guard's window of sessions (daily, annualised)"),
            ("hold_rate", "Share of HOLD decisions over the guard's window"),
            ("orders_per_session", "Orders per session over the guard's window"),
            ("validation_sharpe", "The running model's Sharpe on the trainer's validation window"),
            ("live_pnl_z", "Live mean daily PnL vs the model's validation expectation, in standard errors"),
            ("financing", "Holding costs the execution model charged this run (quote currency; < 0 received)"),
        ):
            g = GaugeMetricFamily(f"stairway_{name}", doc, labels=["instrument"])
            for inst, p in per.items():
                g.add_metric([inst], float(p[name]))
            yield g
        g = GaugeMetricFamily(
            "stairway_pending_swap", "1: a verified model waits for the next bar", labels=["instrument"]
        )
        o = GaugeMetricFamily("stairway_market_open", "1: the instrument's market is open now", labels=["instrument"])
        m = GaugeMetricFamily(
            "stairway_model_info", "The running model (sha prefix) per instrument", labels=["instrument", "sha"]
        )
        for inst, p in per.items():
            g.add_metric([inst], float(bool(p["pending_model_sha"])))
            o.add_metric([inst], float(p["market_open"]))
            m.add_metric([inst, str(p["model_sha"])[:12]], 1.0)
        yield from (g, o, m)
        for name, doc in (
            ("psi", "Population stability index of the feature's last window vs the training window"),
            ("outside", "Share of the feature's last window outside the range it was trained on"),
        ):
            g = GaugeMetricFamily(f"stairway_feature_{name}", doc, labels=["instrument", "feature"])
            for inst, p in per.items():
                fd = p.get("feature_drift")
                if fd and fd["active"]:
                    for feat, v in fd[name].items():
                        g.add_metric([inst, feat], float(v))
            yield g
        h = HistogramMetricFamily(
            "stairway_decision_latency_seconds", "Bar close to order intent (the last 4,096)", labels=["instrument"]
        )
        for inst, p in per.items():
            buckets = [(f"{b:g}", c) for b, c in zip(LATENCY_BUCKETS, p["decision_latency_buckets"])]
            buckets.append(("+Inf", p["decision_latency_count"]))
            h.add_metric([inst], buckets, p["decision_latency_sum"])
        yield h
        if len(per) > 1:  # a portfolio: each instrument's position, equity and model age
            for name, doc in (
                ("instrument_position_units", "Open position (signed units)"),
                ("instrument_equity", "Equity from this instrument's trading"),
                ("instrument_model_age_seconds", "Age of this instrument's model"),
            ):
                g = GaugeMetricFamily(f"stairway_{name}", doc, labels=["instrument"])
                for inst, p in per.items():
                    g.add_metric([inst], float(p[name.removeprefix("instrument_")]))
                yield g
        gauges = {
            "position_units": "Open position (signed units)",
            "equity": "Equity marked at the last bar",
            "drawdown_pct": "Intraday drawdown, % (the account's)",
            "margin_pct": "Margin used, % of equity (estimated, or the broker's when higher)",
            "risk_tier": "Risk tier (0 normal .. 4 flatten)",
            "model_age_seconds": "Age of the running model",
            "rss_bytes": "Resident set size",
            "event_loop_lag_seconds": "Last measured event-loop lag",
            "trading_enabled": "START_TRADING present",
            "halted": "Halted by risk until an operator starts trading",
        }
        for name, doc in gauges.items():
            g = GaugeMetricFamily(f"stairway_{name}", doc, labels=["instrument"])
            if s[name] is None:  # a portfolio's position: each instrument's (units do not add up)
                for inst, p in per.items():
                    g.add_metric([inst], float(p[name]))
            else:
                g.add_metric([s["instrument"]], float(s[name]))
            yield g
        i = InfoMetricFamily("stairway_model", "The running model")
        for inst, p in per.items():
            i.add_metric([], {"sha": p["model_sha"], "instrument": inst})
        yield i


def make_app(snapshot: Callable[[], dict], health: Callable[[], list[str]]) -> web.Application:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DaemonCollector(snapshot))

    async def h_health(_request: web.Request) -> web.Response:
        reasons = health()
        return web.json_response({"healthy": not reasons, "reasons": reasons}, status=503 if reasons else 200)

    async def h_metrics(_request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE})

    async def h_status(_request: web.Request) -> web.Response:
        return web.Response(text=json.dumps(snapshot(), default=str), content_type="application/json")

    app = web.Application()
    app.router.add_get("/health", h_health)
    app.router.add_get("/metrics", h_metrics)
    app.router.add_get("/status", h_status)
    return app


MAX_CONNECTIONS = 32  # a scraper, an operator's curl and a dashboard need a handful
IDLE_SECS = 10.0  # a connection that sends nothing for this long is closed (keep-alive: 5 s)


class ConnectionLimits:
    """At most ``limit`` open connections, each closed after ``idle_secs`` without a byte from
    its client: a flood of connections (or a slow one) cannot take the daemon's file
    descriptors, which its broker connection, database and tick files need."""

    def __init__(self, limit: int = MAX_CONNECTIONS, idle_secs: float = IDLE_SECS) -> None:
        self.limit, self.idle_secs = limit, idle_secs
        self.open = 0
        self.peak = 0  # the most open at once
        self.accepted = 0
        self.refused = 0
        self.idle_closed = 0

    def wrap(self, factory: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        return lambda: _Guarded(factory(), self, asyncio.get_running_loop())


class _Guarded(asyncio.Protocol):
    """The protocol the transport talks to: counts and times the connection, hands every
    event to aiohttp's own handler (which writes to the transport directly)."""

    def __init__(self, inner: asyncio.Protocol, limits: ConnectionLimits, loop: asyncio.AbstractEventLoop) -> None:
        self.inner, self.limits, self.loop = inner, limits, loop
        self.counted = False
        self.timer: asyncio.TimerHandle | None = None
        self.transport: asyncio.Transport | None = None

    def _arm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.loop.call_later(self.limits.idle_secs, self._idle)

    def _idle(self) -> None:
        self.limits.idle_closed += 1
        assert self.transport is not None
        self.transport.abort()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)  # a TCP server's
        self.transport = transport
        self.inner.connection_made(transport)
        self.limits.accepted += 1
        if self.limits.open >= self.limits.limit:
            self.limits.refused += 1
            transport.abort()  # closed at once: its descriptor is freed
            return
        self.limits.open += 1
        self.limits.peak = max(self.limits.peak, self.limits.open)
        self.counted = True
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self.counted:
            self._arm()
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if self.counted:
            self.counted = False
            self.limits.open -= 1
        self.inner.connection_lost(exc)


class BoundedSite(web.TCPSite):
    """aiohttp's TCPSite with ConnectionLimits on every connection it accepts."""

    def __init__(self, runner: web.AppRunner, host: str, port: int, limits: ConnectionLimits) -> None:
        super().__init__(runner, host, port, backlog=128)
        self.limits = limits

    async def start(self) -> None:
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        self._server = await asyncio.get_running_loop().create_server(
            self.limits.wrap(server), self._host, self._port, backlog=self._backlog, reuse_address=True
        )
        self._bound_port = self._server.sockets[0].getsockname()[1]


async def start_http(app: web.Application, port: int, limits: ConnectionLimits | None = None) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=5.0)
    await runner.setup()
    try:
        await BoundedSite(runner, "127.0.0.1", port, limits or ConnectionLimits()).start()
    except OSError as e:
        await runner.cleanup()
        raise FatalError(
            f"127.0.0.1:{port}: cannot serve HTTP ({e.strerror or e}); set service.http_port to a "
            "free port, 0 for any, or null to switch it off"
        ) from None
    return runner


def bound_port(runner: web.AppRunner) -> int:
    return runner.addresses[0][1]
