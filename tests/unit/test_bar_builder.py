import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stairway.core.bar_builder import BarBuilder
from stairway.core.bar_files import load_bars
from stairway.core.bar_ticks import TICKS_PER_BAR, bars_to_ticks
from stairway.core.types import TICK_DTYPE
from tests.helpers import EURUSD, reference_bars, usdthb_ticks

MIN = 60 * 10**9

quote = st.tuples(
    st.integers(0, 40),  # timestamp step in seconds (0 = same time)
    st.sampled_from([1.0, 1.0, 1.0, 1.0, 0.0, -1.0, float("nan"), float("inf")]),  # bid validity
    st.floats(1.0, 2.0),  # mid
    st.floats(0.0, 0.01),  # spread
    st.booleans(),  # crossed
    st.booleans(),  # go back in time
    st.booleans(),  # repeat the previous quote exactly
)


def make_ticks(spec):
    out, t, prev = [], 1_500_000_000 * 10**9, None
    for step, valid, mid, spread, crossed, back, repeat in spec:
        if repeat and prev is not None:
            out.append(prev)
            continue
        t = t - 30 * 10**9 if back else t + step * 10**9
        bid, ask = mid - spread / 2, mid + spread / 2
        if crossed and spread > 0:
            bid, ask = ask, bid
        if valid != 1.0:
            bid = valid if valid != float("inf") else bid
            ask = ask if valid != float("inf") else valid
        prev = (t, bid, ask)
        out.append(prev)
    return np.array(out, dtype=TICK_DTYPE)


@settings(max_examples=150, deadline=None)
@given(st.lists(quote, min_size=1, max_size=300), st.integers(1, 50))
def test_bar_builder_matches_reference_and_conserves_ticks(spec, chunk):
    ticks = make_ticks(spec)
    b = BarBuilder(MIN, "mid")
    bars = []
    for s in range(0, len(ticks), chunk):  # any batching gives the same bars
        bars.extend(b.push(ticks[s : s + chunk]).bars.tolist())
    tail = b.flush().tolist()
    ref, ref_open, counts = reference_bars(ticks, MIN, "mid")
    assert [tuple(x) for x in bars] == [tuple(map(float, r)) for r in ref]
    assert [tuple(x) for x in tail] == ([tuple(map(float, ref_open))] if ref_open else [])
    assert (b.accepted, b.rejected_bad, b.rejected_out_of_order, b.rejected_duplicate, b.rejected_jump) == (
        counts["accepted"],
        counts["bad"],
        counts["ooo"],
        counts["dup"],
        counts["jump"],
    )
    assert b.accepted + b.rejected == len(ticks)
    all_bars = bars + tail
    assert sum(x[5] for x in all_bars) == b.accepted  # volume = accepted tick count
    for ts, o, h, lo, c, _ in all_bars:
        assert lo <= min(o, c) and max(o, c) <= h and ts % MIN == 0
    assert all(np.diff([x[0] for x in all_bars]) > 0)


def test_bar_builder_usdthb_rejects_bad_and_out_of_order_quotes():
    ticks = usdthb_ticks()
    b = BarBuilder(60 * MIN, "mid")
    closed = b.push(ticks)
    ref, _, counts = reference_bars(ticks, 60 * MIN, "mid")
    assert b.rejected_bad == 1  # ask = 0 on 1997-06-26 00:58
    assert b.rejected_out_of_order == counts["ooo"] >= 1  # the DELAY=48 quote
    assert b.rejected_duplicate == counts["dup"]
    assert len(closed) == len(ref)
    assert not closed.accepted[2786]  # the ask = 0 quote is never accepted
    assert np.all(closed.bars["low"] > 20.0)  # its midpoint (12.65) never reached a bar
    assert closed.close_idx.tolist() == sorted(closed.close_idx.tolist())


def test_bar_builder_rebuilds_bar_file_exactly_from_bar_derived_ticks():
    bars, _ = load_bars(EURUSD)
    ticks = bars_to_ticks(bars[:500], 60 * MIN, "ask", 1e-4)
    b = BarBuilder(60 * MIN, "ask")
    closed = b.push(ticks)
    rebuilt = np.concatenate([closed.bars, b.flush()])
    for f in ("ts_ns", "open", "high", "low", "close"):
        assert np.array_equal(rebuilt[f], bars[:500][f])
    assert np.all(ticks["ask"] - ticks["bid"] > 0)
    # each bar closes on the next bar's first quote
    assert closed.close_idx.tolist() == [TICKS_PER_BAR * (k + 1) for k in range(499)]


# -- issue 9.6: implausible prices -------------------------------------------------------


def _quotes(mids, start=1_506_902_400 * 10**9, step=MIN // 4):
    t = np.zeros(len(mids), dtype=TICK_DTYPE)
    t["ts_ns"] = start + np.arange(len(mids), dtype=np.int64) * step
    t["bid"] = np.asarray(mids, dtype=float) - 5e-5
    t["ask"] = np.asarray(mids, dtype=float) + 5e-5
    return t


def test_single_spikes_are_rejected_counted_and_never_reach_a_bar():
    mids = [1.17, 1.1701, 117.0, 1.1702, 1e300, 1.1703, 0.0117, 1.1704] * 8  # x100, 1e300, /100
    b = BarBuilder(MIN, "mid")
    closed = b.push(_quotes(mids))
    bars = np.concatenate([closed.bars, b.flush()])
    assert b.rejected_jump == 3 * 8 and b.rejected_bad == 0
    assert bars["high"].max() < 1.171 and bars["low"].min() > 1.169
    assert not closed.accepted[2] and not closed.accepted[6]


def test_a_real_gap_is_accepted_once_confirmed():
    mids = [1.17] * 4 + [1.40, 1.401, 1.402, 1.403] + [1.404] * 4  # a +20 % level that persists
    b = BarBuilder(MIN, "mid", max_jump=0.10, jump_confirm=3)
    closed = b.push(_quotes(mids))
    assert b.rejected_jump == 2  # the first two quotes at the new level, then it is a move
    assert closed.accepted.tolist() == [True] * 4 + [False, False, True, True] + [True] * 4
    bars = np.concatenate([closed.bars, b.flush()])
    assert bars["close"][-1] == pytest.approx(1.404)


def test_jump_threshold_is_configurable():
    mids = [1.0, 1.06, 1.0]
    assert BarBuilder(MIN, "mid", max_jump=0.10).push(_quotes(mids)).accepted.all()
    assert BarBuilder(MIN, "mid", max_jump=0.05).push(_quotes(mids)).accepted.tolist() == [True, False, True]
    with pytest.raises(ValueError):
        BarBuilder(MIN, "mid", max_jump=0.0)


# -- issue 10.1: the order of a bar's extremes never depends on its own close -------------


def test_extreme_order_ignores_the_bars_close():
    from stairway.core.bar_ticks import bar_paths

    rng = np.random.default_rng(1)
    o = 1.1 + rng.normal(0, 1e-3, 500)
    h = o + rng.uniform(0, 2e-3, 500)
    lo = o - rng.uniform(0, 2e-3, 500)
    c1 = lo + rng.uniform(0, 1, 500) * (h - lo)
    c2 = lo + rng.uniform(0, 1, 500) * (h - lo)
    a, b = bar_paths(o, h, lo, c1), bar_paths(o, h, lo, c2)
    assert np.array_equal(a[:, :4], b[:, :4])  # only the close itself moves
    assert np.array_equal(a[:, 1], o)  # the quote a decision at the previous close fills at: the open
    assert np.all(np.abs(a[:, 2] - o) <= np.abs(a[:, 3] - o))  # the nearer extreme comes first
    old_a, old_b = bar_paths(o, h, lo, c1, "close_decides"), bar_paths(o, h, lo, c2, "close_decides")
    assert not np.array_equal(old_a[:, 1], old_b[:, 1])  # the rule it replaces looked at the close


def test_one_quote_at_a_time_builds_what_a_batch_builds_real_quotes_with_bad_ones():
    """Issue 23 §4: push_one (the live path, no allocation) and push (batches) share one
    kernel step: on the real USD/THB quotes (a zero ask, an out-of-order quote, duplicates)
    and a confirmed jump, the same bars, closing quotes, last quotes and counters."""
    ticks = usdthb_ticks()
    jump = ticks[-8:].copy()  # four quotes 15 % up: the first rejected, then accepted as a level
    jump["ts_ns"] = ticks["ts_ns"][-1] + np.arange(1, 9) * MIN
    jump["bid"], jump["ask"] = ticks["bid"][-1] * 1.15, ticks["ask"][-1] * 1.15
    ticks = np.concatenate([ticks, jump])
    batch, one = BarBuilder(60 * MIN, "mid"), BarBuilder(60 * MIN, "mid")
    closed = batch.push(ticks)
    got, idx, codes = [], [], []
    for i, (ts, bid, ask) in enumerate(ticks.tolist()):
        r = one.push_one(ts, bid, ask)
        codes.append(r)
        if r == 1:
            got.append(one.last_closed())
            idx.append(i)
    assert idx == closed.close_idx.tolist() and len(idx) > 100
    assert [g[0] for g in got] == closed.bars.tolist()
    assert [(g[1], g[2], g[3]) for g in got] == list(
        zip(closed.last_bid.tolist(), closed.last_ask.tolist(), closed.last_ts.tolist())
    )
    assert [c >= 0 for c in codes] == closed.accepted.tolist()
    assert one.counts.tolist() == batch.counts.tolist() and batch.rejected_jump >= 1


def test_batches_and_single_quotes_interleaved_on_one_builder_build_what_one_batch_builds():
    """push_one's packed buffers and push's state are the same memory: a live feed that hands
    over a backfill batch between single quotes continues the same open bar."""
    ticks = usdthb_ticks()
    whole, mixed = BarBuilder(60 * MIN, "mid"), BarBuilder(60 * MIN, "mid")
    expect = whole.push(ticks).bars.tolist()
    got, i = [], 0
    for k, n in enumerate([1, 5, 1, 1, 37, 1] * (len(ticks) // 46 + 1)):
        part = ticks[i : i + n]
        i += n
        if not len(part):
            break
        if k % 2 == 0:  # single quotes, one at a time
            for ts, bid, ask in part.tolist():
                if mixed.push_one(ts, bid, ask) == 1:
                    got.append(mixed.last_closed()[0])
        else:
            got += mixed.push(part).bars.tolist()
    assert got == expect and len(got) > 100
    assert mixed.counts.tolist() == whole.counts.tolist() and mixed.state.tolist() == whole.state.tolist()
