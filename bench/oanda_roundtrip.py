"""Order round trip through the OANDA adapter to the local v20 emulator on loopback:
submit (MARKET/FOK with client id) -> 201 with the fill -> OrderReport. p50/p99.

Three figures, side by side in one run:
- ``adapter``: the adapter alone, OANDA's 100 requests/s limit lifted (its own latency);
- ``adapter_rate_limited``: the shipped adapter (100 requests/s): what a burst really gets;
- ``router``: what the daemon does per order: journal row, write-ahead commit to SQLite
  (synchronous=FULL), send, fetch the fill from transactions/sinceid, settle, commit
  (limit lifted; ``router_rate_limited``: shipped limits, two requests per order).
A sustained burst of orders is paced by the 100 requests/s limit (10 ms a request); one
order per bar never waits (the bucket holds 100).

    python bench/oanda_roundtrip.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import numpy as np

from common import ROOT, report  # noqa: F401  (puts the repository on sys.path)
from stairway.core.types import OrderIntent, Side, client_order_id  # noqa: E402
from stairway.daemon.brokers.oanda.broker import OandaBroker  # noqa: E402
from stairway.emulators.oanda_v20 import OandaEmulator  # noqa: E402


def _intent(k: int) -> OrderIntent:
    side = Side.BUY if k % 2 == 0 else Side.SELL
    return OrderIntent(client_order_id("EUR_USD", 1_506_934_800 * 10**9 + k, 0), "EUR_USD", side, 100_000.0, 0, 0)


async def run(n: int, unlimited: bool, db: str | None = None) -> list[float]:
    """Adapter round trips; with ``db``, through the daemon's LiveRouter and a Store."""
    from stairway.daemon.brokers.rate_limit import RateLimiter
    from stairway.daemon.order_router import LiveRouter
    from stairway.daemon.store import Store

    emu = OandaEmulator()
    url = await emu.start()
    broker = OandaBroker(url, emu.account, emu.token)
    if unlimited:
        broker.requests = RateLimiter(1e9)
    await broker.connect()
    store = await Store.open(db) if db else None
    router = LiveRouter(broker, store, "bench") if store else None
    if router is not None:
        router.cursor = (await broker.fills(None)).cursor
    times = []
    try:
        for k in range(n + 50):
            intent = _intent(k)
            t0 = time.perf_counter()
            if router is None:
                await broker.submit(intent)
            else:
                router.submit(intent, 0)
                await store.flush()  # what the sender task does: write-ahead, then send
                await router._send(router.queue.get_nowait())
                router.finish("EUR_USD")
            if k >= 50:  # after warm-up (connection pool, first requests)
                times.append(time.perf_counter() - t0)
        assert emu.order_requests == n + 50 and (router is None or not router.busy())
    finally:
        if store is not None:
            await store.close()
        await broker.close()
        await emu.stop()
    return times


def _stats(times) -> dict:
    t = np.array(times) * 1000
    return {
        "p50_ms": round(float(np.percentile(t, 50)), 3),
        "p99_ms": round(float(np.percentile(t, 99)), 3),
        "mean_ms": round(statistics.fmean(t), 3),
    }


def main() -> None:
    import tempfile

    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    n = 200 if a.quick else 2000
    with tempfile.TemporaryDirectory() as tmp:
        results = {
            "orders": n,
            "adapter": _stats(asyncio.run(run(n, True))),
            "adapter_rate_limited": _stats(asyncio.run(run(n, False))),
            "router": _stats(asyncio.run(run(n, True, f"{tmp}/bench.db"))),
            "router_rate_limited": _stats(asyncio.run(run(n, False, f"{tmp}/bench2.db"))),
        }
    results["p50_ms"], results["p99_ms"] = results["adapter"]["p50_ms"], results["adapter"]["p99_ms"]
    results["note"] = "emulator and client in one process on loopback; router includes two SQLite commits"
    report("oanda_roundtrip", results)


if __name__ == "__main__":
    main()
