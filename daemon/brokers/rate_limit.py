"""An asyncio token bucket: ``await acquire()`` waits until a token is free, never blocks
the loop. OANDA's published limits: 100 requests/s per connection and 2 new connections/s."""

from __future__ import annotations

import asyncio
import time


class RateLimiter:
    def __init__(self, rate_per_sec: float, burst: int | None = None) -> None:
        if rate_per_sec <= 0:
            raise ValueError(f"rate_per_sec must be positive, got {rate_per_sec}")
        self.rate, self.capacity = rate_per_sec, float(burst if burst is not None else max(1, int(rate_per_sec)))
        self.tokens, self.updated = self.capacity, time.monotonic()
        self.waited_secs = 0.0
        self.acquired = 0
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:  # first come, first served
            while True:
                now = time.monotonic()
                self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
                self.updated = now
                if self.tokens >= 1.0:
                    self.tokens -= 1.0
                    self.acquired += 1
                    return
                wait = (1.0 - self.tokens) / self.rate
                self.waited_secs += wait
                await asyncio.sleep(wait)
