"""Reward shaping for training (never used in evaluation, gates or the daemon).

shaped = base                                   equity change after costs (the env's reward)
       + hold_bonus · [action == HOLD]          dual-lane controller (core.controller) driven
                                                by target - hold rate, target = curriculum
                                                target + regime_target_gain · regime
       - amddp_weight · Δ trade max drawdown    (pips · reward scale)
       - sharpe_weight · base²                  variance penalty (Sharpe-aware)
       - sortino_weight · min(base, 0)²         downside variance penalty (Sortino-aware)
       - drawdown_weight · Δ session drawdown   (pips · reward scale)
       - cvar_weight · max(0, VaR_α - base)     tail penalty; VaR_α tracked online

The hold rate is an exponential average of the share of HOLD actions across all envs;
the controller is stepped once per environment step with the mean error and mean regime.
"""

from __future__ import annotations

import numpy as np

from stairway.core.controller import DualLaneController
from stairway.trainer.config import ShapingConfig


class RewardShaper:
    def __init__(self, cfg: ShapingConfig, num_envs: int, unit_scale: float) -> None:
        self.cfg = cfg
        self.controller = DualLaneController(
            cfg.base_hold_bonus, cfg.fast_gain, cfg.regime_gain, cfg.slow_gain, cfg.slow_every
        )
        self.target = cfg.target_hold_rate
        self.hold_rate = self.target
        self.unit_scale = unit_scale  # reward units per pip
        self.session_peak = np.full(num_envs, np.nan)
        self.var_q = 0.0
        self.last_bonus = 0.0

    def set_target(self, target_hold_rate: float) -> None:
        self.target = float(target_hold_rate)

    def shape(
        self,
        actions: np.ndarray,
        base: np.ndarray,
        regime: np.ndarray,
        dd_increase_pips: np.ndarray,
        equity_pips: np.ndarray,
        done: np.ndarray,
    ) -> np.ndarray:
        c = self.cfg
        hold = actions == 0
        a = c.hold_rate_ema
        self.hold_rate = (1 - a) * self.hold_rate + a * float(hold.mean())
        r_mean = float(regime.mean())
        target = min(1.0, max(0.0, self.target + c.regime_target_gain * r_mean))
        out = base.copy()
        if c.hold_bonus:
            self.last_bonus = self.controller.step(target - self.hold_rate, r_mean)
            out += self.last_bonus * hold
        if c.amddp_weight:
            out -= c.amddp_weight * dd_increase_pips * self.unit_scale
        if c.sharpe_weight:
            out -= c.sharpe_weight * base * base
        if c.sortino_weight:
            out -= c.sortino_weight * np.minimum(base, 0.0) ** 2
        if c.drawdown_weight:
            peak = np.where(np.isnan(self.session_peak), equity_pips, np.maximum(self.session_peak, equity_pips))
            prev_dd = np.where(
                np.isnan(self.session_peak), 0.0, self.session_peak - np.minimum(self.session_peak, equity_pips)
            )
            out -= c.drawdown_weight * np.maximum(0.0, (peak - equity_pips) - prev_dd) * self.unit_scale
            self.session_peak = np.where(done, np.nan, peak)
        if c.cvar_weight:
            # online alpha-quantile (stochastic approximation) of the base reward
            self.var_q += 0.01 * (c.cvar_alpha - float((base < self.var_q).mean()))
            out -= c.cvar_weight * np.maximum(0.0, self.var_q - base)
        return out
