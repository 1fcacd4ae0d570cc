"""OANDA pricing-stream lines parsed per second (parse_stream_line on v20 PRICE lines,
with a HEARTBEAT every fifth line), single thread.

    python bench/stream_parse.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import time

from common import report
from stairway.daemon.brokers.oanda.parsing import parse_stream_line  # noqa: E402
from stairway.emulators.oanda_v20 import price_line, rfc3339  # noqa: E402


def lines(n: int) -> list[bytes]:
    out = []
    for k in range(n):
        ts = 1_506_934_800 * 10**9 + k * 250_000_000 + 123
        if k % 5 == 4:
            out.append(json.dumps({"type": "HEARTBEAT", "time": rfc3339(ts)}).encode())
            continue
        bid = 1.17330 + (k % 50) * 1e-5
        out.append(json.dumps(price_line("EUR_USD", ts, bid, bid + 1.2e-4)).encode())
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    data = lines(50_000 if a.quick else 500_000)
    for x in data[:1000]:
        parse_stream_line(x)
    t0 = time.perf_counter()
    for x in data:
        parse_stream_line(x)
    dt = time.perf_counter() - t0
    report(
        "stream_parse",
        {"lines": len(data), "lines_per_s": round(len(data) / dt), "us_per_line": round(dt / len(data) * 1e6, 3)},
    )


if __name__ == "__main__":
    main()
