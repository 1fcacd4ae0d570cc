"""The one execution and cost model: used by the trainer's environment and by the daemon's
paper broker, so a backtest, a training episode and a paper run fill identically.

An order decided at a bar close is worked against the quotes *after* the bar's closing
quote, no earlier than the closing quote's time plus the latency. Each quote fills at most
``liquidity_lots_per_quote`` lots (partial fills); buys pay the ask plus slippage, sells
receive the bid minus slippage; commission is charged per unit filled. Whatever is still
unfilled when the next bar closes is cancelled. Quotes the bar builder rejects are never
traded on (the same ``accepted`` mask is passed in).
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from stairway.core.config import ExecutionConfig, InstrumentConfig


@numba.njit(cache=True)
def work_order(
    remaining: float,
    ts: np.ndarray,
    bid: np.ndarray,
    ask: np.ndarray,
    accepted: np.ndarray,
    start: int,
    stop: int,
    not_before_ns: int,
    cap_units: float,
    slip: float,
    out_idx: np.ndarray,
    out_units: np.ndarray,
    out_price: np.ndarray,
    n_out: int,
) -> tuple[int, float]:
    """Fill up to ``remaining`` signed units against quotes [start, stop).

    Appends fills to the out arrays from position ``n_out``; returns (n_out, remaining).
    """
    i = start
    while i < stop and remaining != 0.0:
        if accepted[i] and ts[i] >= not_before_ns:
            q = min(abs(remaining), cap_units)
            if remaining > 0.0:
                out_units[n_out] = q
                out_price[n_out] = ask[i] + slip
                remaining -= q
            else:
                out_units[n_out] = -q
                out_price[n_out] = bid[i] - slip
                remaining += q
            if abs(remaining) < 1e-9:
                remaining = 0.0
            out_idx[n_out] = i
            n_out += 1
        i += 1
    return n_out, remaining


@numba.njit(cache=True, inline="always")
def target_units(action: int, current: float, trade_units: float) -> float:
    """Target-position semantics: BUY -> +size, SELL -> -size, CLOSE -> 0, HOLD -> unchanged."""
    if action == 1:
        return trade_units
    if action == 2:
        return -trade_units
    if action == 3:
        return 0.0
    return current


@dataclass(frozen=True)
class ExecutionModel:
    """Execution parameters in price units and units, derived from the config."""

    pip: float
    lot_units: float
    commission_per_unit: float
    slippage: float
    latency_ns: int
    cap_units: float
    max_position_units: float
    trade_units: float

    @classmethod
    def from_config(cls, ex: ExecutionConfig, inst: InstrumentConfig) -> ExecutionModel:
        return cls(
            pip=inst.pip_size,
            lot_units=inst.lot_units,
            commission_per_unit=ex.commission_pips * inst.pip_size,
            slippage=ex.slippage_pips * inst.pip_size,
            latency_ns=int(round(ex.latency_ms * 1e6)),
            cap_units=ex.liquidity_lots_per_quote * inst.lot_units,
            max_position_units=ex.max_position_lots * inst.lot_units,
            trade_units=ex.trade_lots * inst.lot_units,
        )

    def commission(self, units: float) -> float:
        return abs(units) * self.commission_per_unit
