import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stairway.core.config import ExecutionConfig, InstrumentConfig
from stairway.core.execution import ExecutionModel, price_bound, work_order
from stairway.core.position import PS_AVG, PS_REALIZED, PS_UNITS, apply_fill, equity, new_state, unrealized
from stairway.core.types import Action

EX = ExecutionModel.from_config(ExecutionConfig(liquidity_lots_per_quote=0.4, latency_ms=250), InstrumentConfig())


def quotes(n, start=1.1000, step=0.0001, dt_ms=100):
    ts = np.arange(n, dtype=np.int64) * dt_ms * 10**6
    ask = start + step * np.arange(n)
    return ts, ask - 0.0001, ask, np.ones(n, dtype=np.bool_)


def run(units, ts, bid, ask, acc, start, stop, not_before, bound=np.nan):
    out = (np.empty(64, np.int64), np.empty(64), np.empty(64))
    n, rem, bounded = work_order(
        units, ts, bid, ask, acc, start, stop, not_before, EX.cap_units, EX.slippage, *out, 0, bound
    )
    assert not bounded  # no bound given
    return out[0][:n], out[1][:n], out[2][:n], rem


def test_a_bounded_order_fills_up_to_its_bound_and_the_rest_is_cancelled():
    """Issue 21 §2: a buy never pays more than its bound, a sell never gets less; the quote
    that would breach it cancels the remainder (OANDA's BOUNDS_VIOLATION), nothing later fills."""
    ts, bid, ask, acc = quotes(20)  # the ask rises a pip a quote
    ref_bid, ref_ask = bid[0], ask[0]
    bound = price_bound(1.0, ref_bid, ref_ask, 2.5e-4)  # 2.5 pips above the decision's ask
    out = (np.empty(64, np.int64), np.empty(64), np.empty(64))
    n, rem, bounded = work_order(100_000.0, ts, bid, ask, acc, 1, 20, 0, 40_000.0, 0.5e-4, *out, 0, bound)
    assert out[0][:n].tolist() == [1, 2] and out[1][:n].tolist() == [40_000.0, 40_000.0]  # quote 3: 3.5 pips over
    assert (out[2][:n] <= bound).all() and rem == 0.0 and bounded
    falling = (ts, bid[::-1].copy(), ask[::-1].copy(), acc)
    bound = price_bound(-1.0, falling[1][0], falling[2][0], 2.5e-4)
    n, rem, bounded = work_order(-100_000.0, *falling, 1, 20, 0, 40_000.0, 0.5e-4, *out, 0, bound)
    assert n == 2 and (out[2][:n] >= bound).all() and bounded
    # within the bound all the way: filled, not bounded; no tolerance: no bound at all
    n, rem, bounded = work_order(80_000.0, ts, bid, ask, acc, 1, 20, 0, 40_000.0, 0.0, *out, 0, ask[0] + 1e-3)
    assert n == 2 and rem == 0.0 and not bounded
    assert np.isnan(price_bound(1.0, 1.1, 1.1001, 0.0)) and np.isnan(price_bound(-1.0, 1.1, 1.1001, 0.0))


def test_work_order_respects_latency_cap_slippage_and_rejected_quotes():
    ts, bid, ask, acc = quotes(20)
    acc[4] = False  # a quote the bar builder rejected
    idx, units, price, rem = run(100_000.0, ts, bid, ask, acc, 1, 20, ts[0] + EX.latency_ns)
    assert idx.tolist() == [3, 5, 6]  # not before 250 ms (index 3), never the rejected quote 4
    assert units.tolist() == [40_000.0, 40_000.0, 20_000.0]  # 0.4-lot liquidity cap per quote
    assert np.allclose(price, ask[idx] + EX.slippage)  # buys pay ask + slippage
    assert rem == 0.0


def test_work_order_sell_gets_bid_minus_slippage_and_remainder_left_when_quotes_run_out():
    ts, bid, ask, acc = quotes(6)
    idx, units, price, rem = run(-200_000.0, ts, bid, ask, acc, 4, 6, 0)
    assert idx.tolist() == [4, 5] and units.tolist() == [-40_000.0, -40_000.0]
    assert np.allclose(price, bid[idx] - EX.slippage)
    assert rem == pytest.approx(-120_000.0)


def test_target_semantics():
    from stairway.core.execution import target_units

    u = EX.trade_units

    def order(action, cur):
        return target_units(int(action), cur, u) - cur

    assert order(Action.BUY, 0.0) == u
    assert order(Action.BUY, -u) == 2 * u  # reverse
    assert order(Action.SELL, u) == -2 * u
    assert order(Action.CLOSE, -u) == u
    assert order(Action.HOLD, u) == 0.0
    assert order(Action.BUY, u) == 0.0


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from([-2.0, -1.0, -0.5, 0.5, 1.0, 2.0]), st.floats(1.0, 1.2)), min_size=1, max_size=30
    )
)
def test_position_accounting_equals_cash_flows(fills):
    """Equity from avg-price accounting == initial + cash flows + position value, always."""
    st_ = new_state()
    cash, units = 0.0, 0.0
    for lots, price in fills:
        u = lots * 100_000
        comm = abs(u) * EX.commission_per_unit
        apply_fill(st_, u, price, comm)
        cash -= u * price + comm
        units += u
    assert st_[PS_UNITS] == pytest.approx(units, abs=1e-6)
    bid, ask = 1.1, 1.1002
    mark = bid if units > 0 else ask
    assert equity(st_, bid, ask, 1000.0) == pytest.approx(1000.0 + cash + units * mark, abs=1e-6)
    if abs(units) < 1e-6:  # flat: everything is realised
        assert unrealized(st_, bid, ask) == 0.0 and st_[PS_AVG] == 0.0
        assert st_[PS_REALIZED] == pytest.approx(cash, abs=1e-6)


def test_a_trailing_stop_is_armed_at_the_fill_quote_follows_the_price_and_never_backs_off():
    """execution.stop_trailing (OANDA trailingStopLossOnFill): a long's stop is armed at the fill
    quote's bid less the distance, rises with the bid, stays when the bid falls, and fills at
    the first bid at or below it; a short's mirrors it at the ask."""
    from stairway.core.execution import work_quotes

    bid = np.array([1.1000, 1.1010, 1.1030, 1.1020, 1.1015, 1.1009, 1.1005])
    ask = bid + 0.0001
    ts, acc = np.arange(7, dtype=np.int64) * 10**9, np.ones(7, np.bool_)
    out = (np.empty(8, np.int64), np.empty(8), np.empty(8), np.empty(8))
    n, units, rem, stop, bounded, trail = work_quotes(
        0.0, 1000.0, 1.0990, 0.0, ts, bid, ask, acc, 0, 4, 0, 1e9, 0.0, np.nan, *out, 0, 0.0020, 0.0
    )
    assert (n, units, rem, trail) == (1, 1000.0, 0.0, 0.0020)  # filled at the first quote
    assert stop == pytest.approx(1.1030 - 0.0020)  # armed at 1.0980, trailed up to the high bid 1.1030
    n, units, rem, stop2, bounded, trail = work_quotes(
        units, 0.0, 0.0, stop, ts, bid, ask, acc, 4, 7, 0, 1e9, 0.0, np.nan, *out, 0, 0.0, trail
    )
    assert stop2 == 0.0 and units == 0.0 and n == 1 and out[3][0] == 1.0  # the stop closed it
    assert out[0][0] == 5 and out[2][0] == pytest.approx(1.1009)  # the first bid at or below 1.1010, not before
    # a short: armed at the fill quote's ask plus the distance, follows the ask down
    n, units, rem, stop, bounded, trail = work_quotes(
        0.0, -1000.0, 1.2, 0.0, ts, 2.2 - bid[::-1] - 0.0001, 2.2 - bid[::-1], acc, 0, 3, 0, 1e9, 0.0, np.nan,
        *out, 0, 0.0020, 0.0,
    )  # fmt: skip
    assert units == -1000.0 and stop == pytest.approx(min(2.2 - bid[::-1][:3]) + 0.0020)
