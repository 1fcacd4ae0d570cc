"""Ticks to bars, on arrays.

A bar covers ``[t, t + period)`` aligned to the epoch and closes when the first accepted
quote at or after its end arrives (that quote is the bar's *closing quote*; a decision is
executed only at a quote after it). Quotes are rejected and counted, never merged, when
they are bad (NaN, infinite, zero or negative, crossed: bid > ask), out of order (earlier
than the last accepted quote), exact duplicates of the last accepted quote, or implausible
jumps: a mid price more than ``max_jump`` (a fraction, e.g. 0.1 = 10 %) away from the last
accepted mid, either way. A jump is taken as a real move, and accepted, only when
``jump_confirm`` quotes in a row agree with each other at the new level (the earlier ones stay
rejected): one bad print never moves a bar, and a real gap does not lock the feed out.

The kernel works on a whole batch of ticks; Python runs once per batch, not per tick.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from stairway.core.types import BAR_DTYPE

PRICE_ASK, PRICE_BID, PRICE_MID = 0, 1, 2
PRICE_MODES = {"ask": PRICE_ASK, "bid": PRICE_BID, "mid": PRICE_MID}

# float state layout; timestamps live in the int64 ``istate`` because nanosecond epochs
# (~1.5e18) are far beyond float64's exact integers (2**53).
S_O, S_H, S_L, S_C, S_N, S_LAST_BID, S_LAST_ASK, S_PEND = range(8)
STATE_SIZE = 8
I_HAS_BAR, I_BAR_TS, I_HAS_LAST, I_LAST_TS, I_PEND_N = range(5)
ISTATE_SIZE = 5
# counters layout (int64)
C_ACCEPTED, C_BAD, C_OUT_OF_ORDER, C_DUPLICATE, C_JUMP = range(5)
N_COUNTS = 5
DEFAULT_MAX_JUMP = 0.10
DEFAULT_JUMP_CONFIRM = 3


@numba.njit(cache=True, inline="always")
def is_jump(p: float, ref: float, max_jump: float) -> bool:
    """True when ``p`` lies more than ``max_jump`` (relative) above or below ``ref``."""
    return p > ref * (1.0 + max_jump) or p * (1.0 + max_jump) < ref


@numba.njit(cache=True, inline="always")
def quote_is_valid(bid: float, ask: float) -> bool:
    """True for a usable quote: finite, positive and not crossed. NaN fails every test."""
    return bid > 0.0 and ask > 0.0 and bid <= ask and ask < np.inf


@numba.njit(cache=True, inline="always")
def _step(
    t: int,
    b: float,
    a: float,
    period_ns: int,
    mode: int,
    state: np.ndarray,
    istate: np.ndarray,
    counts: np.ndarray,
    max_jump: float,
    jump_confirm: int,
    out_ts: np.ndarray,
    out_ohlcv: np.ndarray,
    out_last_quote: np.ndarray,
    out_last_ts: np.ndarray,
    n_out: int,
) -> int:
    """One quote: -1 rejected (counted), 0 accepted, 1 accepted after closing the open bar
    (written at row ``n_out`` of the outputs). The one place the rules live."""
    if not quote_is_valid(b, a):
        counts[C_BAD] += 1
        return -1
    if istate[I_HAS_LAST] != 0:
        last = istate[I_LAST_TS]
        if t < last:
            counts[C_OUT_OF_ORDER] += 1
            return -1
        if t == last and b == state[S_LAST_BID] and a == state[S_LAST_ASK]:
            counts[C_DUPLICATE] += 1
            return -1
        m = 0.5 * (a + b)
        if is_jump(m, 0.5 * (state[S_LAST_BID] + state[S_LAST_ASK]), max_jump):
            if istate[I_PEND_N] > 0 and not is_jump(m, state[S_PEND], max_jump):
                istate[I_PEND_N] += 1
            else:  # a new candidate level
                istate[I_PEND_N] = 1
                state[S_PEND] = m
            if istate[I_PEND_N] < jump_confirm:
                counts[C_JUMP] += 1
                return -1
        istate[I_PEND_N] = 0
    if mode == 0:
        p = a
    elif mode == 1:
        p = b
    else:
        p = 0.5 * (a + b)
    bucket = t - t % period_ns
    closed = 0
    if istate[I_HAS_BAR] != 0 and istate[I_BAR_TS] != bucket:
        out_ts[n_out] = istate[I_BAR_TS]
        out_ohlcv[n_out, 0] = state[S_O]
        out_ohlcv[n_out, 1] = state[S_H]
        out_ohlcv[n_out, 2] = state[S_L]
        out_ohlcv[n_out, 3] = state[S_C]
        out_ohlcv[n_out, 4] = state[S_N]
        out_last_quote[n_out, 0] = state[S_LAST_BID]
        out_last_quote[n_out, 1] = state[S_LAST_ASK]
        out_last_ts[n_out] = istate[I_LAST_TS]
        closed = 1
        istate[I_HAS_BAR] = 0
    if istate[I_HAS_BAR] == 0:
        istate[I_HAS_BAR] = 1
        istate[I_BAR_TS] = bucket
        state[S_O] = p
        state[S_H] = p
        state[S_L] = p
        state[S_C] = p
        state[S_N] = 1.0
    else:
        if p > state[S_H]:
            state[S_H] = p
        if p < state[S_L]:
            state[S_L] = p
        state[S_C] = p
        state[S_N] += 1.0
    istate[I_HAS_LAST] = 1
    istate[I_LAST_TS] = t
    state[S_LAST_BID] = b
    state[S_LAST_ASK] = a
    counts[C_ACCEPTED] += 1
    return closed


@numba.njit(cache=True)
def build_bars_kernel(
    ts: np.ndarray,
    bid: np.ndarray,
    ask: np.ndarray,
    period_ns: int,
    mode: int,
    state: np.ndarray,
    istate: np.ndarray,
    counts: np.ndarray,
    out_ts: np.ndarray,
    out_ohlcv: np.ndarray,
    out_close_idx: np.ndarray,
    out_last_quote: np.ndarray,
    out_last_ts: np.ndarray,
    accepted: np.ndarray,
    max_jump: float,
    jump_confirm: int,
) -> int:
    n_out = 0
    for i in range(ts.shape[0]):
        r = _step(
            ts[i], bid[i], ask[i], period_ns, mode, state, istate, counts, max_jump, jump_confirm,
            out_ts, out_ohlcv, out_last_quote, out_last_ts, n_out,
        )  # fmt: skip
        accepted[i] = r >= 0
        if r == 1:
            out_close_idx[n_out] = i
            n_out += 1
    return n_out


# push_one's packed buffers: every float and every integer the step reads or writes, in one
# array each (a kernel call's cost grows with its argument count; these are 5, not 15). The
# builder's state, istate and counts are views into them, so push and push_one share state.
F_STATE = 0  # STATE_SIZE floats
F_MAX_JUMP = F_STATE + STATE_SIZE
F_OUT_OHLCV = F_MAX_JUMP + 1  # 5: the closed bar
F_OUT_LAST = F_OUT_OHLCV + 5  # 2: its last bid, ask
F_SIZE = F_OUT_LAST + 2
J_ISTATE = 0  # ISTATE_SIZE ints
J_COUNTS = J_ISTATE + ISTATE_SIZE  # N_COUNTS
J_PERIOD, J_MODE, J_CONFIRM = J_COUNTS + N_COUNTS, J_COUNTS + N_COUNTS + 1, J_COUNTS + N_COUNTS + 2
J_OUT_TS, J_OUT_LAST_TS = J_CONFIRM + 1, J_CONFIRM + 2  # the closed bar's time, its last quote's
J_SIZE = J_OUT_LAST_TS + 1


@numba.njit(cache=True)
def push_one_kernel(t: int, b: float, a: float, f: np.ndarray, j: np.ndarray) -> int:
    """_step on the packed buffers (BarBuilder.push_one)."""
    return _step(
        t, b, a, j[J_PERIOD], j[J_MODE], f[F_STATE:F_MAX_JUMP], j[J_ISTATE:J_COUNTS], j[J_COUNTS:J_PERIOD],
        f[F_MAX_JUMP], j[J_CONFIRM], j[J_OUT_TS:J_OUT_TS + 1], f[F_OUT_OHLCV:F_SIZE].reshape((1, 7))[:, 0:5],
        f[F_OUT_LAST:F_SIZE].reshape((1, 2)), j[J_OUT_LAST_TS:J_SIZE], 0,
    )  # fmt: skip


@dataclass
class ClosedBars:
    """Bars closed by one batch. ``close_idx[k]`` is the batch index of the quote that closed
    bar k; ``last_bid``/``last_ask`` are the bar's own last accepted quote (used to mark
    positions at the close without looking at the closing quote)."""

    bars: np.ndarray
    close_idx: np.ndarray
    last_bid: np.ndarray
    last_ask: np.ndarray
    accepted: np.ndarray
    last_ts: np.ndarray  # time of each bar's last accepted quote

    def __len__(self) -> int:
        return len(self.bars)


class BarBuilder:
    """Stateful wrapper around the kernel; one per instrument. ``int`` timestamps in UTC ns."""

    def __init__(
        self,
        period_ns: int,
        price: str = "mid",
        max_jump: float = DEFAULT_MAX_JUMP,
        jump_confirm: int = DEFAULT_JUMP_CONFIRM,
    ) -> None:
        if period_ns <= 0:
            raise ValueError(f"bar period must be positive, got {period_ns} ns")
        if price not in PRICE_MODES:
            raise ValueError(f"bar price must be one of {sorted(PRICE_MODES)}, not {price!r}")
        if not max_jump > 0 or jump_confirm < 2:
            raise ValueError(f"max_jump must be > 0 and jump_confirm >= 2, got {max_jump}, {jump_confirm}")
        self.period_ns = int(period_ns)
        self.mode = PRICE_MODES[price]
        self.max_jump, self.jump_confirm = float(max_jump), int(jump_confirm)
        # one float and one integer buffer (push_one's arguments); the state push reads is views of them
        self._f = np.zeros(F_SIZE)
        self._j = np.zeros(J_SIZE, dtype=np.int64)
        self._f[F_MAX_JUMP] = self.max_jump
        self._j[[J_PERIOD, J_MODE, J_CONFIRM]] = self.period_ns, self.mode, self.jump_confirm
        self.state = self._f[F_STATE:F_MAX_JUMP]
        self.istate = self._j[J_ISTATE:J_COUNTS]
        self.counts = self._j[J_COUNTS:J_PERIOD]

    @property
    def accepted(self) -> int:
        return int(self.counts[C_ACCEPTED])

    @property
    def rejected_bad(self) -> int:
        return int(self.counts[C_BAD])

    @property
    def rejected_out_of_order(self) -> int:
        return int(self.counts[C_OUT_OF_ORDER])

    @property
    def rejected_duplicate(self) -> int:
        return int(self.counts[C_DUPLICATE])

    @property
    def rejected_jump(self) -> int:
        return int(self.counts[C_JUMP])

    @property
    def rejected(self) -> int:
        """Every quote not used, whatever the reason."""
        return int(self.counts[C_BAD] + self.counts[C_OUT_OF_ORDER] + self.counts[C_DUPLICATE] + self.counts[C_JUMP])

    def push(self, ticks: np.ndarray) -> ClosedBars:
        n = len(ticks)
        # At most one bar closes per bucket boundary crossed: bound the outputs by the time
        # span (from the open bar, or the batch's earliest quote) instead of one per quote.
        m = n
        if n:
            ts_all = ticks["ts_ns"]
            lo = int(ts_all.min())
            if self.istate[I_HAS_BAR]:
                lo = min(lo, int(self.istate[I_BAR_TS]))
            span = int(ts_all.max()) - lo
            if span >= 0:
                m = min(n, span // self.period_ns + 2)
        out_ts = np.empty(m, dtype=np.int64)
        out_ohlcv = np.empty((m, 5))
        out_close = np.empty(m, dtype=np.int64)
        out_last = np.empty((m, 2))
        out_last_ts = np.empty(m, dtype=np.int64)
        accepted = np.empty(n, dtype=np.bool_)
        k = build_bars_kernel(
            np.ascontiguousarray(ticks["ts_ns"]),
            np.ascontiguousarray(ticks["bid"]),
            np.ascontiguousarray(ticks["ask"]),
            self.period_ns,
            self.mode,
            self.state,
            self.istate,
            self.counts,
            out_ts,
            out_ohlcv,
            out_close,
            out_last,
            out_last_ts,
            accepted,
            self.max_jump,
            self.jump_confirm,
        )
        return ClosedBars(
            _to_bars(out_ts[:k], out_ohlcv[:k]),
            out_close[:k],
            out_last[:k, 0].copy(),
            out_last[:k, 1].copy(),
            accepted,
            out_last_ts[:k].copy(),
        )

    def push_one(self, ts_ns: int, bid: float, ask: float) -> int:
        """One quote, as ``push`` would take it in a batch of one, without allocating: -1
        rejected, 0 accepted, 1 accepted after closing the open bar (``last_closed``)."""
        return push_one_kernel(ts_ns, bid, ask, self._f, self._j)

    def last_closed(self) -> tuple[tuple[int, float, float, float, float, float], float, float, int]:
        """The bar the last ``push_one`` closed: ((ts, o, h, l, c, volume), its last bid, ask, quote time)."""
        o, h, lo, c, v, b, a = self._f[F_OUT_OHLCV:F_SIZE].tolist()
        return (int(self._j[J_OUT_TS]), o, h, lo, c, v), b, a, int(self._j[J_OUT_LAST_TS])

    def flush(self) -> np.ndarray:
        """Close the open bar at the end of the data (no closing quote exists)."""
        if self.istate[I_HAS_BAR] == 0:
            return np.empty(0, dtype=BAR_DTYPE)
        s = self.state
        bar = _to_bars(np.array([self.istate[I_BAR_TS]]), np.array([[s[S_O], s[S_H], s[S_L], s[S_C], s[S_N]]]))
        self.istate[I_HAS_BAR] = 0
        return bar


def _to_bars(ts: np.ndarray, ohlcv: np.ndarray) -> np.ndarray:
    bars = np.empty(len(ts), dtype=BAR_DTYPE)
    bars["ts_ns"] = ts
    for j, name in enumerate(("open", "high", "low", "close", "volume")):
        bars[name] = ohlcv[:, j]
    return bars
