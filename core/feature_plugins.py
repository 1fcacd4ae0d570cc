"""Feature plug-ins: a user's own features, computed by the one pipeline.

A plug-in is one function over bar arrays, registered by name::

    from stairway.core.feature_plugins import Bars, feature

    @feature("gap", warmup_bars=2)
    def gap(bars: Bars) -> np.ndarray:
        '''Open of this bar against the previous close, in units of the bar's range.'''
        ...  # return one value per bar: shape (n,) or (n, len(columns))

and used by listing its file (or importable module) in ``features.plugins`` and its name in
``features.extra``. The trainer calls the function once on a whole history
(``core.features.batch_market_features``); the daemon calls it on every closed bar with the
last ``FeatureSpec.window`` bars (``FeatureBuffer``) and keeps the last row. So the function
must be causal (row t reads bars 0..t only) and its row t must depend on no more than the
last ``warmup_bars`` bars. Both are checked when a spec is built (``check_plugin``): a
function that looks ahead, reads more history than it declares, returns the wrong shape or
non-finite values after its warm-up is refused at start-up, by name.

Parameters: keyword arguments with defaults given at registration, overridden per feature in
``[features.params.<name>]``; ``warmup_bars`` and ``columns`` may be functions of
(period in minutes, params). The feature spec hash covers each plug-in's name, parameters,
columns, warm-up and the SHA-256 of its source code, so a checkpoint trained with a plug-in
is refused where the plug-in is absent or has changed.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from stairway.core.errors import ConfigError

NS_PER_MINUTE = 60_000_000_000
# Time limits (seconds) on a plug-in's code: the start-up check on a test history, and one
# closed bar in the daemon. A plug-in past its limit is refused (start-up) or stops being
# called (live: that instrument holds, one policy error a bar, until a restart). Python code
# is interrupted at the limit; compiled code that holds the GIL cannot be (systemd's watchdog
# restarts a daemon that stops answering).
CHECK_SECS = 120.0
LIVE_SECS = 5.0


class PluginTimeout(ConfigError):
    """A plug-in did not return within its time limit."""


def call_with_limit(fn: Callable[[], Any], secs: float, what: str) -> Any:
    """``fn()`` on a daemon thread; PluginTimeout when it has not returned after ``secs`` (the
    thread is left behind: a daemon thread never keeps the process from exiting)."""
    import threading

    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the caller as it is
            box["error"] = e

    t = threading.Thread(target=run, daemon=True, name="feature-plugin")
    t.start()
    t.join(secs)
    if t.is_alive():
        raise PluginTimeout(f"{what} did not return within {secs:g} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


class Bars(NamedTuple):
    """Closed bars, oldest first: open times (ns since the epoch, UTC) and OHLC prices."""

    ts_ns: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    period_minutes: int

    def __len__(self) -> int:
        return len(self.ts_ns)

    def head(self, n: int) -> Bars:
        return Bars(self.ts_ns[:n], self.open[:n], self.high[:n], self.low[:n], self.close[:n], self.period_minutes)

    def tail(self, n: int) -> Bars:
        return Bars(
            self.ts_ns[-n:], self.open[-n:], self.high[-n:], self.low[-n:], self.close[-n:], self.period_minutes
        )


@dataclass(frozen=True)
class Plugin:
    name: str
    fn: Callable[..., np.ndarray]
    warmup_bars: int | Callable[[int, dict[str, Any]], int]
    columns: tuple[str, ...] | Callable[[int, dict[str, Any]], tuple[str, ...]] | None
    defaults: dict[str, Any] = field(default_factory=dict)
    doc: str = ""

    @property
    def source_sha(self) -> str:
        try:
            src = inspect.getsource(self.fn)
        except (OSError, TypeError):
            code = getattr(self.fn, "__code__", None)
            src = repr(code.co_code + repr(code.co_consts).encode()) if code is not None else repr(self.fn)
        return hashlib.sha256(src.encode()).hexdigest()[:16]


REGISTRY: dict[str, Plugin] = {}


def feature(
    name: str,
    *,
    warmup_bars: int | Callable[[int, dict[str, Any]], int],
    columns: tuple[str, ...] | Callable[[int, dict[str, Any]], tuple[str, ...]] | None = None,
    **defaults: Any,
) -> Callable[[Callable[..., np.ndarray]], Callable[..., np.ndarray]]:
    """Register ``fn(bars: Bars, **params) -> (n,) or (n, k)`` under ``name``."""

    def register(fn: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
        old = REGISTRY.get(name)
        if old is not None and old.fn.__module__ != fn.__module__:
            raise ConfigError(f"feature plug-in '{name}' is registered twice ({old.fn.__module__}, {fn.__module__})")
        REGISTRY[name] = Plugin(name, fn, warmup_bars, columns, dict(defaults), inspect.getdoc(fn) or "")
        return fn

    return register


@dataclass(frozen=True)
class PluginUse:
    """One plug-in as a spec uses it: resolved parameters, columns and warm-up."""

    name: str
    params: tuple[tuple[str, Any], ...]
    columns: tuple[str, ...]
    warmup: int
    source: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "params": {k: list(v) if isinstance(v, tuple) else v for k, v in self.params},
            "columns": list(self.columns),
            "warmup": self.warmup,
            "source": self.source,
        }

    def compute(self, bars: Bars) -> np.ndarray:
        """(n, len(columns)) values; raises ConfigError on a wrong shape."""
        out = REGISTRY[self.name].fn(bars, **dict(self.params))
        a = np.asarray(out, dtype=np.float64)
        if a.ndim == 1:
            a = a[:, None]
        if a.shape != (len(bars), len(self.columns)):
            raise ConfigError(
                f"feature plug-in '{self.name}' returned shape {np.shape(out)} for {len(bars)} bars; "
                f"expected ({len(bars)},) or ({len(bars)}, {len(self.columns)})"
            )
        return a


def load_sources(refs: Iterable[str]) -> None:
    """Import each plug-in file (a path ending in .py) or module (dotted name)."""
    for ref in refs:
        try:
            if ref.endswith(".py"):
                path = Path(ref).resolve()
                if not path.is_file():
                    raise ConfigError(f"features.plugins: {ref}: no such file")
                mod_name = "stairway_plugin_" + hashlib.sha256(str(path).encode()).hexdigest()[:12]
                if mod_name in sys.modules:
                    continue
                spec = importlib.util.spec_from_file_location(mod_name, path)
                assert spec is not None and spec.loader is not None
                mod = importlib.util.module_from_spec(spec)
                sys.modules[mod_name] = mod
                try:
                    spec.loader.exec_module(mod)
                except BaseException:
                    del sys.modules[mod_name]
                    raise
            else:
                importlib.import_module(ref)
        except ConfigError:
            raise
        except Exception as e:  # a user's file: any error is theirs, named with it
            raise ConfigError(f"features.plugins: {ref}: could not be loaded: {type(e).__name__}: {e}") from None


def _builtin() -> None:
    import stairway.core.feature_families  # noqa: F401  (registers the built-in families)


def resolve(names: Iterable[str], params: dict[str, dict[str, Any]], period_minutes: int) -> tuple[PluginUse, ...]:
    _builtin()
    names = tuple(names)
    unknown_params = sorted(set(params) - set(names))
    if unknown_params:
        raise ConfigError(f"features.params: {unknown_params} not listed in features.extra")
    uses = []
    for name in names:
        p = REGISTRY.get(name)
        if p is None:
            raise ConfigError(
                f"features.extra: unknown feature '{name}'; registered: {', '.join(sorted(REGISTRY)) or 'none'} "
                "(a plug-in's file must be listed in features.plugins)"
            )
        given = params.get(name, {})
        bad = sorted(set(given) - set(p.defaults))
        if bad:
            raise ConfigError(f"features.params.{name}: unknown parameter(s) {bad}; known: {sorted(p.defaults)}")
        for k, v in given.items():
            if not _same_kind(p.defaults[k], v):
                raise ConfigError(
                    f"features.params.{name}.{k} = {v!r}: expected a value like its default {p.defaults[k]!r}"
                )
        merged = {**p.defaults, **given}
        frozen = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in merged.items()))
        kw = dict(frozen)
        try:
            cols = p.columns(period_minutes, kw) if callable(p.columns) else (p.columns or (name,))
            warm = p.warmup_bars(period_minutes, kw) if callable(p.warmup_bars) else p.warmup_bars
        except ConfigError:
            raise
        except Exception as e:  # the plug-in's own warm-up or columns function, on these parameters
            raise ConfigError(f"features.params.{name} = {given}: {type(e).__name__}: {e}") from None
        if not isinstance(warm, int) or warm < 1:
            raise ConfigError(
                f"feature plug-in '{name}': warm-up must be a positive whole number of bars, got {warm!r}"
            )
        uses.append(PluginUse(name, frozen, tuple(cols), warm, p.source_sha))
    return tuple(uses)


def _same_kind(default: Any, value: Any) -> bool:
    """A parameter given in the config has its default's kind: a list for a list, a whole
    number for a whole number, a number for a float, a string for a string."""
    if isinstance(default, (list, tuple)):
        return isinstance(value, (list, tuple)) and all(_same_kind(default[0], x) for x in value[:1] or [])
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    return isinstance(value, type(default))


def synthetic_bars(n: int, period_minutes: int, seed: int) -> Bars:
    """A random walk of n bars from Monday 2020-01-06 00:00 UTC, with a weekend gap."""
    rng = np.random.default_rng(seed)
    step = period_minutes * NS_PER_MINUTE
    ts = 1_578_268_800 * 1_000_000_000 + np.arange(n, dtype=np.int64) * step
    ts[n // 2 :] += 2 * 86_400_000_000_000  # a gap in the middle, as over a weekend
    r = rng.normal(0.0, 1e-3, n) * np.sqrt(period_minutes / 60.0)
    c = 1.1 * np.exp(np.cumsum(r))
    o = np.concatenate([[1.1], c[:-1]])
    wick = np.abs(rng.normal(0.0, 5e-4, (2, n))) * c
    return Bars(ts, o, np.maximum(o, c) + wick[0], np.minimum(o, c) - wick[1], c, period_minutes)


_CHECKED: set[tuple[PluginUse, int]] = set()


def _close(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.allclose(a, b, rtol=1e-9, atol=1e-12, equal_nan=True))


def check_plugin(use: PluginUse, period_minutes: int, window: int) -> None:
    """Refuse, by name, a plug-in that looks ahead, reads more than ``window`` bars of history
    (the daemon's buffer), gives a wrong shape or is not finite after its warm-up."""
    if (use, window) in _CHECKED:
        return
    where = f"feature plug-in '{use.name}'"
    call_with_limit(lambda: _check(use, period_minutes, window), CHECK_SECS, f"{where}, checked on a test history,")
    _CHECKED.add((use, window))


def _check(use: PluginUse, period_minutes: int, window: int) -> None:
    w = use.warmup
    n = 3 * max(w, window) + 64
    bars = synthetic_bars(n, period_minutes, seed=7)
    where = f"feature plug-in '{use.name}'"
    try:
        full = use.compute(bars)
        if not np.isfinite(full[w - 1 :]).all():
            i = int(np.argwhere(~np.isfinite(full[w - 1 :]))[0, 0]) + w - 1
            raise ConfigError(f"{where}: not finite at bar {i} of a test history, after its warm-up of {w} bars")
        other = synthetic_bars(n, period_minutes, seed=8)
        for t in sorted({w - 1, n // 3, n // 2, n - 2}):
            scale = bars.close[t] / other.close[t]

            def splice(a: np.ndarray, b: np.ndarray, t: int = t, scale: float = scale) -> np.ndarray:
                return np.concatenate([a[: t + 1], b[t + 1 :] * scale])

            moved = Bars(
                bars.ts_ns,
                splice(bars.open, other.open),
                splice(bars.high, other.high),
                splice(bars.low, other.low),
                splice(bars.close, other.close),
                period_minutes,
            )
            if not _close(use.compute(moved)[: t + 1], full[: t + 1]):
                raise ConfigError(f"{where} looks ahead: its values up to bar {t} change when later bars change")
        for i in range(window - 1, n, max(1, (n - window) // 150)):
            sub = bars.head(i + 1).tail(window)
            live = use.compute(sub)[-1]
            if not _close(live, full[i]):
                raise ConfigError(
                    f"{where}: the daemon's value at bar {i} (from the last {window} bars) {live.tolist()} != the "
                    f"trainer's (whole history) {full[i].tolist()}: it reads more history than its warm-up of {w} bars"
                )
    except ConfigError:
        raise
    except Exception as e:
        raise ConfigError(f"{where} failed on a test history: {type(e).__name__}: {e}") from None


def describe(use: PluginUse) -> str:
    p = REGISTRY.get(use.name)
    first = (p.doc.splitlines() or [""])[0] if p else ""
    return f"{use.name}: {', '.join(use.columns)} (warm-up {use.warmup} bars) {first}".rstrip()


def spec_difference(theirs: str, ours: str) -> str:
    """What differs between two feature specs' JSON, naming the plug-ins: '' if unreadable."""
    import json

    try:
        a, b = json.loads(theirs), json.loads(ours)
    except (TypeError, ValueError):
        return ""
    pa = {p["name"]: p for p in a.get("plugins", [])}
    pb = {p["name"]: p for p in b.get("plugins", [])}
    out = [f"feature '{n}' is absent here" for n in pa if n not in pb]
    out += [f"feature '{n}' is not in the checkpoint" for n in pb if n not in pa]
    for n in pa.keys() & pb.keys():
        changed = [k for k in ("params", "columns", "warmup", "source") if pa[n].get(k) != pb[n].get(k)]
        if changed:
            what = ", ".join("its code" if k == "source" else k for k in changed)
            out.append(f"feature '{n}' changed ({what})")
    rest = [k for k in sorted(a.keys() | b.keys()) if k not in ("plugins", "names") and a.get(k) != b.get(k)]
    out += [f"{k} {a.get(k)} != {b.get(k)}" for k in rest]
    return "; ".join(out)
