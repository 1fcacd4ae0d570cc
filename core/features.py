"""The one feature pipeline.

Market features are computed by ``market_features_at``, a numba kernel that reads only the
last ``spec.window`` bars ending at index ``i``. The trainer calls it for every bar of a
history (``batch_market_features``); the daemon calls it once per closed bar on a bounded
rolling buffer (``FeatureBuffer``). Same function, same inputs, same floating-point
operations: the parity test demands identical results.

Definitions (r_t = log(c_t / c_{t-1}); sigma_W = population std of r over the last W bars,
floored at 1e-7; every feature is bounded):

- ``ret_<k>``: log(c_t / c_{t-k}) / (sigma_V * sqrt(k)), clipped to [-5, 5], per return lag k
- ``vol_ratio``: log(sigma_S / sigma_L), clipped to [-3, 3]
- ``vol_level``: (2/pi) atan(sigma_L * 1e4 / 10), the long-window volatility in basis points
- ``rsi``: 2 * up / (up + down) - 1 over the last R close-to-close moves (0 if flat)
- ``z_short`` / ``z_long``: (c - SMA_W) / std(c over W), clipped to [-5, 5]
- ``sma_cross``: (SMA_S / SMA_L - 1) / sigma_L, clipped to [-5, 5]
- ``range_pos``: position of c in [min low, max high] over L, scaled to [-1, 1]
- ``body``, ``upper_wick``, ``lower_wick``: the bar's shape as fractions of its range
- ``range_vol``: (2/pi) atan((h - l) / c / sigma_V / 3)
- ``tod_sin``, ``tod_cos``, ``dow_sin``, ``dow_cos``: time of day and of week of the bar's open

Volume is deliberately absent: history carries traded volume, live bars carry tick counts.

Position features (9, DESIGN.md) come from core.position and are appended by the caller.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass

import numba
import numpy as np

from stairway.core import feature_plugins, protection
from stairway.core.config import MarketConfig
from stairway.core.errors import ConfigError
from stairway.core.feature_plugins import Bars, PluginUse
from stairway.core.position import POSITION_FEATURES

FEATURE_VERSION = 1
BASE_MARKET_FEATURES = (
    "vol_ratio",
    "vol_level",
    "rsi",
    "z_short",
    "z_long",
    "sma_cross",
    "range_pos",
    "body",
    "upper_wick",
    "lower_wick",
    "range_vol",
    "tod_sin",
    "tod_cos",
    "dow_sin",
    "dow_cos",
)
# params layout: [V, S, L, R, n_lags, lag_1 .. lag_n]
P_V, P_S, P_L, P_R, P_NLAGS, P_LAGS = range(6)


@dataclass(frozen=True)
class FeatureSpec:
    """Named features, their windows in bars, and a content hash that pins all of it."""

    period_minutes: int
    price: str
    return_lags: tuple[int, ...]
    vol_window: int
    short_window: int
    long_window: int
    rsi_window: int
    include: tuple[str, ...] | None = None  # None: every market feature, in kernel order
    plugins: tuple[PluginUse, ...] = ()  # registered features appended after the kernel's (features.extra)
    cross: tuple[str, ...] = ()  # other instruments' returns, after the plug-ins' (core.cross_features)
    cross_lags: tuple[int, ...] = ()

    @classmethod
    def from_config(cls, cfg: MarketConfig) -> FeatureSpec:
        b, f = cfg.bars, cfg.features
        spec = cls(
            period_minutes=b.period_minutes,
            price=b.price,
            return_lags=tuple(b.bars(m, "features.return_lags_minutes") for m in f.return_lags_minutes),
            vol_window=b.bars(f.vol_window_minutes, "features.vol_window_minutes"),
            short_window=b.bars(f.short_window_minutes, "features.short_window_minutes"),
            long_window=b.bars(f.long_window_minutes, "features.long_window_minutes"),
            rsi_window=b.bars(f.rsi_window_minutes, "features.rsi_window_minutes"),
        )
        if f.cross_instruments:
            lags = tuple(b.bars(m, "features.cross_lags_minutes") for m in f.cross_lags)
            spec = dataclasses.replace(spec, cross=f.cross_instruments, cross_lags=lags)
        if f.extra:
            feature_plugins.load_sources(f.plugins)
            uses = feature_plugins.resolve(f.extra, f.params, b.period_minutes)
            clash = sorted(set(spec.all_market_names) & {c for u in uses for c in u.columns})
            if clash:
                raise ConfigError(f"features.extra: column name(s) {clash} clash with other features")
            spec = dataclasses.replace(spec, plugins=uses)
            for u in uses:
                feature_plugins.check_plugin(u, b.period_minutes, spec.window)
        elif f.plugins or f.params:
            raise ConfigError("features.plugins / features.params are set but features.extra lists no feature to add")
        if f.include is not None:
            known = spec.all_market_names
            unknown = [n for n in f.include if n not in known]
            if unknown or not f.include or len(set(f.include)) != len(f.include):
                raise ConfigError(
                    f"features.include = {list(f.include)}: unknown feature(s) {unknown} or duplicates; "
                    f"known market features: {', '.join(known)}"
                )
            spec = dataclasses.replace(spec, include=tuple(f.include))
        return spec

    @functools.cached_property
    def all_market_names(self) -> tuple[str, ...]:
        """Everything the pipeline computes, in its output order: the kernel's, then each plug-in's."""
        from stairway.core.cross_features import cross_names

        plugged = tuple(c for u in self.plugins for c in u.columns)
        return self.kernel_names + plugged + cross_names(self.cross, self.cross_lags)

    @functools.cached_property
    def kernel_names(self) -> tuple[str, ...]:
        return tuple(f"ret_{k}" for k in self.return_lags) + BASE_MARKET_FEATURES

    @functools.cached_property
    def market_names(self) -> tuple[str, ...]:
        return self.all_market_names if self.include is None else self.include

    @functools.cached_property
    def selection(self) -> np.ndarray | None:
        """Kernel columns to keep, or None for all."""
        if self.include is None:
            return None
        names = self.all_market_names
        return np.array([names.index(n) for n in self.include], dtype=np.int64)

    @functools.cached_property
    def names(self) -> tuple[str, ...]:
        return self.market_names + POSITION_FEATURES

    @functools.cached_property
    def n_market(self) -> int:
        return len(self.market_names)

    @functools.cached_property
    def obs_dim(self) -> int:
        return len(self.names)

    @functools.cached_property
    def window(self) -> int:
        """Bars of history needed for the first complete observation (the warm-up)."""
        base = max(max(self.return_lags), self.vol_window, self.long_window, self.rsi_window) + 1
        cross = [max(self.vol_window, *self.cross_lags) + 1] if self.cross else []
        return max([base] + [u.warmup for u in self.plugins] + cross)

    @functools.cached_property
    def params(self) -> np.ndarray:
        head = [self.vol_window, self.short_window, self.long_window, self.rsi_window, len(self.return_lags)]
        return np.array(head + list(self.return_lags), dtype=np.int64)

    def to_json(self) -> str:
        d = {
            "version": FEATURE_VERSION,
            "names": list(self.names),
            "period_minutes": self.period_minutes,
            "price": self.price,
            "return_lags": list(self.return_lags),
            "vol_window": self.vol_window,
            "short_window": self.short_window,
            "long_window": self.long_window,
            "rsi_window": self.rsi_window,
        }
        if self.include is not None:  # keeps the hash of the default spec unchanged
            d["include"] = list(self.include)
        if self.plugins:
            d["plugins"] = [u.to_dict() for u in self.plugins]
        if self.cross:
            d["cross_instruments"], d["cross_lags"] = list(self.cross), list(self.cross_lags)
        return json.dumps(d, sort_keys=True, separators=(",", ":"))

    @functools.cached_property
    def hash(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]


@numba.njit(cache=True, inline="always")
def _clip(x: float, lo: float, hi: float) -> float:
    return lo if x < lo else (hi if x > hi else x)


@numba.njit(cache=True)
def _ret_std(c: np.ndarray, i: int, w: int) -> float:
    """Population std of the last w one-bar log returns ending at i (two-pass, exact order)."""
    m = 0.0
    for j in range(i - w + 1, i + 1):
        m += math.log(c[j] / c[j - 1])
    m /= w
    v = 0.0
    for j in range(i - w + 1, i + 1):
        d = math.log(c[j] / c[j - 1]) - m
        v += d * d
    s = math.sqrt(v / w)
    return s if s > 1e-7 else 1e-7


@numba.njit(cache=True)
def _mean_std(c: np.ndarray, i: int, w: int) -> tuple[float, float]:
    m = 0.0
    for j in range(i - w + 1, i + 1):
        m += c[j]
    m /= w
    v = 0.0
    for j in range(i - w + 1, i + 1):
        d = c[j] - m
        v += d * d
    return m, math.sqrt(v / w)


@numba.njit(cache=True)
def market_features_at(
    ts: np.ndarray,
    o: np.ndarray,
    h: np.ndarray,
    l: np.ndarray,
    c: np.ndarray,
    i: int,
    params: np.ndarray,
    out: np.ndarray,
) -> None:
    """Write the market features of bar ``i`` into ``out``; reads bars i-window+1 .. i only."""
    V = params[P_V]
    S = params[P_S]
    L = params[P_L]
    R = params[P_R]
    n_lags = params[P_NLAGS]
    sig_v = _ret_std(c, i, V)
    k = 0
    for j in range(n_lags):
        lag = params[P_LAGS + j]
        out[k] = _clip(math.log(c[i] / c[i - lag]) / (sig_v * math.sqrt(lag)), -5.0, 5.0)
        k += 1
    sig_s = _ret_std(c, i, S)
    sig_l = _ret_std(c, i, L)
    out[k] = _clip(math.log(sig_s / sig_l), -3.0, 3.0)
    out[k + 1] = (2.0 / math.pi) * math.atan(sig_l * 1e4 / 10.0)
    up = 0.0
    down = 0.0
    for j in range(i - R + 1, i + 1):
        d = c[j] - c[j - 1]
        if d > 0:
            up += d
        else:
            down -= d
    out[k + 2] = 0.0 if up + down == 0.0 else 2.0 * up / (up + down) - 1.0
    m_s, sd_s = _mean_std(c, i, S)
    m_l, sd_l = _mean_std(c, i, L)
    out[k + 3] = 0.0 if sd_s == 0.0 else _clip((c[i] - m_s) / sd_s, -5.0, 5.0)
    out[k + 4] = 0.0 if sd_l == 0.0 else _clip((c[i] - m_l) / sd_l, -5.0, 5.0)
    out[k + 5] = _clip((m_s / m_l - 1.0) / sig_l, -5.0, 5.0)
    lo = l[i]
    hi = h[i]
    for j in range(i - L + 1, i + 1):
        if l[j] < lo:
            lo = l[j]
        if h[j] > hi:
            hi = h[j]
    out[k + 6] = 0.0 if hi == lo else 2.0 * (c[i] - lo) / (hi - lo) - 1.0
    rng = h[i] - l[i]
    if rng > 0.0:
        out[k + 7] = (c[i] - o[i]) / rng
        out[k + 8] = (h[i] - max(o[i], c[i])) / rng
        out[k + 9] = (min(o[i], c[i]) - l[i]) / rng
    else:
        out[k + 7] = 0.0
        out[k + 8] = 0.0
        out[k + 9] = 0.0
    out[k + 10] = (2.0 / math.pi) * math.atan(rng / c[i] / sig_v / 3.0)
    minute = (ts[i] % 86_400_000_000_000) // 60_000_000_000
    day = ((ts[i] // 86_400_000_000_000) + 3) % 7  # 0 = Monday
    a_day = 2.0 * math.pi * minute / 1440.0
    a_week = 2.0 * math.pi * (day + minute / 1440.0) / 7.0
    out[k + 11] = math.sin(a_day)
    out[k + 12] = math.cos(a_day)
    out[k + 13] = math.sin(a_week)
    out[k + 14] = math.cos(a_week)


@numba.njit(cache=True)
def _batch_kernel(
    ts: np.ndarray,
    o: np.ndarray,
    h: np.ndarray,
    l: np.ndarray,
    c: np.ndarray,
    params: np.ndarray,
    window: int,
    out: np.ndarray,
) -> None:
    for i in range(window - 1, ts.shape[0]):
        market_features_at(ts, o, h, l, c, i, params, out[i])


def batch_market_features(
    bars: np.ndarray, spec: FeatureSpec, cross: dict[str, np.ndarray] | None = None
) -> np.ndarray:
    """(n_bars, n_market) features for a whole history; rows before the warm-up are NaN.
    ``cross``: each of ``spec.cross``'s bars (BAR_DTYPE, the instrument's own included when
    listed), as the daemon builds them; only bars ending by each bar's end are read."""
    n = len(bars)
    out = np.full((n, len(spec.all_market_names)), np.nan)
    ts, o, h, lo, c = (np.ascontiguousarray(bars[f]) for f in ("ts_ns", "open", "high", "low", "close"))
    _batch_kernel(ts, o, h, lo, c, spec.params, spec.window, out)
    k = len(spec.kernel_names)
    for u in spec.plugins:
        try:
            vals = feature_plugins.call_with_limit(
                functools.partial(u.compute, Bars(ts, o, h, lo, c, spec.period_minutes)),
                feature_plugins.CHECK_SECS,
                f"feature plug-in '{u.name}', on the history,",
            )
        except ConfigError:
            raise
        except Exception as e:  # the operator's code, on data the start-up check did not have
            raise ConfigError(f"feature plug-in '{u.name}' failed on the history: {type(e).__name__}: {e}") from None
        vals[: spec.window - 1] = np.nan
        bad = np.flatnonzero(~np.isfinite(vals[spec.window - 1 :]).all(axis=1))
        if len(bad):
            raise ConfigError(
                f"feature plug-in '{u.name}' is not finite on {len(bad)} bar(s) of the history after its "
                f"warm-up, the first opening at {ts[bad[0] + spec.window - 1]} ns"
            )
        out[:, k : k + len(u.columns)] = vals
        k += len(u.columns)
    if spec.cross:
        from stairway.core.cross_features import batch_cross

        missing = [s for s in spec.cross if cross is None or s not in cross]
        if missing:
            raise ConfigError(f"features.cross_instruments: no bars for {missing} (data.cross_bars_csv)")
        assert cross is not None
        period_ns = spec.period_minutes * 60_000_000_000
        w = len(spec.cross_lags) + 1
        for s in spec.cross:
            out[:, k : k + w] = batch_cross(ts, cross[s], period_ns, spec.vol_window, spec.cross_lags, spec.window - 1)
            k += w
    sel = spec.selection
    return out if sel is None else np.ascontiguousarray(out[:, sel])


class FeatureBuffer:
    """Bounded rolling buffer of the last bars; one ``push`` per closed bar.

    Arrays are twice the window long; when full, the last ``window - 1`` bars are moved to
    the front, so each push is O(1) amortised and memory never grows.
    """

    def __init__(
        self,
        spec: FeatureSpec,
        cross_view: Callable[[str, int], tuple[np.ndarray, np.ndarray]] | None = None,
        keep: int = 0,
    ) -> None:
        self.spec = spec
        self.window = spec.window
        # a leg read by another's cross features (core.cross_features) keeps a window more:
        # that many of its bars may close after the other's bar end and be passed over;
        # ``keep``: at least that many bars for other readers (the stop's ATR)
        self._keep = max(self.window - 1 + (self.window if spec.cross else 0), keep)
        cap = self._keep + self.window + 1
        # other instruments' bars ending by a time: (symbol, end_ns) -> (bar ends, closes);
        # set by the daemon (daemon.cross_view) when the spec has cross features
        self.cross_view = cross_view
        self._timed_out: set[str] = set()  # plug-ins past their time limit (core.feature_plugins.LIVE_SECS)
        self._ts = np.zeros(cap, dtype=np.int64)
        self._ohlc = np.zeros((4, cap))
        self._n = 0
        self.bars_seen = 0
        self._params = spec.params
        self._sel = spec.selection
        self._all = np.zeros(len(spec.all_market_names))
        self._n_kernel = len(spec.kernel_names)

    @property
    def warm(self) -> bool:
        return self.bars_seen >= self.window

    def push(self, ts_ns: int, o: float, h: float, l: float, c: float) -> None:
        if self._n == len(self._ts):
            keep = self._keep
            self._ts[:keep] = self._ts[self._n - keep : self._n]
            self._ohlc[:, :keep] = self._ohlc[:, self._n - keep : self._n]
            self._n = keep
        n = self._n
        self._ts[n] = ts_ns
        self._ohlc[0, n], self._ohlc[1, n], self._ohlc[2, n], self._ohlc[3, n] = o, h, l, c
        self._n = n + 1
        self.bars_seen += 1

    def compute(self, out: np.ndarray) -> bool:
        """Write the latest bar's market features into ``out``; False until warm."""
        if not self.warm:
            return False
        o = self._ohlc
        if self._sel is None and not self.spec.plugins and not self.spec.cross:
            market_features_at(self._ts, o[0], o[1], o[2], o[3], self._n - 1, self._params, out)
            return True
        full = self._all
        market_features_at(self._ts, o[0], o[1], o[2], o[3], self._n - 1, self._params, full)
        if self.spec.plugins:
            lo, hi = self._n - self.window, self._n
            bars = Bars(self._ts[lo:hi], o[0, lo:hi], o[1, lo:hi], o[2, lo:hi], o[3, lo:hi], self.spec.period_minutes)
            k = self._n_kernel
            for u in self.spec.plugins:
                if u.name in self._timed_out:
                    raise ValueError(f"feature plug-in '{u.name}' timed out on an earlier bar: not called again")
                try:
                    row = feature_plugins.call_with_limit(
                        functools.partial(u.compute, bars), feature_plugins.LIVE_SECS, f"feature plug-in '{u.name}'"
                    )[-1]
                except feature_plugins.PluginTimeout:
                    self._timed_out.add(u.name)
                    raise
                if not np.isfinite(row).all():  # checked at start-up on a test history; live data may differ
                    raise ValueError(f"feature plug-in '{u.name}' gave {row.tolist()} at bar {self._ts[hi - 1]}")
                full[k : k + len(u.columns)] = row
                k += len(u.columns)
        if self.spec.cross:
            self._cross_columns(full)
        out[:] = full if self._sel is None else full[self._sel]
        return True

    def atr(self, n: int) -> float:
        """core.protection.atr at the latest bar (NaN with fewer than n + 1 bars)."""
        o = self._ohlc
        return float(protection.atr(o[1], o[2], o[3], self._n - 1, n)) if self._n > n else math.nan

    def closes(self, end_ns: int) -> tuple[np.ndarray, np.ndarray]:
        """(bar ends, closes) of the buffered bars ending at or before ``end_ns``, oldest first."""
        period_ns = self.spec.period_minutes * 60_000_000_000
        ends = self._ts[: self._n] + period_ns
        k = int(np.searchsorted(ends, end_ns, side="right"))
        return ends[:k], self._ohlc[3, :k]

    def _cross_columns(self, full: np.ndarray) -> None:
        from stairway.core.cross_features import cross_row

        if self.cross_view is None:
            raise ValueError(f"features.cross_instruments {list(self.spec.cross)}: no other instruments' bars here")
        spec = self.spec
        period_ns = spec.period_minutes * 60_000_000_000
        t_end = int(self._ts[self._n - 1]) + period_ns
        lags = np.array(spec.cross_lags, np.int64)
        k = len(spec.all_market_names) - len(spec.cross) * (len(lags) + 1)
        for s in spec.cross:
            ends, closes = self.cross_view(s, t_end)
            cross_row(ends, closes, t_end, period_ns, spec.vol_window, lags, full[k : k + len(lags) + 1])
            k += len(lags) + 1
