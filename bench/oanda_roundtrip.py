"""Order round trip through the OANDA adapter to the local v20 emulator on loopback:
submit (MARKET/FOK with client id) -> 201 with the fill -> OrderReport. p50/p99.

    python bench/oanda_roundtrip.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import numpy as np
from common import ROOT, report  # noqa: F401  (puts the repository on sys.path)

from core.types import OrderIntent, Side, client_order_id  # noqa: E402
from daemon.brokers.oanda.broker import OandaBroker  # noqa: E402
from tests.emulators.oanda_v20 import OandaEmulator  # noqa: E402


async def run(n: int) -> list[float]:
    emu = OandaEmulator()
    url = await emu.start()
    broker = OandaBroker(url, emu.account, emu.token)
    await broker.connect()
    times = []
    try:
        for k in range(n + 50):
            side = Side.BUY if k % 2 == 0 else Side.SELL
            intent = OrderIntent(client_order_id("EUR_USD", 1_506_934_800 * 10**9 + k, 0), "EUR_USD", side, 100_000.0,
                                 0, 0)
            t0 = time.perf_counter()
            await broker.submit(intent)
            if k >= 50:  # after warm-up (connection pool, first requests)
                times.append(time.perf_counter() - t0)
    finally:
        await broker.close()
        await emu.stop()
    return times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    times = np.array(asyncio.run(run(200 if a.quick else 2000))) * 1000
    report("oanda_roundtrip", {"orders": len(times), "p50_ms": round(float(np.percentile(times, 50)), 3),
                               "p99_ms": round(float(np.percentile(times, 99)), 3),
                               "mean_ms": round(statistics.fmean(times), 3),
                               "note": "emulator and client in one process on loopback"})


if __name__ == "__main__":
    main()
