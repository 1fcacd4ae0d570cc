"""The other instruments' bars, as one slot's cross-instrument features read them.

``core.cross_features`` defines the columns: for a bar ending at T, each listed instrument's
bars ending at or before T. In the daemon those are the instrument's closed bars (its slot's
feature buffer) and its open bar when that one ends by T: when A's closing quote arrives at T,
B's bar ending at T closes only at B's own first quote at or after T, but every B quote before
T has been seen (the replay merges quotes in time order; live feeds deliver them in order), so
B's open bar's close is final.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from stairway.core.bar_builder import I_BAR_TS, I_HAS_BAR, S_C


class CrossView:
    """Callable (symbol, end_ns) -> (bar ends, closes) over a daemon's slots."""

    def __init__(self, slots: Mapping) -> None:
        self.slots = slots  # symbol -> daemon.slot.Slot

    def __call__(self, symbol: str, end_ns: int) -> tuple[np.ndarray, np.ndarray]:
        slot = self.slots[symbol]
        ends, closes = slot.features.closes(end_ns)
        b = slot.builder
        if b.istate[I_HAS_BAR]:
            open_end = int(b.istate[I_BAR_TS]) + b.period_ns
            if open_end <= end_ns and (not len(ends) or open_end > ends[-1]):
                ends = np.append(ends, open_end)
                closes = np.append(closes, b.state[S_C])
        return ends, closes


def wire(slots: Mapping) -> None:
    """Give every slot whose spec has cross features the view over all of them."""
    view = CrossView(slots)
    for slot in slots.values():
        if slot.spec.cross:
            slot.features.cross_view = view
