"""Performance metrics, computed incrementally bar by bar.

The trainer's evaluation and the daemon's summary feed the same tracker, so both report the
same numbers for the same run. Memory is bounded by the number of trades and days, not bars.

- PnL in quote currency, in % of initial equity and in pips per traded unit
- max drawdown: largest fall of bar-close equity from its running peak, in %
- Sharpe / Sortino: daily equity returns (UTC days), annualised with sqrt(252)
- SQN = mean(R) / std(R) * sqrt(N) with R the per-trade PnL in pips (Van Tharp)
- win rate, profit factor (gross win / gross loss), expectancy (mean trade pips)
- a trade's PnL carries both of its commissions (the opening fill's and the closing fill's);
  a position still open at the end counts as a trade marked to market at the last close,
  closing commission included, and is flagged (``open_trade_marked``)
- trade-quality figures (SQN, win rate, profit factor, expectancy) are printed only from
  MIN_TRADES_FOR_QUALITY trades on; below that the table says "too few trades (n)"
- ``calendar_days``: first to last bar, for annualising (not the days that have bars)
- risk (the trainer's env, core.risk_rules): flatten-tier closes, intents blocked or cut, bars
  spent halted
- exposure: the share of bars closed long and short (a model long on nearly every bar is
  buy-and-hold in disguise, whatever its hold rate)
- hold rate (share of HOLD decisions), trades (round trips closed) and trades per day,
  entries (positions opened, reversals included) and the position still open at the end
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from stairway.core.execution import target_units
from stairway.core.types import NS_PER_DAY, Action

MIN_TRADES_FOR_QUALITY = 30
QUALITY_KEYS = ("sqn", "win_rate", "profit_factor", "expectancy_pips")


@dataclass
class PerformanceTracker:
    initial_equity: float
    pip: float
    trade_units: float
    commission_per_unit: float = 0.0  # to attribute each fill's commission to its own trade
    bars: int = 0
    decisions: int = 0
    holds: int = 0
    equity: float = float("nan")
    peak: float = float("nan")
    max_dd: float = 0.0
    trade_pnls_pips: list[float] = field(default_factory=list)
    day_close_equity: list[float] = field(default_factory=list)
    _day: int = -1
    _side: float = 0.0
    _realized_at_open: float = 0.0
    _days_seen: int = 0
    entries: int = 0
    long_entries: int = 0  # of the entries, long ones (random entries draw their sides with this mix)
    _units: float = 0.0
    _first_ts: int | None = None
    _last_ts: int = 0
    trade_bars: list[int] = field(default_factory=list)  # bars each closed trade was held
    _open_bar: int = 0
    record: bool = False  # keep (ts, equity) per bar for plots (evaluation only)
    curve_ts: list[int] = field(default_factory=list)
    risk: dict[str, int] = field(default_factory=dict)  # the trainer's env: flattens, blocked intents, halted bars
    long_bars: int = 0  # bars that closed with a long / short position (exposure, bias)
    short_bars: int = 0
    curve_equity: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.equity = self.peak = self.initial_equity
        self.day_close_equity.append(self.initial_equity)

    def on_decision(self, action: int, units: float = 0.0) -> bool:
        """Count a decision taken with ``units`` held; a hold is one that leaves the target
        position as it is (HOLD, or BUY while already long a full size: target-position
        semantics make a repeated BUY a hold). Returns whether it was one."""
        self.decisions += 1
        hold = action == Action.HOLD or abs(target_units(action, units, self.trade_units) - units) < 1e-9
        self.holds += hold
        return hold

    def on_bar(self, ts_ns: int, units: float, realized: float, equity: float) -> None:
        """Call once per closed bar, after that bar's fills, with equity marked at its close."""
        self.bars += 1
        day = ts_ns // NS_PER_DAY
        if day != self._day:
            if self._day >= 0:
                self.day_close_equity.append(self.equity)
            self._day = day
            self._days_seen += 1
        if self._first_ts is None:
            self._first_ts = ts_ns
        self._last_ts = ts_ns
        side = 0.0 if units == 0.0 else math.copysign(1.0, units)
        if side != self._side:
            # realised PnL already carries the new position's opening commission: it belongs to
            # the new trade, not to the one closed by the same fill
            opening = self.commission_per_unit * abs(units)
            if self._side != 0.0:
                self.trade_pnls_pips.append(
                    (realized + opening - self._realized_at_open) / (self.pip * self.trade_units)
                )
                self.trade_bars.append(self.bars - self._open_bar)
            self._realized_at_open = realized + opening
            self._open_bar = self.bars
            self._side = side
            self.entries += side != 0.0
            self.long_entries += side > 0.0
        self._units = units
        self.long_bars += units > 0.0
        self.short_bars += units < 0.0
        if self.record:
            self.curve_ts.append(ts_ns)
            self.curve_equity.append(equity)
        self.equity = equity
        self.peak = max(self.peak, equity)
        self.max_dd = max(self.max_dd, (self.peak - equity) / self.peak)

    def open_trade_pips(self) -> float | None:
        """The open position as a trade closed at the last mark (closing commission included)."""
        if self._side == 0.0:
            return None
        closing = self.commission_per_unit * abs(self._units)
        marked = self.equity - self.initial_equity - closing  # realised + unrealised - closing cost
        return (marked - self._realized_at_open) / (self.pip * self.trade_units)

    def holding_bars(self) -> list[int]:
        """Bars held per trade, the open one (so far) included."""
        return self.trade_bars + ([max(1, self.bars - self._open_bar)] if self._side != 0.0 else [])

    def daily_returns(self) -> np.ndarray:
        """Day-over-day equity changes as fractions of the initial equity (the last day included)."""
        return np.diff(np.asarray(self.day_close_equity + [self.equity])) / self.initial_equity

    def all_trade_pips(self) -> list[float]:
        """Closed trades, then the open one marked to market, if any."""
        marked = self.open_trade_pips()
        return self.trade_pnls_pips + ([marked] if marked is not None else [])

    def trade_returns(self) -> np.ndarray:
        """Trades' PnL (the open one marked) as fractions of initial equity (for Monte Carlo)."""
        return np.asarray(self.all_trade_pips()) * self.pip * self.trade_units / self.initial_equity

    @property
    def calendar_days(self) -> float:
        """First to last bar in days (at least one day once there is a bar)."""
        return 0.0 if self._first_ts is None else max(1.0, (self._last_ts - self._first_ts) / NS_PER_DAY)

    def summary(self) -> dict[str, float]:
        pnl = self.equity - self.initial_equity
        r = np.asarray(self.all_trade_pips())
        daily = np.diff(np.asarray(self.day_close_equity + [self.equity]))
        daily = daily / self.initial_equity
        wins, losses = r[r > 0].sum(), -r[r < 0].sum()
        downside = np.sqrt(np.mean(np.minimum(daily, 0.0) ** 2)) if len(daily) else 0.0
        return {
            "bars": self.bars,
            "decisions": self.decisions,
            "trades": len(r),
            "entries": self.entries,
            "open_units_at_end": self._units,
            "pnl": pnl,
            "pnl_pct": 100.0 * pnl / self.initial_equity,
            "pnl_pips": pnl / (self.pip * self.trade_units),
            "max_drawdown_pct": 100.0 * self.max_dd,
            "sharpe": _ratio(daily.mean() if len(daily) else 0.0, daily.std() if len(daily) > 1 else 0.0)
            * math.sqrt(252),
            "sortino": _ratio(daily.mean() if len(daily) else 0.0, downside) * math.sqrt(252),
            "sqn": _ratio(r.mean(), r.std(ddof=1)) * math.sqrt(len(r)) if len(r) > 1 else 0.0,
            "win_rate": float((r > 0).mean()) if len(r) else 0.0,
            "profit_factor": float(wins / losses) if losses > 0 else (math.inf if wins > 0 else 0.0),
            "expectancy_pips": float(r.mean()) if len(r) else 0.0,
            "hold_rate": self.holds / self.decisions if self.decisions else 1.0,
            "trades_per_day": len(r) / self._days_seen if self._days_seen else 0.0,
            "days": self._days_seen,
            "calendar_days": self.calendar_days,
            "open_trade_marked": int(self._side != 0.0),
            "long_pct": 100.0 * self.long_bars / self.bars if self.bars else 0.0,
            "short_pct": 100.0 * self.short_bars / self.bars if self.bars else 0.0,
            **self.risk,
        }


def annualised_pct(summary: dict[str, float]) -> float:
    """Return per calendar year (weekends count: they are part of the time the money was out)."""
    return summary["pnl_pct"] * 365.25 / max(summary["calendar_days"], 1.0)


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den > 1e-15 else 0.0


SUMMARY_ROWS = (
    ("bars", "bars", "{:.0f}"),
    ("decisions", "decisions", "{:.0f}"),
    ("entries", "entries", "{:.0f}"),
    ("trades", "trades (open one marked)", "{:.0f}"),
    ("open_units_at_end", "open at end (units)", "{:+,.0f}"),
    ("pnl_pips", "PnL (pips/unit)", "{:+.1f}"),
    ("pnl_pct", "PnL (%)", "{:+.3f}"),
    ("max_drawdown_pct", "max drawdown (%)", "{:.3f}"),
    ("sharpe", "Sharpe (daily, ann.)", "{:+.2f}"),
    ("sortino", "Sortino", "{:+.2f}"),
    ("sqn", "SQN", "{:+.2f}"),
    ("win_rate", "win rate", "{:.1%}"),
    ("profit_factor", "profit factor", "{:.2f}"),
    ("expectancy_pips", "expectancy (pips)", "{:+.2f}"),
    ("hold_rate", "hold rate", "{:.1%}"),
    ("trades_per_day", "trades/day", "{:.2f}"),
    ("long_pct", "bars long (%)", "{:.1f}"),
    ("short_pct", "bars short (%)", "{:.1f}"),
    ("flattens", "risk: flatten tier", "{:.0f}"),
    ("blocked_intents", "risk: intents blocked/cut", "{:.0f}"),
    ("halted_bars", "risk: bars halted", "{:.0f}"),
)


def too_few_trades(summary: dict[str, float]) -> str | None:
    """ "too few trades (n)" when trade-quality figures would mean nothing, else None."""
    n = int(summary.get("trades", 0))
    return f"too few trades ({n})" if n < MIN_TRADES_FOR_QUALITY else None


def format_summary(columns: dict[str, dict[str, float]]) -> str:
    """Side-by-side table of one or more summaries. Trade-quality rows say "too few trades
    (n)" for a column with fewer than MIN_TRADES_FOR_QUALITY trades."""
    names = list(columns)
    width = max(20, *(len(n) + 2 for n in names))
    lines = [f"{'':26}" + "".join(f"{n:>{width}}" for n in names)]
    for key, label, fmt in SUMMARY_ROWS:
        cells = []
        for n in names:
            v = columns[n].get(key)
            few = too_few_trades(columns[n]) if key in QUALITY_KEYS else None
            cells.append(f"{few or ('-' if v is None else fmt.format(v)):>{width}}")
        lines.append(f"{label:26}" + "".join(cells))
    return "\n".join(lines)
