"""Small asyncio helpers that never swallow a cancellation.

Python 3.11's ``asyncio.wait_for`` can lose a cancellation that arrives as the awaited
thing completes (fixed in 3.12); a loop built on it may then ignore a TaskGroup's cancel
and keep the daemon from stopping. ``asyncio.wait`` has no such race.
"""

from __future__ import annotations

import asyncio
import random
from typing import TypeVar

T = TypeVar("T")


_SPAWNED: set[asyncio.Task] = set()


def spawn(coro, name: str) -> asyncio.Task:
    """Start a task outside any TaskGroup (a broker's reconnect or resync): it is referenced
    here until it ends (the event loop keeps only weak references, so an unreferenced task
    can vanish mid-flight), and the daemon's shutdown sweep cancels it if still alive."""
    task = asyncio.get_running_loop().create_task(coro, name=name)
    _SPAWNED.add(task)
    task.add_done_callback(_SPAWNED.discard)
    return task


def spawned() -> list[asyncio.Task]:
    """The spawned tasks still alive on the running loop."""
    loop = asyncio.get_running_loop()
    return [t for t in _SPAWNED if not t.done() and t.get_loop() is loop]


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Seconds to wait before retry number ``attempt`` (1, 2, ...): capped exponential
    backoff, base * 2^(attempt-1) up to ``cap``, with jitter down to half of it (so clients
    that failed together do not retry together). The one formula every retry site uses."""
    r = (rng or random).random()
    return min(cap, base * 2 ** (max(attempt, 1) - 1)) * (0.5 + r / 2)


async def first_of(*aws, timeout: float | None = None) -> set[asyncio.Future]:
    """Wait until the first of ``aws`` (coroutines or futures) completes or ``timeout`` passes;
    the others are cancelled. Returns the done set. Built on ``asyncio.wait`` (no lost
    cancellation, unlike 3.11's wait_for)."""
    futs = [asyncio.ensure_future(a) for a in aws]
    try:
        done, _ = await asyncio.wait(futs, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for f in futs:
            if not f.done():
                f.cancel()
    return done


async def within(aw, secs: float):
    """``await aw`` with a time limit: its result, or TimeoutError after ``secs`` (it is then
    cancelled). ``asyncio.wait_for`` without 3.11's lost-cancellation race."""
    fut = asyncio.ensure_future(aw)
    try:
        await asyncio.wait({fut}, timeout=secs)
    finally:
        if not fut.done():
            fut.cancel()
            await asyncio.wait({fut})
    if fut.cancelled():
        raise TimeoutError(f"not done within {secs:g} s")
    return fut.result()


async def sleep_or_stop(stop: asyncio.Event, secs: float) -> bool:
    """Sleep up to ``secs``; True as soon as ``stop`` is set."""
    await first_of(stop.wait(), timeout=secs)
    return stop.is_set()


async def get_within(queue: asyncio.Queue[T], secs: float) -> T | None:
    """The next item, or None after ``secs``."""
    getter = asyncio.ensure_future(queue.get())
    try:
        await asyncio.wait({getter}, timeout=secs)
    finally:
        if not getter.done():
            getter.cancel()
    return getter.result() if getter.done() and not getter.cancelled() else None


async def next_within(stream, secs: float, stop: asyncio.Event | None = None):
    """``await stream.__anext__()`` with a time limit (TimeoutError), built on ``asyncio.wait``
    so a cancellation arriving as a line does is never lost (``wait_for``'s 3.11 race: the
    OANDA feed then never saw the daemon's stop and shutdown hung). With ``stop``, returns
    None as soon as it is set."""
    nxt = asyncio.ensure_future(stream.__anext__())
    stopping = asyncio.ensure_future(stop.wait()) if stop is not None else None
    try:
        await asyncio.wait(
            {nxt} | ({stopping} if stopping else set()), timeout=secs, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        if stopping is not None:
            stopping.cancel()
        if not nxt.done():
            nxt.cancel()
            await asyncio.wait({nxt})  # the generator must be idle before it can be closed
    if nxt.cancelled():
        if stop is not None and stop.is_set():
            return None
        raise TimeoutError(f"no item within {secs:g} s")
    return nxt.result()  # raises StopAsyncIteration / the stream's own error


def primary_error(eg: BaseExceptionGroup, preferred: tuple[type[BaseException], ...] = ()) -> BaseException:
    """The error that stopped a task group: the first leaf of a ``preferred`` class (in that
    order), else the first leaf that is not a cancellation, else the group itself."""
    leaves: list[BaseException] = []

    def walk(e: BaseException) -> None:
        if isinstance(e, BaseExceptionGroup):
            for x in e.exceptions:
                walk(x)
        else:
            leaves.append(e)

    walk(eg)
    for want in (*preferred, Exception):
        for e in leaves:
            if isinstance(e, want):
                return e
    return eg
