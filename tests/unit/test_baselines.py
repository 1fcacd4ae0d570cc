"""Issue 10 §2: baselines through the same env and costs, random entries with the policy's
activity, and block-bootstrap intervals."""

import numpy as np
import pytest

from stairway.core.bar_files import load_bars
from stairway.core.execution import ExecutionModel
from stairway.core.types import Action
from stairway.trainer.baselines import block_bootstrap, compare, random_entry_actions, sma_actions
from stairway.trainer.evaluation import run_evaluation
from stairway.trainer.history import history_from_bars
from tests.helpers import EURUSD


def test_sma_decision_never_sees_a_later_close():
    closes = 1.1 + np.cumsum(np.random.default_rng(0).normal(0, 1e-3, 300))
    a = sma_actions(closes, 0, 299, 5, 20, long_flat=False)
    for i in (30, 120, 250):
        spoiled = closes.copy()
        spoiled[i + 1 :] *= 1.5
        assert np.array_equal(sma_actions(spoiled, 0, 299, 5, 20, False)[: i + 1], a[: i + 1])
    assert set(a[:19].tolist()) == {Action.HOLD}  # no decision before the slow window has filled
    lf = sma_actions(closes, 0, 299, 5, 20, long_flat=True)
    assert Action.SELL not in lf.tolist() and Action.CLOSE in lf.tolist()


def test_random_entries_keep_the_policys_trade_count_and_holding_times():
    holds = [3, 10, 1, 7, 25]
    rng = np.random.default_rng(5)
    for _ in range(50):
        a = random_entry_actions(200, holds, rng)
        entries = np.flatnonzero((a == Action.BUY) | (a == Action.SELL))
        exits = np.flatnonzero(a == Action.CLOSE)
        assert len(entries) == len(exits) == len(holds)
        assert sorted((exits - entries).tolist()) == sorted(holds)
        assert np.all(entries[1:] > exits[:-1])  # never overlapping
    assert np.array_equal(
        random_entry_actions(200, holds, np.random.default_rng(1)),
        random_entry_actions(200, holds, np.random.default_rng(1)),
    )


def test_block_bootstrap_interval_brackets_the_estimate_and_is_seeded():
    d = np.random.default_rng(2).normal(2e-4, 3e-3, 250)
    iv = block_bootstrap(d, 2000, seed=3)
    sharpe = d.mean() / d.std() * np.sqrt(252)
    assert iv["sharpe"][0] < sharpe < iv["sharpe"][1]
    assert iv["total_return_pct"][0] < d.sum() * 100 < iv["total_return_pct"][1]
    assert iv == block_bootstrap(d, 2000, seed=3)


@pytest.fixture(scope="module")
def quarter(market_cfg, spec):
    bars = load_bars(EURUSD)[0]
    sel = bars[(bars["ts_ns"] >= 1506816000 * 10**9)][:900]
    return history_from_bars(sel, market_cfg, spec)


def test_compare_runs_every_baseline_through_the_env(quarter, market_cfg, spec):
    ex = ExecutionModel.from_config(market_cfg.execution, market_cfg.instrument)
    last = len(quarter) - 2
    first = spec.window - 1
    sma = sma_actions(quarter.bars["close"], first, last, 20, 50, False)
    policy, _ = run_evaluation(None, quarter, spec, ex, 100_000.0, first, last, actions=sma)
    c = compare(quarter, spec, ex, 100_000.0, first, last, policy, draws=20, bootstrap_resamples=300)
    assert c.baselines["flat"]["trades"] == 0 and c.baselines["flat"]["pnl"] == 0.0
    assert c.baselines["sma_cross"]["pnl"] == pytest.approx(c.policy["pnl"])  # the same actions, the same result
    assert c.baselines["buy_and_hold"]["entries"] == 1 and c.baselines["sell_and_hold"]["entries"] == 1
    bh, sh = c.baselines["buy_and_hold"]["pnl"], c.baselines["sell_and_hold"]["pnl"]
    assert bh + sh < 0  # costs are on: long and short over the same bars lose the spread and commissions
    assert len(c.random_pnl_pct) == 20 and 0.0 <= c.beat_random_share <= 1.0
    assert all(iv["sharpe"][0] <= iv["sharpe"][1] for iv in c.intervals.values())
    assert any("random entries (20 draws" in line for line in c.lines())


@pytest.mark.parametrize("halt_resume", ["operator", "next_session"])
def test_baselines_are_shown_untruncated_and_labelled_under_the_policys_risk_rules(
    quarter, market_cfg, spec, halt_resume
):
    """Issue 19.8: with tight tiers the "buy_and_hold" the evidence gate compared against was
    "buy until the first flatten, then nothing". It is now run untruncated; under the risk
    rules it is shown beside, labelled, with the bars it spent halted."""
    from stairway.core.config import RiskConfig

    ex = ExecutionModel.from_config(market_cfg.execution, market_cfg.instrument)
    last, first = len(quarter) - 2, spec.window - 1
    risk = RiskConfig(drawdown_tiers_pct=(0.3, 0.4, 0.5, 0.6), halt_resume=halt_resume)
    flat = np.zeros(last - first + 1, dtype=np.int64)
    policy, _ = run_evaluation(None, quarter, spec, ex, 100_000.0, first, last, actions=flat, risk=risk)
    c = compare(quarter, spec, ex, 100_000.0, first, last, policy, draws=5, bootstrap_resamples=100, risk=risk)
    bh, ruled = c.baselines["buy_and_hold"], c.baselines["buy_and_hold (risk rules)"]
    assert bh["halted_bars"] == 0 and bh["flattens"] == 0 and bh["open_units_at_end"] > 0  # held to the end
    assert ruled["flattens"] >= 1 and ruled["halted_bars"] > 0
    if halt_resume == "operator":  # no operator in an evaluation: halted to the end of the window
        assert ruled["open_units_at_end"] == 0 and ruled["entries"] == 1
        assert ruled["halted_bars"] > 0.5 * (last - first)
    else:  # resumed with the next session: bought again
        assert ruled["entries"] > 1 and ruled["halted_bars"] < 0.5 * (last - first)


def test_random_entries_draw_the_policys_long_short_mix_and_baselines_get_paired_intervals(quarter, market_cfg, spec):
    """Issue 20 §4: random entries were 50/50 long/short, so a net-long policy "beat" most of
    them in a rising market. They now draw their sides with the policy's own mix; every
    baseline gets a paired block-bootstrap interval of the policy's return minus its own."""
    ex = ExecutionModel.from_config(market_cfg.execution, market_cfg.instrument)
    last, first = len(quarter) - 2, spec.window - 1
    n = last - first + 1
    longs = np.zeros(n, dtype=np.int64)
    longs[::40], longs[20::40] = Action.BUY, Action.CLOSE  # long only, in and out
    policy, _ = run_evaluation(None, quarter, spec, ex, 100_000.0, first, last, actions=longs)
    assert policy.entries > 5 and policy.long_entries == policy.entries
    c = compare(quarter, spec, ex, 100_000.0, first, last, policy, draws=30, bootstrap_resamples=200)
    assert c.long_share == 1.0
    rng = np.random.default_rng(0)
    drawn = random_entry_actions(n, policy.holding_bars(), rng, p_long=c.long_share)
    assert (drawn == Action.SELL).sum() == 0 and (drawn == Action.BUY).sum() == len(policy.holding_bars())
    mixed = random_entry_actions(n, [5] * 40, np.random.default_rng(1), p_long=0.25)
    buys, sells = (mixed == Action.BUY).sum(), (mixed == Action.SELL).sum()
    assert buys + sells == 40 and 3 <= buys <= 17  # ~10 of 40
    assert set(c.paired) == {"flat", "buy_and_hold", "sell_and_hold", "sma_cross", "sma_long_flat"}
    # flat earns nothing on every day: the policy minus flat is the policy, day by day
    assert c.paired["flat"] == pytest.approx(c.intervals["policy"]["total_return_pct"])
    lo, hi = c.paired["buy_and_hold"]
    assert lo < hi and c.paired["buy_and_hold"] != c.paired["flat"]
    assert any("policy - buy_and_hold: return difference 90 % interval" in line for line in c.lines())
    assert any("(100% long)" in line for line in c.lines())
    idle, _ = run_evaluation(None, quarter, spec, ex, 100_000.0, first, last, actions=np.zeros(n, dtype=np.int64))
    c0 = compare(quarter, spec, ex, 100_000.0, first, last, idle, draws=5, bootstrap_resamples=50)
    assert "the policy never traded: no random-entry comparison" in c0.lines()


def test_the_drift_line_is_summed_per_fold_and_thin_results_get_no_efficiency():
    """Issue 20 §4: the drift line multiplied the average exposure by the total buy-and-hold
    return, so a model flat through a crash fold and long in a rising one showed a return
    "beyond drift". Per fold: long 100 % of a +10 % fold, flat in a -30 % fold -> +10 %."""
    from types import SimpleNamespace

    from stairway.trainer.wf_report import drift_pct, verdict_lines

    def fold(k, long_pct, bh, entries):
        pol = {"long_pct": long_pct, "short_pct": 0.0, "pnl_pct": 9.0, "entries": entries}
        return {"fold": k, "summaries": {"policy": pol, "buy_and_hold": {"pnl_pct": bh}}}

    folds = [fold(0, 100.0, 10.0, 3), fold(1, 0.0, -30.0, 0)]
    assert drift_pct(folds) == pytest.approx(10.0)  # the old line: 50 % x -20 % = -10 %, "+19 % beyond drift"
    wf = SimpleNamespace(
        folds=folds,
        scheme="rolling",
        beat_buy_and_hold=1.0,
        beat_sma=0.5,
        efficiency=3.7,
        trades=3,
        car25_pct=12.0,
        dd95_pct=1.0,
        random_pnl_pct=np.zeros(0),
        beat_random_share=float("nan"),
        stitched={
            "policy": {"trades": 3, "long_pct": 50.0, "short_pct": 0.0, "total_return_pct": 9.0},
            "buy_and_hold": {"total_return_pct": -20.0},
        },
    )
    lines = "\n".join(verdict_lines(wf))
    assert "too few trades (3, fewer than 30) for a walk-forward efficiency" in lines
    assert "3.70" not in lines and "CAR25 +12" not in lines
    assert "the policy never traded in fold(s) 1" in lines
    assert "sums to +10.00 %" in lines and "beyond that: -1.00 %" in lines
