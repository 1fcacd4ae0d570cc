"""Do the live inputs still look like the training window's?

At training, ``feature_profile`` records each market feature's distribution over the
training bars: its deciles (bin edges; repeated ones merged), the share of training bars in
each bin, and its minimum and maximum. The checkpoint carries it (``extra.feature_profile``).

Live, ``FeatureDrift`` keeps the last ``window`` observations (a ring buffer: bounded
memory) and scores each feature two ways:

- **PSI**, the population stability index of the live window against the training bins:
  sum over bins of (q - p) ln(q / p), with p the training share and q the live share (each
  floored at 1e-4). Read as usual: below 0.1 the same distribution, 0.1-0.25 a moderate
  shift, above 0.25 a large one. Slow features (volatility level, long z-scores) move a lot
  over a few days of hourly bars even in an ordinary market: PSI is shown, not acted on.
- **Outside**: the share of the live window outside the training [min, max]. The model has
  never seen such values; this is what the alert and the optional action use.

Time-of-day and day-of-week encodings are scored like the rest (they should stay near 0).
"""

from __future__ import annotations

from typing import Any

import numpy as np

BINS = 10
FLOOR = 1e-4


def feature_profile(features: np.ndarray, names: tuple[str, ...]) -> dict[str, Any]:
    """The training window's distribution of each feature (rows with a NaN are skipped)."""
    x = features[np.isfinite(features).all(axis=1)]
    if len(x) < 2 * BINS:
        return {}
    qs = np.quantile(x, np.linspace(0.0, 1.0, BINS + 1)[1:-1], axis=0)
    edges, shares = [], []
    for j in range(x.shape[1]):
        e = np.unique(qs[:, j])
        counts = np.bincount(np.searchsorted(e, x[:, j], side="right"), minlength=len(e) + 1)
        edges.append([float(v) for v in e])
        shares.append([float(v) for v in counts / len(x)])
    return {
        "names": list(names),
        "edges": edges,
        "shares": shares,
        "lo": [float(v) for v in x.min(axis=0)],
        "hi": [float(v) for v in x.max(axis=0)],
        "bars": len(x),
    }


class FeatureDrift:
    """Live window of observations scored against a training profile."""

    def __init__(self, profile: dict[str, Any] | None, names: tuple[str, ...], window: int) -> None:
        self.names = names
        self.window = window
        self.reason = ""  # why there is nothing to compare with ("" when there is)
        p = profile or {}
        if not p:
            self.reason = "the model records no training feature profile"
        elif tuple(p.get("names", ())) != tuple(names):
            self.reason = "the model's feature profile names other features"
        k = len(names)
        self._buf = np.zeros((window, k))
        self._n = 0
        self.psi = np.zeros(k)
        self.outside = np.zeros(k)
        if self.reason:
            return
        try:
            self._edges = [np.asarray(e, dtype=np.float64) for e in p["edges"]]
            self._shares = [np.maximum(np.asarray(s, dtype=np.float64), FLOOR) for s in p["shares"]]
            self._lo = np.asarray(p["lo"], dtype=np.float64)
            self._hi = np.asarray(p["hi"], dtype=np.float64)
            ok = all(len(s) == len(e) + 1 for e, s in zip(self._edges, self._shares, strict=True))
            ok = ok and self._lo.shape == self._hi.shape == (k,)
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok:
            self.reason = "the model's feature profile is malformed"

    @property
    def active(self) -> bool:
        return not self.reason

    @property
    def full(self) -> bool:
        return self._n >= self.window

    def update(self, row: np.ndarray) -> None:
        """Add one observation's market features and rescore (once the window is full)."""
        if not self.active:
            return
        self._buf[self._n % self.window] = row
        self._n += 1
        if not self.full:
            return
        x = self._buf
        self.outside = ((x < self._lo) | (x > self._hi)).mean(axis=0)
        for j in range(len(self.names)):
            counts = np.bincount(np.searchsorted(self._edges[j], x[:, j], side="right"), minlength=len(self._shares[j]))
            q = np.maximum(counts / self.window, FLOOR)
            p = self._shares[j]
            self.psi[j] = float(np.sum((q - p) * np.log(q / p)))

    def worst(self) -> tuple[str, float, float]:
        """(feature, its share outside the trained range, its PSI) for the most-outside feature."""
        j = int(np.argmax(self.outside))
        return self.names[j], float(self.outside[j]), float(self.psi[j])
