"""The dual-lane hold-bonus controller (reward shaping in training).

Given the hold-rate error e = target - actual (positive: the policy holds less than it
should) and the regime r, it returns the bonus paid for a HOLD action:

    fast_t = fast_gain · (1 + regime_gain · r_t) · e_t            every step
    slow   = clip(slow + slow_gain · mean(e over the last 25 steps), -1, 1)
                                                                 every 25th step only
    bonus  = clip(base · (1 + fast_t + slow), 0, 2 · base)         a Python float

Defaults from the seed: base 0.01, fast gain 0.25, regime gain 0.3, slow gain 0.05,
slow period 25. A positive error raises the bonus above base, a negative one lowers it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class DualLaneController:
    base: float = 0.01
    fast_gain: float = 0.25
    regime_gain: float = 0.3
    slow_gain: float = 0.05
    slow_every: int = 25
    slow: float = 0.0
    steps: int = 0
    _acc: float = 0.0

    def __post_init__(self) -> None:
        if self.base < 0 or self.slow_every <= 0:
            raise ValueError(f"base must be >= 0 and slow_every > 0 (got {self.base}, {self.slow_every})")

    def step(self, hold_error: float, regime: float = 0.0) -> float:
        e = float(hold_error)
        self.steps += 1
        self._acc += e
        if self.steps % self.slow_every == 0:
            self.slow = min(1.0, max(-1.0, self.slow + self.slow_gain * self._acc / self.slow_every))
            self._acc = 0.0
        fast = self.fast_gain * (1.0 + self.regime_gain * float(regime)) * e
        bonus = self.base * (1.0 + fast + self.slow)
        return float(min(2.0 * self.base, max(0.0, bonus)))
