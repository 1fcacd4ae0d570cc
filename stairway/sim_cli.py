"""`stairway sim oanda|ib`: the local OANDA v20 emulator (stairway/emulators/oanda_v20.py), or
the TWS API socket emulator (stairway/emulators/tws.py), as a command (issue 22 §5), serving a bar file's quotes (the one bar-to-quote path the replay uses,
core.bar_ticks) on 127.0.0.1, so the paper-live and live configs run end to end without an
account. The quotes' times are moved forward by whole weeks to start near now (weekdays stay
weekdays); ``--speed N`` hands them out N times faster than they happened.

Prints one line with the URL and the environment a daemon needs, then serves until SIGINT or
SIGTERM (exit 0).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import signal
import time
from pathlib import Path

WEEK_NS = 7 * 86_400 * 10**9


def add_parser(sub) -> None:
    s = sub.add_parser("sim", help="a local broker emulator serving bundled data (no account needed)")
    s.add_argument(
        "broker", choices=["oanda", "ib"], help="the wire protocol: OANDA v20 (REST and streams) or the TWS API socket"
    )
    s.add_argument("--bars", default="data/FOREX_EURUSD_1H_ASK.csv", help="bar file to serve (its quotes)")
    s.add_argument("--instrument", default="EUR_USD")
    s.add_argument("--side", choices=["bid", "ask", "mid"], default="ask", help="the file's quote side")
    s.add_argument("--spread-pips", type=float, default=1.0, help="modelled spread (pips of 0.0001)")
    s.add_argument("--from", dest="start", type=dt.date.fromisoformat, help="first day served (YYYY-MM-DD)")
    s.add_argument("--speed", type=float, default=1.0, help="quotes per real second relative to the data (>0)")
    s.add_argument("--port", type=int, help="127.0.0.1 port (0: any free one; default: oanda 8790, ib 4002)")
    s.add_argument("--token", default="sim-token", help="the bearer token the emulator accepts")
    s.add_argument("--account", default="101-001-0000000-001")
    s.set_defaults(func=run)


def quotes(args: argparse.Namespace, now_ns: int) -> tuple[list[tuple], int]:
    """(ts, bid, ask) from the bar file, shifted by whole weeks so the first is within a week
    before ``now_ns``; and the shift."""
    from stairway.core.bar_files import load_bars
    from stairway.core.bar_ticks import bars_to_ticks
    from stairway.core.errors import ConfigError

    bars, report = load_bars(Path(args.bars), symbol=args.instrument)
    if args.start is not None:
        lo = int(dt.datetime(args.start.year, args.start.month, args.start.day, tzinfo=dt.UTC).timestamp()) * 10**9
        bars = bars[bars["ts_ns"] >= lo]
    if not len(bars):
        raise ConfigError(f"--from {args.start}: {args.bars} has no bars from then")
    ticks = bars_to_ticks(bars, report.period_minutes * 60 * 10**9, args.side, args.spread_pips * 1e-4)
    shift = (now_ns - int(ticks["ts_ns"][0])) // WEEK_NS * WEEK_NS
    out = [(int(t) + shift, float(b), float(a)) for t, b, a in zip(ticks["ts_ns"], ticks["bid"], ticks["ask"])]
    return out, shift


async def serve(args: argparse.Namespace, ready=print) -> None:
    from stairway.core.errors import ConfigError
    from stairway.emulators.oanda_v20 import OandaEmulator

    if not args.speed > 0:
        raise ConfigError(f"--speed {args.speed}: must be > 0")
    prices, _ = quotes(args, time.time_ns())
    if args.broker == "ib":
        return await serve_ib(args, prices, ready)
    emu = OandaEmulator(args.account, args.token)
    emu.prices = prices
    spacing_s = (prices[1][0] - prices[0][0]) / 1e9 if len(prices) > 1 else 1.0
    emu.knobs.price_interval_secs = spacing_s / args.speed
    emu.knobs.end_when_exhausted = False  # like the real stream: heartbeats once the data is served
    emu.knobs.heartbeat_secs = 5.0
    emu.now_ns = prices[0][0]
    try:
        url = await emu.start(8790 if args.port is None else args.port)
    except OSError as e:
        raise ConfigError(f"--port {args.port}: cannot listen on 127.0.0.1: {e.strerror or e}") from None
    stop = _until_signalled()
    first = dt.datetime.fromtimestamp(prices[0][0] / 1e9, dt.UTC).isoformat(timespec="minutes")
    ready(
        f"OANDA v20 emulator at {url}: {len(prices)} quotes of {args.instrument} from {first} every "
        f"{emu.knobs.price_interval_secs:g} s; a daemon: OANDA_TOKEN={args.token} OANDA_ACCOUNT={args.account} "
        f"STAIRWAY_BROKER__OANDA__REST_URL={url} STAIRWAY_BROKER__OANDA__STREAM_URL={url} "
        "stairway daemon run --config config/paper-live-oanda.toml",
        flush=True,
    )
    try:
        await stop.wait()
    finally:
        await emu.stop()


def _until_signalled() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def serve_ib(args: argparse.Namespace, prices: list[tuple], ready) -> None:
    """The TWS API emulator (stairway/emulators/tws.py) on 127.0.0.1: the real ib_async client
    connects as to IB Gateway; quotes go to subscribed clients, historical bars from them."""
    from stairway.core.errors import ConfigError
    from stairway.emulators.tws import TwsEmulator

    pair = args.instrument.replace("_", "")
    emu = TwsEmulator(pair)
    emu.prices, emu.now_ns = prices, prices[0][0]
    emu.port = 4002 if args.port is None else args.port
    try:
        port = await emu.start()
    except OSError as e:
        raise ConfigError(f"--port {emu.port}: cannot listen on 127.0.0.1: {e.strerror or e}") from None
    stop = _until_signalled()
    spacing_s = (prices[1][0] - prices[0][0]) / 1e9 if len(prices) > 1 else 1.0
    streamer = asyncio.create_task(emu.stream(spacing_s / args.speed, stop))
    first = dt.datetime.fromtimestamp(prices[0][0] / 1e9, dt.UTC).isoformat(timespec="minutes")
    ready(
        f"TWS API emulator at 127.0.0.1:{port}: {len(prices)} quotes of {pair} from {first} every "
        f"{spacing_s / args.speed:g} s to subscribed clients; a daemon: STAIRWAY_BROKER__IB__HOST=127.0.0.1 "
        f"STAIRWAY_BROKER__IB__PORT={port} stairway daemon run --config config/paper-live-ib.toml",
        flush=True,
    )
    try:
        await stop.wait()
    finally:
        streamer.cancel()
        await emu.close()


def run(args: argparse.Namespace) -> int:
    asyncio.run(serve(args))
    return 0
