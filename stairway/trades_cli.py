"""`stairway trades`: a daemon run's orders, fills and closed trades with their P&L, per day
and per instrument, from its SQLite store (issue 22 §4).

A trade runs from the fill that takes an instrument's position away from flat to the fill that
brings it back (a reversal closes one and opens the next at the same fill). Its P&L is what the
book realised over it, commissions included, computed by the book's own arithmetic
(core.position.apply_fill) over the run's fills in time order. Times are UTC ISO 8601.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sqlite3
from collections import defaultdict
from pathlib import Path
from typing import Any

from stairway.core.errors import ConfigError
from stairway.core.position import PS_REALIZED, PS_UNITS, apply_fill, new_state


def iso(ts_ns: int) -> str:
    return dt.datetime.fromtimestamp(ts_ns / 1e9, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def add_parser(sub, default_config) -> None:
    t = sub.add_parser("trades", help="a run's orders, fills and closed trades with P&L, per day and instrument")
    t.add_argument(
        "--config", default=default_config("config/paper.toml"), help="daemon config (its database; default: "
        "$STAIRWAY_CONFIG, else config/paper.toml)",
    )  # fmt: skip
    t.add_argument("--db", help="the daemon's database file (default: the config's service.db_path)")
    t.add_argument("--run", help="run id (default: the latest run in the database)")
    t.add_argument("--since", type=dt.date.fromisoformat, help="YYYY-MM-DD (UTC): trades closed on or after it")
    t.add_argument("--json", action="store_true", help="one JSON document instead of tables")
    t.set_defaults(func=run)


def listing(db: Path, run_id: str | None = None, since: dt.date | None = None) -> dict[str, Any]:
    """The run's orders, fills, closed trades and per-day / per-instrument totals."""
    if not db.is_file():
        raise ConfigError(f"{db}: no daemon database here (has the daemon run with this config?)")
    try:
        run_id, orders, fills = _read(db, run_id)
    except sqlite3.Error as e:  # not a database, unreadable, or not the daemon's (no such table)
        raise ConfigError(f"{db}: not a readable daemon database: {e}") from None
    trades = closed_trades(fills)
    if since is not None:
        trades = [t for t in trades if t["closed"][:10] >= since.isoformat()]
    days: dict[str, dict[str, float]] = defaultdict(lambda: {"trades": 0, "pnl": 0.0})
    per_inst: dict[str, dict[str, float]] = defaultdict(lambda: {"trades": 0, "pnl": 0.0, "wins": 0})
    for t in trades:
        for key, agg in ((t["closed"][:10], days), (t["instrument"], per_inst)):
            agg[key]["trades"] += 1
            agg[key]["pnl"] += t["pnl"]
        per_inst[t["instrument"]]["wins"] += t["pnl"] > 0
    return {
        "run_id": run_id,
        "orders": _records(orders, ("client_order_id", "instrument", "bar", "units", "filled", "status"), "bar"),
        "fills": _records(
            [(f[0], f[2], f[3], f[4], f[5], f[6]) for f in fills],
            ("client_order_id", "instrument", "time", "units", "price", "commission"),
            "time",
        ),
        "trades": trades,
        "per_day": {k: dict(v) for k, v in sorted(days.items())},
        "per_instrument": {k: dict(v) for k, v in sorted(per_inst.items())},
    }


def _read(db: Path, run_id: str | None) -> tuple[str, list, list]:
    """(the run id, its orders, its fills), read only."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
        if run_id is None:
            row = c.execute("SELECT run_id FROM runs ORDER BY started_ns DESC LIMIT 1").fetchone()
            if row is None:
                raise ConfigError(f"{db}: no run recorded yet")
            run_id = row[0]
        elif c.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone() is None:
            known = [r[0] for r in c.execute("SELECT run_id FROM runs ORDER BY started_ns DESC LIMIT 5")]
            raise ConfigError(f"--run {run_id}: not in {db} (latest: {', '.join(known) or 'none'})")
        orders = c.execute(
            "SELECT client_order_id, instrument, bar_ts_ns, units, filled_units, status FROM orders "
            "WHERE run_id = ? ORDER BY bar_ts_ns, client_order_id",
            (run_id,),
        ).fetchall()
        fills = c.execute(
            "SELECT client_order_id, seq, instrument, ts_ns, units, price, commission FROM fills "
            "WHERE run_id = ? ORDER BY ts_ns, client_order_id, seq",
            (run_id,),
        ).fetchall()
    return run_id, orders, fills


def _records(rows: list[tuple], names: tuple[str, ...], when: str) -> list[dict[str, Any]]:
    """Rows as dicts of ``names``, the ``when`` column (ns) in UTC ISO 8601."""
    out = [dict(zip(names, r)) for r in rows]
    for d in out:
        d[when] = iso(d[when])
    return out


def closed_trades(fills: list[tuple]) -> list[dict[str, Any]]:
    """Round trips from fills (client_order_id, seq, instrument, ts_ns, units, price, commission)
    in time order; the still-open one is not listed."""
    out: list[dict[str, Any]] = []
    books: dict[str, Any] = {}
    open_at: dict[str, dict[str, Any]] = {}
    for _coid, _seq, inst, ts, units, price, commission in fills:
        st = books.setdefault(inst, new_state())
        before, realised = float(st[PS_UNITS]), float(st[PS_REALIZED])
        apply_fill(st, units, price, commission)
        after = float(st[PS_UNITS])
        if before and (not after or (before > 0) != (after > 0)):  # closed (perhaps reversed)
            t = open_at.pop(inst)
            # a reversal's commission on the part that opens the next trade belongs to that one
            opening = commission * abs(after) / abs(units) if after else 0.0
            t.update(
                closed=iso(ts), exit_price=price, pnl=round(t["pnl"] + float(st[PS_REALIZED]) - realised + opening, 2)
            )
            out.append(t)
            if after:
                open_at[inst] = _opened(inst, ts, after, price, -opening)
        elif not before and after:
            open_at[inst] = _opened(inst, ts, after, price, -commission)
        elif before:  # added to, or reduced
            t = open_at[inst]
            t["max_units"] = max(t["max_units"], abs(after))
            t["pnl"] += float(st[PS_REALIZED]) - realised
    return out


def _opened(inst: str, ts: int, units: float, price: float, pnl: float) -> dict[str, Any]:
    return {
        "instrument": inst,
        "side": "long" if units > 0 else "short",
        "opened": iso(ts),
        "entry_price": price,
        "max_units": abs(units),
        "pnl": pnl,
    }


def run(args: argparse.Namespace) -> int:
    db = Path(args.db) if args.db else _db_of(args.config)
    out = listing(db, args.run, args.since)
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"run {out['run_id']} ({db}): {len(out['orders'])} orders, {len(out['fills'])} fills, "
          f"{len(out['trades'])} closed trades")  # fmt: skip
    if out["trades"]:
        print("\ninstrument  side   opened                closed                units      entry      exit         pnl")
        for t in out["trades"]:
            print(
                f"{t['instrument']:<11} {t['side']:<6} {t['opened']:<21} {t['closed']:<21} {t['max_units']:>8g} "
                f"{t['entry_price']:>9.5f} {t['exit_price']:>9.5f} {t['pnl']:>+11.2f}"
            )
    print("\nday          trades         pnl")
    for day, v in out["per_day"].items():
        print(f"{day}  {v['trades']:>6} {v['pnl']:>+11.2f}")
    print("\ninstrument  trades  wins         pnl")
    for inst, v in out["per_instrument"].items():
        print(f"{inst:<11} {v['trades']:>6} {v['wins']:>5} {v['pnl']:>+11.2f}")
    return 0


def _db_of(config: str) -> Path:
    from stairway.core.config import load_config
    from stairway.daemon.config import DaemonConfig

    return Path(load_config(DaemonConfig, config).service.db_path)
