"""Time from a dropped OANDA pricing stream to the first quote after the reconnect, through
OandaFeed against the local v20 emulator (default backoff: 0.5 s base with jitter x0.5-1).
OANDA allows 2 new connections per second, so a reconnect also waits until 0.5 s have
passed since the previous connection was opened: with a drop soon after connecting, that
limit, not the backoff, sets the figure.

    python bench/reconnect.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from common import ROOT, report  # noqa: F401  (puts the repository on sys.path)
from stairway.core.logs import configure_logging  # noqa: E402
from stairway.daemon.brokers.oanda.broker import OandaBroker  # noqa: E402
from stairway.daemon.brokers.oanda.feed import OandaFeed  # noqa: E402
from stairway.emulators.oanda_v20 import OandaEmulator  # noqa: E402


async def one(drop_after: int) -> float:
    emu = OandaEmulator()
    url = await emu.start()
    emu.prices = [(1_506_934_800 * 10**9 + k * 10**9, 1.1733, 1.1734) for k in range(drop_after + 20)]
    emu.knobs.drop_stream_after_lines = drop_after
    b = OandaBroker(url, emu.account, emu.token)
    await b.connect()
    feed = OandaFeed(b, ["EUR_USD"])
    try:
        async for _ in feed.ticks():
            if feed.reconnects:
                return time.monotonic() - feed.last_drop_monotonic
    finally:
        await b.close()
        await emu.stop()
    raise RuntimeError("no reconnect")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    configure_logging(level="error")
    times = [asyncio.run(one(5)) for _ in range(3 if a.quick else 12)]
    report(
        "reconnect",
        {
            "drops": len(times),
            "median_s": round(statistics.median(times), 3),
            "max_s": round(max(times), 3),
            "backoff_base_s": 0.5,
        },
    )


if __name__ == "__main__":
    main()
