"""HTTP on 127.0.0.1: /health (200, or 503 with reasons), /metrics (Prometheus text via
prometheus_client, collected from daemon state at scrape time), /status (JSON)."""

from __future__ import annotations

import json
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, InfoMetricFamily

from stairway.core.errors import FatalError
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


async def start_http(app: web.Application, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
    except OSError as e:
        await runner.cleanup()
        raise FatalError(
            f"127.0.0.1:{port}: cannot serve HTTP ({e.strerror or e}); set service.http_port to a "
            "free port, 0 for any, or null to switch it off"
        ) from None
    return runner


def bound_port(runner: web.AppRunner) -> int:
    return runner.addresses[0][1]
