"""Baselines every result is shown next to, run through the same environment, fills and costs
as the policy (``trainer.evaluation``), and the intervals that say how much a result means.

- ``flat`` (never trades), ``buy_and_hold``, ``sell_and_hold``; each run untruncated (no
  drawdown tiers, no daily cap: ``untruncated``) and, where the policy's risk rules change it,
  again under them as ``<name> (risk rules)``;
- ``sma_cross`` (long when the fast SMA of closes is above the slow one, short below) and
  ``sma_long_flat`` (long or flat), windows configurable; the decision on a bar uses closes up
  to and including that bar only (it has closed), and executes at a later quote like every
  decision;
- ``random entries``: as many trades as the policy made, each held as long as one of the
  policy's trades, at random non-overlapping times and random sides (seeded, many draws): the
  distribution a policy without skill but with the same activity would get, and the share of
  draws the policy beat;
- a block bootstrap over days (blocks of ``block_days``) for intervals of Sharpe and of total
  return.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from stairway.core.config import RiskConfig
from stairway.core.execution import ExecutionModel
from stairway.core.features import FeatureSpec
from stairway.core.types import Action
from stairway.trainer.evaluation import run_evaluation
from stairway.trainer.history import MarketHistory

FIXED = ("flat", "buy_and_hold", "sell_and_hold", "sma_cross", "sma_long_flat")


def sma_actions(closes: np.ndarray, first: int, last: int, fast: int, slow: int, long_flat: bool) -> np.ndarray:
    """Action per decision bar first..last from the SMAs of closes[: i + 1] (no look-ahead)."""
    if not 0 < fast < slow:
        raise ValueError(f"SMA windows must satisfy 0 < fast < slow, got {fast}, {slow}")
    c = np.cumsum(np.concatenate([[0.0], closes]))
    out = np.empty(last - first + 1, dtype=np.int64)
    for k, i in enumerate(range(first, last + 1)):
        if i + 1 < slow:
            out[k] = Action.HOLD
            continue
        f = (c[i + 1] - c[i + 1 - fast]) / fast
        s = (c[i + 1] - c[i + 1 - slow]) / slow
        out[k] = Action.BUY if f > s else (Action.CLOSE if long_flat else Action.SELL) if f < s else Action.HOLD
    return out


def fixed_actions(name: str, history: MarketHistory, first: int, last: int, sma: tuple[int, int]) -> np.ndarray:
    n = last - first + 1
    if name == "flat":
        return np.zeros(n, dtype=np.int64)
    if name == "buy_and_hold":
        return np.full(n, Action.BUY, dtype=np.int64)
    if name == "sell_and_hold":
        return np.full(n, Action.SELL, dtype=np.int64)
    if name in ("sma_cross", "sma_long_flat"):
        return sma_actions(history.bars["close"], first, last, sma[0], sma[1], name == "sma_long_flat")
    raise ValueError(f"unknown baseline {name!r}; known: {', '.join(FIXED)}")


def random_entry_actions(n: int, holds: list[int], rng: np.random.Generator, p_long: float = 0.5) -> np.ndarray:
    """len(holds) trades at random non-overlapping places in n decisions, each held holds[k]
    bars (shortened if they cannot all fit), each long with probability ``p_long`` (the
    policy's own mix: a net-long policy is not credited with the market's drift against 50/50
    draws), else short; CLOSE ends each one."""
    holds = [max(1, int(h)) for h in holds]
    while holds and sum(holds) + len(holds) > n:  # cannot fit (the policy's last trade may run to the end)
        holds[int(np.argmax(holds))] -= 1
        holds = [h for h in holds if h > 0]
    out = np.zeros(n, dtype=np.int64)
    if not holds:
        return out
    order = rng.permutation(len(holds))
    spare = n - sum(holds) - len(holds)
    gaps = np.diff(np.concatenate([[0], np.sort(rng.integers(0, spare + 1, size=len(holds))), [spare]]))
    pos = 0
    for k, j in enumerate(order):
        pos += int(gaps[k])
        out[pos] = Action.BUY if rng.random() < p_long else Action.SELL
        out[pos + holds[j]] = Action.CLOSE
        pos += holds[j] + 1
    return out


def block_bootstrap(
    daily: np.ndarray, resamples: int = 1000, block_days: int = 5, seed: int = 0, level: float = 0.90
) -> dict[str, tuple[float, float]]:
    """``level`` intervals of annualised Sharpe and total return (%) from daily returns
    (fractions of initial equity), resampling blocks of consecutive days."""
    d = np.asarray(daily, dtype=np.float64)
    if len(d) < 2:
        return {"sharpe": (0.0, 0.0), "total_return_pct": (0.0, 0.0)}
    rng = np.random.default_rng(seed)
    b = max(1, min(block_days, len(d)))
    nblocks = math.ceil(len(d) / b)
    starts = rng.integers(0, len(d) - b + 1, size=(resamples, nblocks))
    idx = (starts[:, :, None] + np.arange(b)[None, None, :]).reshape(resamples, -1)[:, : len(d)]
    x = d[idx]
    sd = x.std(axis=1)
    sharpe = np.where(sd > 1e-15, x.mean(axis=1) / np.where(sd > 1e-15, sd, 1.0), 0.0) * math.sqrt(252)
    total = x.sum(axis=1) * 100.0
    q = ((1 - level) / 2 * 100, (1 + level) / 2 * 100)
    s_lo, s_hi = (float(v) for v in np.percentile(sharpe, q))
    t_lo, t_hi = (float(v) for v in np.percentile(total, q))
    return {"sharpe": (s_lo, s_hi), "total_return_pct": (t_lo, t_hi)}


@dataclass
class Comparison:
    """A policy's summary next to its baselines on the same bars."""

    policy: dict[str, float]
    baselines: dict[str, dict[str, float]]
    random_pnl_pct: np.ndarray  # one total return per random-entry draw
    beat_random_share: float  # share of random-entry draws whose return the policy beat
    intervals: dict[str, dict[str, tuple[float, float]]]  # name -> bootstrap intervals
    trackers: dict = field(default_factory=dict)  # name -> PerformanceTracker (policy and fixed baselines)
    # baseline -> 90 % paired block-bootstrap interval of the policy's return minus the baseline's
    # (% of equity; the same resampled days for both)
    paired: dict[str, tuple[float, float]] = field(default_factory=dict)
    long_share: float = 0.5  # the policy's share of long entries (the random draws' mix)

    def columns(self) -> dict[str, dict[str, float]]:
        """Policy and baselines, and the random draws' median, for format_summary."""
        return {"policy": self.policy, **self.baselines}

    def lines(self) -> list[str]:
        out = []
        for name, iv in self.intervals.items():
            s, r = iv["sharpe"], iv["total_return_pct"]
            out.append(
                f"{name:>16}: Sharpe 90 % interval [{s[0]:+.2f}, {s[1]:+.2f}], "
                f"return [{r[0]:+.2f} %, {r[1]:+.2f} %] (block bootstrap over days)"
            )
        for name, (lo, hi) in self.paired.items():
            out.append(
                f"{'policy - ' + name:>30}: return difference 90 % interval [{lo:+.2f} %, {hi:+.2f} %] "
                "(paired block bootstrap: the same days for both)"
            )
        if len(self.random_pnl_pct):
            q = np.percentile(self.random_pnl_pct, [5, 50, 95])
            out.append(
                f"random entries ({len(self.random_pnl_pct)} draws, the policy's trade count, holding times and "
                f"long/short mix ({self.long_share:.0%} long)): return 5/50/95 % = {q[0]:+.2f} / {q[1]:+.2f} / "
                f"{q[2]:+.2f} %; the policy beat {self.beat_random_share:.0%} of them"
            )
        elif not self.policy.get("entries"):
            out.append("the policy never traded: no random-entry comparison")
        return out


def untruncated(risk: RiskConfig | None) -> RiskConfig:
    """``risk``'s limits without the drawdown tiers and the daily order cap: a baseline as it is
    (buy-and-hold over the window, not "buy until the first flatten tier"). Shown as the
    baseline; the same strategy under the policy's own rules is shown beside it, labelled
    "(risk rules)", when those rules changed it."""
    r = risk or RiskConfig()
    return r.model_copy(update={"drawdown_tiers_pct": (96.0, 97.0, 98.0, 99.0), "max_trades_per_day": 10**9})


def compare(
    history: MarketHistory,
    spec: FeatureSpec,
    ex: ExecutionModel,
    initial_equity: float,
    first: int,
    last: int,
    policy_tracker,
    *,
    sma: tuple[int, int] = (20, 50),
    draws: int = 100,
    seed: int = 0,
    bootstrap_resamples: int = 1000,
    risk=None,
) -> Comparison:
    """Run every baseline over decisions first..last and set the policy's tracker beside them."""
    lo = max(first, spec.window - 1)
    n = last - lo + 1
    trackers = {"policy": policy_tracker}
    baselines, intervals = (
        {},
        {"policy": block_bootstrap(policy_tracker.daily_returns(), bootstrap_resamples, seed=seed)},
    )
    free = untruncated(risk)
    for name in FIXED:
        acts = fixed_actions(name, history, lo, last, sma)
        t, _ = run_evaluation(None, history, spec, ex, initial_equity, lo, last, actions=acts, record=True, risk=free)
        trackers[name] = t
        baselines[name] = t.summary()
        intervals[name] = block_bootstrap(t.daily_returns(), bootstrap_resamples, seed=seed)
        ruled, _ = run_evaluation(None, history, spec, ex, initial_equity, lo, last, actions=acts, risk=risk)
        r = ruled.summary()
        if r.get("flattens") or r.get("halted_bars") or r.get("blocked_intents"):  # the rules bound: shown too
            baselines[f"{name} (risk rules)"] = r
    rng = np.random.default_rng(seed)
    holds = policy_tracker.holding_bars()
    p_long = policy_tracker.long_entries / policy_tracker.entries if policy_tracker.entries else 0.5
    pnl = []
    for _ in range(draws if holds else 0):
        acts = random_entry_actions(n, holds, rng, p_long)
        t, _ = run_evaluation(None, history, spec, ex, initial_equity, lo, last, actions=acts, risk=risk)
        pnl.append(t.summary()["pnl_pct"])
    pnl_arr = np.asarray(pnl)
    mine = policy_tracker.summary()["pnl_pct"]
    beat = float((pnl_arr < mine).mean()) if len(pnl_arr) else float("nan")
    ours = policy_tracker.daily_returns()
    paired = {}
    for name in FIXED:
        theirs = trackers[name].daily_returns()
        k = min(len(ours), len(theirs))  # the same days (the same bars, the same env)
        iv = block_bootstrap(ours[:k] - theirs[:k], bootstrap_resamples, seed=seed)["total_return_pct"]
        paired[name] = iv
    return Comparison(policy_tracker.summary(), baselines, pnl_arr, beat, intervals, trackers, paired, p_long)
