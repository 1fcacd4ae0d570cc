"""The store's rows, typed and named: one NamedTuple per table, its fields the table's
columns in order (a test checks them against the schema). ``Store.add(row)`` takes the
table from the row's type and inserts by column name."""

from __future__ import annotations

from typing import NamedTuple


class BarRow(NamedTuple):
    run_id: str
    instrument: str
    ts_ns: int
    open: float
    high: float
    low: float
    close: float
    ticks: int


class DecisionRow(NamedTuple):
    run_id: str
    instrument: str
    bar_ts_ns: int
    action: str
    confidence: float | None
    model_sha: str
    position_units: float
    equity: float
    order_units: float
    risk_note: str | None
    regime: float | None = None  # the composite regime at the decision (core.regime)


class OrderRow(NamedTuple):
    run_id: str
    client_order_id: str
    instrument: str
    bar_ts_ns: int
    units: float
    filled_units: float
    status: str
    not_before_ns: int


class FillRow(NamedTuple):
    run_id: str
    client_order_id: str
    seq: int
    instrument: str
    ts_ns: int
    units: float
    price: float
    commission: float


class PositionRow(NamedTuple):
    run_id: str
    instrument: str
    ts_ns: int
    units: float
    avg_price: float
    realized: float
    equity: float


class SessionMetricsRow(NamedTuple):
    run_id: str
    instrument: str
    session_date: str
    bars: int
    decisions: int
    holds: int
    orders: int
    fills: int
    equity_open: float
    equity_close: float
    pnl: float
    max_drawdown_pct: float


class RiskEventRow(NamedTuple):
    run_id: str
    ts_ns: int
    instrument: str | None
    kind: str
    detail: str
    requested_units: float | None
    allowed_units: float | None


class ModelSwapRow(NamedTuple):
    run_id: str
    ts_ns: int
    old_sha: str | None
    new_sha: str | None
    outcome: str
    reason: str


class JournalRow(NamedTuple):
    """The write-ahead order journal (live brokers)."""

    client_order_id: str
    run_id: str
    instrument: str
    bar_ts_ns: int
    seq: int
    units: float
    state: str
    broker_order_id: str
    filled_units: float
    reason: str
    created_ns: int
    updated_ns: int
    stop_price: float = 0.0  # the protective stop the order arms (0: none): a stop moved by hand is judged by it


class BrokerFillRow(NamedTuple):
    broker_fill_id: str
    run_id: str
    client_order_id: str | None
    instrument: str
    ts_ns: int
    units: float
    price: float
    commission: float
    financing: float
    spread_cost: float
    applied: int


class BookRow(NamedTuple):
    instrument: str
    units: float
    avg_price: float
    realized: float
    updated_ns: int
    run_id: str


class CursorRow(NamedTuple):
    broker: str
    cursor: str
    updated_ns: int


class FinancingRow(NamedTuple):
    """A holding cost the execution model charged at a daily roll (core.execution)."""

    run_id: str
    instrument: str
    ts_ns: int  # the bar close it was charged at
    units: float
    days: float
    charge: float  # quote currency; > 0 paid, < 0 received


class ReconciliationRow(NamedTuple):
    run_id: str
    ts_ns: int
    trigger: str
    instrument: str | None
    kind: str
    ours: float | None
    broker: float | None
    order_units: float | None
    detail: str


# table -> (row type, what happens to a row whose key is already there)
TABLES: dict[str, tuple[type, str]] = {
    "bars": (BarRow, ""),
    "decisions": (DecisionRow, ""),
    "orders": (
        OrderRow,
        "ON CONFLICT (run_id, client_order_id) DO UPDATE SET filled_units = excluded.filled_units, "
        "status = excluded.status",
    ),
    "fills": (FillRow, ""),
    "positions": (PositionRow, ""),
    "session_metrics": (SessionMetricsRow, ""),
    "risk_events": (RiskEventRow, ""),
    "model_swaps": (ModelSwapRow, ""),
    # live brokers: the write-ahead order journal, every broker fill once, the book and the
    # transaction cursor (all committed together), and what reconciliation found and did
    "order_journal": (
        JournalRow,
        "ON CONFLICT (client_order_id) DO UPDATE SET state = excluded.state, "
        "broker_order_id = excluded.broker_order_id, filled_units = excluded.filled_units, "
        "reason = excluded.reason, updated_ns = excluded.updated_ns",
    ),
    "broker_fills": (BrokerFillRow, "OR IGNORE"),
    "book": (BookRow, "OR REPLACE"),
    "broker_cursor": (CursorRow, "OR REPLACE"),
    "reconciliation_events": (ReconciliationRow, ""),
    "financing_charges": (FinancingRow, ""),
}
TABLE_OF: dict[type, str] = {row: table for table, (row, _) in TABLES.items()}


def insert_sql(table: str) -> str:
    row, conflict = TABLES[table]
    fields: tuple[str, ...] = row._fields  # type: ignore[attr-defined]  # every TABLES row is a NamedTuple
    cols = ", ".join(fields)
    marks = ",".join("?" * len(fields))
    if conflict.startswith("OR "):
        return f"INSERT {conflict} INTO {table} ({cols}) VALUES ({marks})"
    return f"INSERT INTO {table} ({cols}) VALUES ({marks}) {conflict}".rstrip()
