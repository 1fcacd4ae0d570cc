"""Synthetic hourly markets with a known, planted structure (issue 20 §2): does the learner
find an edge that is there, and only one that is there?

Each generator returns bars (core.types.BAR_DTYPE, Monday 00:00 to Friday 20:00 UTC, hourly,
inside the fx calendar's open hours) and, per bar, the true expected log return of the *next*
bar given everything the generator knows at that bar's close (the oracle's information; a
learner sees only prices). Log returns are r_t = m_t + sigma e_t with sigma = 10 pips a bar
at 1.10 and e_t standard normal; ``strength`` is "weak", "medium" or "strong":

- ``trend``: a latent drift m_t, AR(1) with a half-life of 120 bars, its stationary std
  0.04 / 0.08 / 0.16 sigma; m is never observed, only its effect on prices.
- ``mean_reversion``: log price = a random walk (sigma / 2 a bar) + x_t, x AR(1) with
  innovations of sigma and a half-life of 48 / 12 / 3 bars (the faster, the more of each
  move is predictable: the next return expects -(1 - rho) x_t).
- ``time_of_day``: m = +a sigma from 07:00 to 11:00 UTC and -a sigma from 13:00 to 17:00,
  0 otherwise; a = 0.1 / 0.2 / 0.4.
- ``random_walk``: nothing (m = 0); ``drift``: a constant m = 0.02 sigma (buy-and-hold
  earns it; nothing else is there).

- ``lead_lag`` (``generate_pair``): two instruments, a leader B (a random walk) and a follower
  A whose return over each bar expects a times B's return over the bar before: m_t = a r^B_{t-1},
  a = 0.1 / 0.2 / 0.4. A's own prices carry nothing; only B's last bar does, seen through
  ``features.cross_instruments``.
"""

from __future__ import annotations

import datetime as dt

import numpy as np

from stairway.core.types import BAR_DTYPE

SIGMA = 1e-3
PRICE = 1.10
STRENGTHS = {"weak": 0, "medium": 1, "strong": 2}
MARKETS = ("trend", "mean_reversion", "time_of_day", "random_walk", "drift")
HOUR_NS = 3600 * 10**9


def hours(start: dt.date, n: int) -> np.ndarray:
    """Open times of n hourly bars from ``start`` (a Monday), Monday 00:00 .. Friday 20:00 UTC."""
    t0 = int(dt.datetime(start.year, start.month, start.day, tzinfo=dt.UTC).timestamp()) * 10**9
    out = np.empty(n, np.int64)
    k, t = 0, t0
    while k < n:
        day = (t // (86_400 * 10**9) + 3) % 7  # 0 = Monday
        hour = (t // HOUR_NS) % 24
        if day < 4 or (day == 4 and hour <= 20):
            out[k] = t
            k += 1
        t += HOUR_NS
    return out


def _bars(ts: np.ndarray, logp: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """OHLC from a log-price path (one value per bar close; the open is the previous close)."""
    close = PRICE * np.exp(logp)
    opn = np.concatenate([[PRICE], close[:-1]])
    wick = np.abs(rng.normal(0.0, 0.4 * SIGMA, (2, len(ts)))) * close
    bars = np.empty(len(ts), dtype=BAR_DTYPE)
    bars["ts_ns"], bars["open"], bars["close"] = ts, opn, close
    bars["high"] = np.maximum(opn, close) + wick[0]
    bars["low"] = np.minimum(opn, close) - wick[1]
    bars["volume"] = 1.0
    return bars


def generate(
    market: str, strength: str, n: int = 6000, seed: int = 0, start: dt.date = dt.date(2019, 1, 7)
) -> tuple[np.ndarray, np.ndarray]:
    """(bars, expected next-bar log return at each bar's close)."""
    if market not in MARKETS or strength not in STRENGTHS:
        raise ValueError(f"market {market!r} / strength {strength!r}: known {MARKETS} x {tuple(STRENGTHS)}")
    rng = np.random.default_rng(seed)
    s = STRENGTHS[strength]
    ts = hours(start, n)
    eps = rng.normal(0.0, SIGMA, n)
    m = np.zeros(n)  # m[t]: expected return of bar t, known at the close of bar t-1
    if market == "trend":
        rho = 0.5 ** (1 / 120)
        sd = (0.04, 0.08, 0.16)[s] * SIGMA
        shocks = rng.normal(0.0, sd * np.sqrt(1 - rho**2), n)
        for t in range(1, n):
            m[t] = rho * m[t - 1] + shocks[t]
        logp = np.cumsum(m + eps)
        nxt = rho * m  # E[m_{t+1} | m_t]
    elif market == "mean_reversion":
        rho = 0.5 ** (1 / (48, 12, 3)[s])
        x = np.zeros(n)
        shocks = rng.normal(0.0, SIGMA, n)
        for t in range(1, n):
            x[t] = rho * x[t - 1] + shocks[t]
        level = np.cumsum(eps * 0.5)
        logp = level + x
        nxt = -(1 - rho) * x
    elif market == "time_of_day":
        a = (0.1, 0.2, 0.4)[s] * SIGMA
        hour = (ts // HOUR_NS) % 24
        m = np.where((hour >= 7) & (hour < 11), a, np.where((hour >= 13) & (hour < 17), -a, 0.0))
        logp = np.cumsum(m + eps)
        nxt = np.concatenate([m[1:], [0.0]])
    else:
        mu = 0.02 * SIGMA if market == "drift" else 0.0
        logp = np.cumsum(mu + eps)
        nxt = np.full(n, mu)
    return _bars(ts, logp, rng), nxt


def generate_pair(
    strength: str, n: int = 6000, seed: int = 0, start: dt.date = dt.date(2019, 1, 7)
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The lead-lag market: (follower A's bars, leader B's bars, A's expected next-bar log
    return at each bar's close: a times B's return over that same bar)."""
    if strength not in STRENGTHS:
        raise ValueError(f"strength {strength!r}: known {tuple(STRENGTHS)}")
    rng = np.random.default_rng(seed)
    a = (0.1, 0.2, 0.4)[STRENGTHS[strength]]
    ts = hours(start, n)
    r_b = rng.normal(0.0, SIGMA, n)
    m = a * np.concatenate([[0.0], r_b[:-1]])
    # A's noise is scaled so that A's total variance is sigma^2, as every other market's
    r_a = m + rng.normal(0.0, SIGMA * np.sqrt(1.0 - a * a), n)
    return _bars(ts, np.cumsum(r_a), rng), _bars(ts, np.cumsum(r_b), rng), a * r_b


def oracle_actions(expected: np.ndarray, first: int, last: int, cost: float) -> np.ndarray:
    """The oracle's decisions on bars first..last (target-position actions: 1 BUY, 2 SELL,
    3 CLOSE, 0 HOLD): long when the next bar's expected log return exceeds ``cost`` (a
    one-way cost as a return), short below -cost, flat in between."""
    target = np.where(expected[first : last + 1] > cost, 1, np.where(expected[first : last + 1] < -cost, -1, 0))
    out = np.zeros(len(target), np.int64)
    pos = 0
    for k, p in enumerate(target):
        if p != pos:
            out[k] = {1: 1, -1: 2, 0: 3}[int(p)]
            pos = int(p)
    return out


def overrides(csv) -> dict[str, str]:
    """Environment overrides that point a shipped config at a generated file (mid prices)."""
    return {"STAIRWAY_DATA__BARS_CSV": str(csv), "STAIRWAY_DATA__BARS_SIDE": "mid", "STAIRWAY_BARS__PRICE": "mid"}


def write_csv(path, bars: np.ndarray) -> None:
    """A bar file the loader reads (time, open, high, low, close, volume; UTC ISO times)."""
    with open(path, "w") as f:
        f.write("time,open,high,low,close,volume\n")
        for ts, o, h, lo, c, v in bars.tolist():
            t = dt.datetime.fromtimestamp(ts / 1e9, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
            f.write(f"{t},{o:.6f},{h:.6f},{lo:.6f},{c:.6f},{v:g}\n")
