"""Session starts for training, indexed once (issue 11 §4).

A session is ``session_len`` decisions on consecutive bars s .. s+L-1, marked up to bar s+L.
A start is rejected when two consecutive bars of that span are further apart than the bar
period plus ``max_gap_ns`` (a missing bar, a feed outage), or, with ``reject_weekend``, when
the span crosses a weekend: the trading week turns at Saturday 12:00 UTC, so Friday's bars
and Sunday evening's open fall in different weeks. The counts are reported with the run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stairway.core.types import NS_PER_DAY

WEEK_NS = 7 * NS_PER_DAY
WEEK_TURN_NS = 5 * NS_PER_DAY // 2  # 1970-01-03 12:00 UTC, a Saturday


@dataclass(frozen=True)
class SessionIndex:
    starts: np.ndarray  # int64 first decision bar of every accepted session
    candidates: int
    gap_rejected: int  # a gap inside the span (counted first)
    weekend_rejected: int  # no gap, but crosses a weekend

    def describe(self) -> str:
        return (
            f"{len(self.starts)} of {self.candidates} session starts kept ({self.gap_rejected} rejected for a gap, "
            f"{self.weekend_rejected} for crossing a weekend)"
        )

    def log_fields(self) -> dict:
        return {
            "session_starts": len(self.starts),
            "candidates": self.candidates,
            "gap_rejected": self.gap_rejected,
            "weekend_rejected": self.weekend_rejected,
        }


def week_of(ts_ns: np.ndarray) -> np.ndarray:
    return (np.asarray(ts_ns, dtype=np.int64) - WEEK_TURN_NS) // WEEK_NS


def index_sessions(
    bar_ts: np.ndarray,
    lo: int,
    hi: int,
    session_len: int,
    period_ns: int,
    max_gap_ns: int | None = None,
    reject_weekend: bool = False,
) -> SessionIndex:
    """Starts s in [lo, hi - session_len + 1] whose bars s .. s+L pass the checks."""
    starts = np.arange(lo, hi - session_len + 2, dtype=np.int64)
    ends = starts + session_len  # the bar that marks the session's last decision
    ok = np.ones(len(starts), dtype=bool)
    gap_bad = np.zeros(len(starts), dtype=bool)
    if max_gap_ns is not None and len(starts):
        too_far = np.diff(bar_ts) > period_ns + max_gap_ns
        cum = np.concatenate([[0], np.cumsum(too_far)])
        gap_bad = cum[ends] - cum[starts] > 0  # any of the diffs s .. s+L-1
        ok &= ~gap_bad
    weekend_bad = np.zeros(len(starts), dtype=bool)
    if reject_weekend and len(starts):
        weeks = week_of(bar_ts)
        weekend_bad = (weeks[ends] != weeks[starts]) & ~gap_bad
        ok &= ~weekend_bad
    return SessionIndex(starts[ok], len(starts), int(gap_bad.sum()), int(weekend_bad.sum()))
