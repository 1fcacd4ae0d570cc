"""A slot's kernels run once on throwaway state before its first quote, so the first live bar
pays no JIT or dispatch cost (numba's cached kernels still load on first call)."""

from __future__ import annotations

import numpy as np

from stairway.core.bar_builder import BarBuilder
from stairway.core.execution import charge_holding_costs, price_bound, target_units, work_quotes
from stairway.core.features import FeatureBuffer
from stairway.core.position import apply_fill, equity, mark_bar, new_state, position_features
from stairway.core.protection import atr
from stairway.core.types import NS_PER_DAY, TICK_DTYPE


def warm_up_kernels(slot) -> None:
    """Touches nothing ``slot`` (daemon.slot.Slot) trades with; the policy is reset after."""
    b = BarBuilder(slot.builder.period_ns, "mid")
    t = np.zeros(3, dtype=TICK_DTYPE)
    t["ts_ns"] = np.arange(3) * slot.builder.period_ns
    t["bid"], t["ask"] = 1.0, 1.0001
    b.push(t)
    b.push_one(3 * slot.builder.period_ns, 1.0, 1.0001)  # the one-quote path (live feeds)
    fb = FeatureBuffer(slot.spec, slot.features.cross_view)  # (reads nothing as old as these bars)
    for k in range(slot.spec.window):
        fb.push(k * slot.builder.period_ns, 1.0, 1.0002, 0.9998, 1.0 + 1e-4 * (k % 3))
    obs = np.zeros(slot.spec.obs_dim)
    fb.compute(obs[: slot.spec.n_market])
    st = new_state()
    apply_fill(st, 1.0, 1.0, 0.0)
    charge_holding_costs(st, 1.0, 1.0001, 0, NS_PER_DAY, 0.01, 0.01, 0, 2)
    mark_bar(st, 1.0, 1.0001, slot.ex.pip)
    position_features(st, 1.0, 1.0001, slot.ex.pip, obs[slot.spec.n_market :])
    equity(st, 1.0, 1.0001, 1.0)
    slot.policy.act(obs)
    slot.policy.reset()  # a warm-up call leaves nothing behind (a reused search tree)
    target_units(1, 0.0, 1.0)
    out = np.ones(3)
    atr(out, out, out, 2, 1)
    slot.ex.size_and_stop(1, 0.0, lambda n: 1e-3, 100_000.0)
    out = np.zeros(3)
    work_quotes(0.0, 1.0, 0.9, 0.0, t["ts_ns"], t["bid"], t["ask"], np.ones(3, np.bool_), 0, 3, 0, 1.0, 0.0,
                price_bound(1.0, 1.0, 1.0001, 1e-4), np.zeros(3, np.int64), out, np.zeros(3), np.zeros(3), 0,
                0.0, 0.0)  # fmt: skip
