"""An example feature plug-in file: list it in ``features.plugins`` and its features in
``features.extra`` (see README, "Your own features").

Each function takes the bars (``Bars``: ts_ns, open, high, low, close arrays, oldest first,
and period_minutes) and returns one value per bar. Row t may read bars 0..t only, and no more
than the last ``warmup_bars`` of them; Stairway checks both when it builds the feature spec.
"""

import numpy as np

from stairway.core.feature_plugins import Bars, feature


@feature("gap", warmup_bars=2)
def gap(bars: Bars) -> np.ndarray:
    """This bar's open against the previous bar's close, in units of the previous bar's range, in [-3, 3]."""
    prev_close = np.concatenate([[np.nan], bars.close[:-1]])
    prev_range = np.concatenate([[np.nan], bars.high[:-1] - bars.low[:-1]])
    g = (bars.open - prev_close) / np.where(prev_range > 0, prev_range, np.inf)
    return np.clip(g, -3.0, 3.0)


@feature("range_z", warmup_bars=lambda period, p: p["window_bars"], window_bars=24)
def range_z(bars: Bars, window_bars: int = 24) -> np.ndarray:
    """This bar's high-low range against the mean range of the last ``window_bars`` bars (log ratio, in [-3, 3])."""
    rng = bars.high - bars.low
    out = np.full(len(rng), np.nan)
    if len(rng) >= window_bars:
        win = np.lib.stride_tricks.sliding_window_view(rng, window_bars)
        mean = win.mean(axis=1)
        out[window_bars - 1 :] = np.log(np.maximum(rng[window_bars - 1 :], 1e-12) / np.maximum(mean, 1e-12))
    return np.clip(out, -3.0, 3.0)
