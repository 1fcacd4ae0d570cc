"""Alert delivery: latency from ``notify`` (on the event loop) to the local receiver's
answer, p50/p99 over 200 alerts sent one at a time, through apprise's json:// to an HTTP endpoint on 127.0.0.1;
and how many messages a 10,000-event storm sends with the shipped limits (10 a minute, one
per key in 300 s).

    python bench/alerts.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics

from aiohttp import web

from common import report
from stairway.daemon.alerts import Alerter


async def main_async(n: int) -> dict:
    got: list[int] = []

    async def ok(request: web.Request) -> web.Response:
        await request.read()
        got.append(1)
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/a", ok)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"json://127.0.0.1:{runner.addresses[0][1]}/a"
    fast = Alerter([url], min_interval_secs=1e-9, max_per_minute=10**9)
    fast.start()
    for k in range(n):  # one at a time: the latency of one alert, not of a queue
        seen = len(got)
        fast.notify("bench", f"alert {k}", key=f"k{k}")
        while len(got) == seen or fast.stats.sent + fast.stats.failed <= k:
            await asyncio.sleep(0.001)
    await asyncio.to_thread(fast.stop, 60)
    lat = sorted(fast.latencies)
    storm = Alerter([url], min_interval_secs=300, max_per_minute=10)
    storm.start()
    before = len(got)
    for k in range(10_000):  # a flapping feed and many instruments at once
        storm.notify("health", f"feed stale {k}", key=f"health:{k % 50}")
    await asyncio.to_thread(storm.stop, 60)
    await runner.cleanup()
    return {
        "alerts": n,
        "delivered": fast.stats.sent,
        "latency_p50_ms": round(1e3 * statistics.median(lat), 2),
        "latency_p99_ms": round(1e3 * lat[min(len(lat) - 1, int(0.99 * len(lat)))], 2),
        "storm_events": 10_000,
        "storm_messages_sent": len(got) - before,
        "storm_deduplicated": storm.stats.deduplicated,
        "storm_rate_limited": storm.stats.rate_limited,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    report("alerts", asyncio.run(main_async(50 if a.quick else 200)))


if __name__ == "__main__":
    main()
