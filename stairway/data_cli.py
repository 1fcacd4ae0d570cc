"""`stairway data import|fetch|coverage`: the trainer's data store (trainer.data_store)."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
from pathlib import Path

from stairway.config_cli import default_config
from stairway.core.config import CONFIG_ENV, load_config
from stairway.core.errors import ConfigError, DataError


def add_parser(sub) -> None:
    d = sub.add_parser("data", help="the trainer's data store: imported, fetched and recorded bars")
    d.add_argument(
        "--config",
        default=default_config("config/trainer.toml"),
        help=f"trainer config (bars, instrument, store; default: ${CONFIG_ENV}, else config/trainer.toml)",
    )
    d.add_argument("--store", help="the store's folder (default: train.data_store of the config)")
    ds = d.add_subparsers(dest="action", required=True)
    im = ds.add_parser("import", help="copy a bar file (any format the loader reads) into the store")
    im.add_argument("file")
    im.add_argument("--instrument", help="default: instrument.symbol of the config")
    im.add_argument(
        "--side",
        choices=["bid", "ask", "mid"],
        help="the file's quote side (default: the one its name declares, else the store's: bars.price)",
    )
    im.add_argument(
        "--date-format",
        help="strptime directives for times the loader does not recognise, e.g. '%%m/%%d/%%Y %%H:%%M' for "
        "US dates (default: DD.MM.YYYY, YYYY.MM.DD (MetaTrader) or ISO 8601, recognised)",
    )
    im.add_argument(
        "--utc-offset",
        default="0",
        help="the file's clock ahead of UTC, e.g. +02:00 for a MetaTrader server at GMT+2 (default: 0, "
        "UTC); times that carry their own offset keep it",
    )
    fe = ds.add_parser("fetch", help="broker history into the store (OANDA candles, IB historical bars)")
    fe.add_argument("--instrument", help="default: instrument.symbol of the config")
    fe.add_argument("--from", dest="start", type=dt.date.fromisoformat, help="YYYY-MM-DD")
    fe.add_argument("--to", dest="end", type=dt.date.fromisoformat, help="YYYY-MM-DD, exclusive")
    fe.add_argument("--days", type=int, help="instead of --from/--to: the last N days up to today (UTC, exclusive)")
    fe.add_argument("--daemon-config", help="the broker's settings (default: gates.daemon_config)")
    co = ds.add_parser("coverage", help="spans, gaps and sources per instrument")
    co.add_argument("--as-of", type=dt.date.fromisoformat, help="today (default: the UTC date)")
    co.add_argument("--json", action="store_true")
    d.set_defaults(func=run)


def _store(cfg, args):
    from stairway.trainer.data_store import DataStore

    root = Path(args.store) if args.store else cfg.train.data_store
    if root is None:
        raise ConfigError(f"{args.config}: no train.data_store and no --store: where is the data store?")
    b = cfg.bars
    return DataStore(root, cfg.gates.ticks_dir, b.period_minutes, b.price, b.max_jump, b.jump_confirm_quotes)


def run(args: argparse.Namespace) -> int:
    from stairway.core.logs import configure_logging
    from stairway.trainer.config import TrainerConfig

    configure_logging(level="warning")
    cfg = load_config(TrainerConfig, args.config)
    store = _store(cfg, args)
    if args.action in ("import", "fetch"):  # one writer per store; coverage only reads
        from stairway.core.locks import ExclusiveLock

        with ExclusiveLock(store.root / ".store.lock", f"data store {store.root}"):
            return _write(cfg, args, store)
    return _coverage(args, store)


def _time_format(args):
    from stairway.core.bar_formats import TimeFormat, parse_utc_offset

    try:
        return TimeFormat(args.date_format, parse_utc_offset(args.utc_offset))
    except ValueError as e:
        raise ConfigError(f"data import: {e}") from None


def _write(cfg, args, store) -> int:
    if args.action == "import":
        inst = args.instrument or cfg.instrument.symbol
        path, n = store.import_file(Path(args.file), inst, args.side, _time_format(args))
        print(f"imported {n} bars of {inst} from {args.file} -> {path}")
        return 0
    if args.action == "fetch":
        inst = args.instrument or cfg.instrument.symbol
        if args.days is not None:
            if args.start or args.end or args.days <= 0:
                raise ConfigError("fetch: give --days N (N > 0) or --from and --to, not both")
            args.end = dt.datetime.now(dt.UTC).date()
            args.start = args.end - dt.timedelta(days=args.days)
        if args.start is None or args.end is None:
            raise ConfigError("fetch: give --from and --to (YYYY-MM-DD), or --days N")
        if args.end <= args.start:
            raise ConfigError(f"--to {args.end} must be after --from {args.start}")
        bars = asyncio.run(_fetch(cfg, args, inst))
        path = store.add_fetched(inst, bars, args.start, args.end)
        where = f"-> {path}" if path else "(market closed or no data: nothing written)"
        print(f"fetched {len(bars)} bars of {inst} {args.start} .. {args.end} {where}")
    return 0


def _coverage(args, store) -> int:
    as_of = args.as_of or dt.datetime.now(dt.UTC).date()
    report = {}
    for inst in store.instruments():  # one instrument that does not read is reported; the others still are
        try:
            report[inst] = store.coverage(inst, as_of)
        except (DataError, OSError) as e:
            report[inst] = {"error": str(e)}
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    if not report:
        print(f"data store {store.root}: empty (and no recordings under {store.ticks_dir})")
    for inst, r in report.items():
        if "error" in r:
            print(f"{inst}: ERROR {r['error']}")
            continue
        print(f"{inst}: merged {r['merged']['bars']} bars {r['merged']['first']} .. {r['merged']['last']}")
        for bad in r["bad_files"]:
            print(f"  BAD FILE (left out; a training run refuses it): {bad}")
        for s, x in r["sources"].items():
            gaps = f", {len(x['gaps'])} weekday gap(s): {'; '.join(x['gaps'][:3])}" if x["gaps"] else ""
            span = f"{x['first']} .. {x['last']}" if x["bars"] else "-"
            print(f"  {s:9} {x['bars']:7} bars in {x['files']} file(s)/day(s), {span}, used {x['used']}{gaps}")
    return 0


async def _fetch(cfg, args, inst: str):
    import aiohttp

    from stairway.daemon.aio import within
    from stairway.daemon.brokers.factory import make_adapters
    from stairway.daemon.config import DaemonConfig

    path = Path(args.daemon_config) if args.daemon_config else cfg.gates.daemon_config
    dcfg = load_config(DaemonConfig, path)
    if not dcfg.live:
        raise ConfigError(
            f"{path}: [broker] kind = {dcfg.broker.kind!r}: fetching history needs a broker (oanda or ib)"
        )
    broker = make_adapters(dcfg).broker
    history = broker.history_bars
    to_ns = lambda d: int(dt.datetime(d.year, d.month, d.day, tzinfo=dt.UTC).timestamp()) * 10**9  # noqa: E731
    try:
        await broker.connect()
        try:
            return await _in_chunks(args.start, args.end, lambda a, b: within(
                history(inst, cfg.bars.period_minutes, cfg.bars.price, to_ns(a), to_ns(b)), 600.0
            ))  # fmt: skip
        finally:
            await broker.close()
    except (OSError, TimeoutError, aiohttp.ClientError) as e:  # one line, not a traceback
        raise DataError(f"{path}: {dcfg.broker.kind} history of {inst} not fetched: {e}") from None


CHUNK_DAYS = 30


async def _in_chunks(start: dt.date, end: dt.date, fetch):
    """[start, end) fetched CHUNK_DAYS at a time, with progress (issue 22 §1): a bar on a
    terminal, else one line per chunk on stderr with elapsed time and ETA; bars joined in time
    order, a bar two chunks both hold kept once."""
    import sys
    import time

    import numpy as np
    from tqdm import tqdm

    from stairway.core.types import BAR_DTYPE

    edges = [start]
    while edges[-1] < end:
        edges.append(min(end, edges[-1] + dt.timedelta(days=CHUNK_DAYS)))
    n = len(edges) - 1
    bar = tqdm(total=n, desc="fetch", unit="chunk", disable=None, leave=False)
    parts, t0 = [], time.perf_counter()
    for k, (a, b) in enumerate(zip(edges, edges[1:]), 1):
        parts.append(await fetch(a, b))
        bar.update()
        if bar.disable:
            el = time.perf_counter() - t0
            print(f"fetch {k}/{n}: {a} .. {b} {len(parts[-1])} bars, {el:.1f} s, eta {el / k * (n - k):.1f} s",
                  file=sys.stderr, flush=True)  # fmt: skip
    bar.close()
    bars = np.concatenate(parts) if parts else np.empty(0, BAR_DTYPE)
    if len(bars):
        bars = bars[np.unique(bars["ts_ns"], return_index=True)[1]]
    return bars
