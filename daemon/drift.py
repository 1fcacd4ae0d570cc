"""Paper vs real fills: how far the paper execution model drifts from the broker.

Two daemons on the same price stream with the same model take the same decisions and so
send orders with the same deterministic client ids; one fills them with the PaperBroker
(paper-live), the other at the broker. Matching the ``fills`` tables of the two databases
by client id gives, per order: the volume-weighted fill price on each side, the price
difference in pips signed so that positive means the broker filled worse than paper, and
the filled units on each side. Orders only one side has are counted, not hidden.

Holding costs: the financing the execution model charged the live run's book at each daily
roll against what the broker booked (``financing_report``).
"""

from __future__ import annotations

import json
import sqlite3
import statistics
from pathlib import Path
from typing import Any

from stairway.core.errors import DataError


def _fills(db: Path) -> dict[str, tuple[float, float]]:
    """client id -> (signed units, VWAP) over every run in the database."""
    if not Path(db).exists():
        raise DataError(f"{db}: no such database")
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
            rows = c.execute(
                "SELECT client_order_id, SUM(units), SUM(units * price) FROM fills GROUP BY client_order_id"
            ).fetchall()
    except sqlite3.DatabaseError as e:
        raise DataError(f"{db}: not a Stairway database ({e})") from None
    return {k: (u, pu / u) for k, u, pu in rows if u}


def drift_report(paper_db: Path, live_db: Path, pip: float) -> dict:
    paper, live = _fills(paper_db), _fills(live_db)
    both = sorted(set(paper) & set(live))
    rows: list[dict[str, Any]] = []
    for k in both:
        (pu, pp), (lu, lp) = paper[k], live[k]
        side = 1.0 if lu > 0 else -1.0
        rows.append(
            {
                "client_order_id": k,
                "paper_units": pu,
                "live_units": lu,
                "paper_price": pp,
                "live_price": lp,
                "drift_pips": (lp - pp) / pip * side,
            }
        )
    d: list[float] = [r["drift_pips"] for r in rows]
    ratio: list[float] = [r["live_units"] / r["paper_units"] for r in rows if r["paper_units"]]
    q = sorted(d)
    return {
        "matched": len(rows),
        "only_paper": len(set(paper) - set(live)),
        "only_live": len(set(live) - set(paper)),
        "drift_pips_mean": statistics.fmean(d) if d else None,
        "drift_pips_median": statistics.median(d) if d else None,
        "drift_pips_p95": q[min(len(q) - 1, int(0.95 * len(q)))] if q else None,
        "drift_pips_max_abs": max((abs(x) for x in d), default=None),
        "units_ratio_mean": statistics.fmean(ratio) if ratio else None,
        "orders": rows,
    }


def financing_report(live_db: Path) -> dict:
    """The execution model's holding costs (financing_charges, charged on the live book) next
    to what the broker booked (its DAILY_FINANCING and fill financing, in broker_fills; the
    broker's sign flipped: > 0 paid), per instrument, over every run in the database."""
    if not Path(live_db).exists():
        raise DataError(f"{live_db}: no such database")
    try:
        with sqlite3.connect(f"file:{live_db}?mode=ro", uri=True) as c:
            model = dict(c.execute("SELECT instrument, SUM(charge) FROM financing_charges GROUP BY instrument"))
            broker = dict(c.execute("SELECT instrument, -SUM(financing) FROM broker_fills GROUP BY instrument"))
            charges = c.execute("SELECT COUNT(*) FROM financing_charges").fetchone()[0]
            booked = c.execute("SELECT COUNT(*) FROM broker_fills WHERE financing != 0").fetchone()[0]
    except sqlite3.DatabaseError as e:
        raise DataError(f"{live_db}: not a Stairway database with financing records ({e})") from None
    rows = [
        {
            "instrument": k,
            "model": model.get(k, 0.0) or 0.0,
            "broker": broker.get(k, 0.0) or 0.0,
            "difference": (broker.get(k, 0.0) or 0.0) - (model.get(k, 0.0) or 0.0),
        }
        for k in sorted(set(model) | {k for k, v in broker.items() if v})
    ]
    return {"model_charges": charges, "broker_records": booked, "instruments": rows}


def format_drift(rep: dict) -> str:
    def f(x):
        return "-" if x is None else f"{x:+.2f}"

    return "\n".join(
        [
            "| matched orders | only paper | only live | drift pips mean | median | p95 | max abs | live/paper units |",
            "|---|---|---|---|---|---|---|---|",
            f"| {rep['matched']} | {rep['only_paper']} | {rep['only_live']} | {f(rep['drift_pips_mean'])} | "
            f"{f(rep['drift_pips_median'])} | {f(rep['drift_pips_p95'])} | {f(rep['drift_pips_max_abs'])} | "
            f"{'-' if rep['units_ratio_mean'] is None else format(rep['units_ratio_mean'], '.3f')} |",
            "",
            "drift pips > 0: the broker filled worse than the paper model.",
            *_format_financing(rep.get("financing")),
        ]
    )


def _format_financing(fin: dict | None) -> list[str]:
    if not fin:
        return []
    out = [
        "",
        f"Holding costs (> 0 paid): {fin['model_charges']} modelled charges, {fin['broker_records']} broker records.",
        "",
        "| instrument | model | broker | broker - model |",
        "|---|---|---|---|",
    ]
    out += [
        f"| {r['instrument']} | {r['model']:.2f} | {r['broker']:.2f} | {r['difference']:+.2f} |"
        for r in fin["instruments"]
    ]
    return out


def write_drift(rep: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(rep, indent=1))
    out.with_suffix(".md").write_text("# Paper vs broker fills\n\n" + format_drift(rep) + "\n")
