"""Fill bias of bar-derived quotes: how far the fill of a decision taken at a bar's close lands
from the next bar's open, by the rule that orders the extremes inside a bar.

A decision at bar k's close is executed at the first quote after the closing quote plus
latency (250 ms): quote 1 of bar k+1. With the old four-quote layouts that quote is one of the
bar's extremes; with ``open_repeated`` (the layout replays and training use now) it is the
open again. Measured on the bundled EUR/USD year, every bar, both directions:
- ``right``: the trade in the direction bar k+1 then closed (what a good or lucky policy
  does); ``wrong``: the other one. Fill minus next-bar open, in pips, signed so that
  positive = worse for the trade (the quote itself: spread and slippage come on top, equally
  for both rules).
- ``close_decides`` is the old rule (low first for a rising bar): the bar's own close picks
  the order, so a right trade always fills at the favourable extreme. ``nearer_extreme_first``
  uses only the open, high and low, yet still favours right trades (the extreme near the open
  tends to be the one the bar moves away from). ``random_order`` (seeded by bar time) turns
  the bias against right trades. ``open_repeated`` fills at the open: no bias from the layout.

    python bench/fill_bias.py
"""

from __future__ import annotations

import numpy as np

from common import report
from stairway.core.bar_files import load_bars  # noqa: E402
from stairway.core.bar_ticks import bar_paths  # noqa: E402
from tests.helpers import EURUSD  # noqa: E402

PIP = 1e-4


def bias(bars: np.ndarray, rule: str) -> dict[str, float]:
    o, h, lo, c = (bars[f][1:] for f in ("open", "high", "low", "close"))  # bar k+1
    if rule == "random_order":  # a coin per bar, from its open time only
        x = (bars["ts_ns"][1:] // 60_000_000_000).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        fill = np.where((x ^ (x >> np.uint64(31))) & np.uint64(1), lo, h)
    else:
        fill = bar_paths(o, h, lo, c, rule)[:, 1]  # quote 1: the first quote after the closing quote
    right = np.sign(c - o)  # +1 a buy was right, -1 a sell was
    keep = right != 0
    adverse_right = ((fill - o) * right)[keep] / PIP
    adverse_wrong = ((fill - o) * -right)[keep] / PIP
    return {
        "right_mean_pips": round(float(adverse_right.mean()), 3),
        "wrong_mean_pips": round(float(adverse_wrong.mean()), 3),
        "edge_from_order_pips": round(float((adverse_wrong - adverse_right).mean() / 2), 3),
        "abs_mean_pips": round(float(np.abs(fill - o)[keep].mean() / PIP), 3),
    }


def main() -> None:
    bars, _ = load_bars(EURUSD)
    out = {"bars": int(len(bars) - 1)}
    for rule in ("close_decides", "nearer_extreme_first", "random_order", "open_repeated"):
        out[rule] = bias(bars, rule)
    out["modelled_cost_pips"] = 1.0 + 2 * 0.2 + 2 * 0.1  # spread + commission both sides + slippage both
    report("fill_bias", out)


if __name__ == "__main__":
    main()
