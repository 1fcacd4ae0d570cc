import pytest
from hypothesis import given
from hypothesis import strategies as st

from stairway.core.broker import PositionReport
from stairway.daemon.reconciliation import UnknownPositionPolicy as P
from stairway.daemon.reconciliation import excess_over_limit, reconcile


def rep(inst, units):
    return PositionReport(inst, units, 1.1)


def test_agreement_needs_no_correction():
    assert reconcile({"EUR_USD": 1000.0}, [rep("EUR_USD", 1000.0)], P.ADOPT) == []


def test_unknown_position_adopted_or_flattened_by_policy():
    [a] = reconcile({}, [rep("EUR_USD", 500.0)], P.ADOPT)
    assert (a.kind, a.order_units, a.book_units) == ("adopt_unknown", 0.0, 500.0)
    [f] = reconcile({}, [rep("EUR_USD", 500.0)], P.FLATTEN)
    assert (f.kind, f.order_units) == ("flatten_unknown", -500.0)


def test_position_gone_at_broker_closed_internally_and_partial_close_adopted():
    [c] = reconcile({"EUR_USD": 1000.0}, [], P.ADOPT)
    assert (c.kind, c.book_units, c.order_units) == ("close_missing", 0.0, 0.0)
    [s] = reconcile({"EUR_USD": 1000.0}, [rep("EUR_USD", 400.0)], P.FLATTEN)  # manual partial close
    assert (s.kind, s.book_units) == ("adopt_size", 400.0)


def test_broker_reports_per_trade_are_summed():
    assert reconcile({"EUR_USD": 300.0}, [rep("EUR_USD", 100.0), rep("EUR_USD", 200.0)], P.ADOPT) == []


@given(
    st.dictionaries(st.sampled_from(["A", "B", "C"]), st.integers(-5, 5).map(float)),
    st.dictionaries(st.sampled_from(["A", "B", "C"]), st.integers(-5, 5).map(float)),
    st.sampled_from(list(P)),
)
def test_after_corrections_book_plus_orders_equal_the_broker(book, broker, policy):
    reports = [rep(k, v) for k, v in broker.items()]
    fixed = dict(book)
    for c in reconcile(book, reports, policy):
        fixed[c.instrument] = c.book_units
        if c.order_units:  # a flatten order makes the broker (and then us) flat
            broker[c.instrument] = broker.get(c.instrument, 0.0) + c.order_units
            fixed[c.instrument] += c.order_units
    for inst in set(fixed) | set(broker):
        assert fixed.get(inst, 0.0) == pytest.approx(broker.get(inst, 0.0))


def test_emergency_size_check():
    assert excess_over_limit(100_000.0, 100_000.0, "X") is None
    c = excess_over_limit(-250_000.0, 100_000.0, "X")
    assert c.kind == "flatten_excess" and c.order_units == 150_000.0
