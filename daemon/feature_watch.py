"""The daemon watching its inputs (issue 20 §3): each instrument's live market features
against the running model's training window (core.feature_drift), on /status and /metrics.

When any feature has more than ``guards.feature_outside_max`` of the last
``guards.feature_drift_window_bars`` observations outside the range the model was trained
on, the slot records a ``feature_drift`` risk event (alerted once) and, with
``guards.feature_drift_action = "observe_only"``, stops opening positions on that instrument
(reductions and closes still go through) until the share falls below half the limit
(``feature_drift_cleared``). A new model resets the window: it is judged on its own profile.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from stairway.core.feature_drift import FeatureDrift
from stairway.core.policy import Policy
from stairway.daemon.risk import Permission


class FeatureWatch:
    def __init__(
        self,
        instrument: str,
        names: tuple[str, ...],
        window: int,
        max_outside: float,
        observe_only: bool,
        permission: Permission,
    ) -> None:
        self.instrument, self.names, self.window = instrument, names, window
        self.max_outside, self.observe_only, self.permission = max_outside, observe_only, permission
        self.drift = FeatureDrift(None, names, window)
        self.breached = False

    def set_model(self, policy: Policy) -> None:
        self.drift = FeatureDrift(policy.card.feature_profile, self.names, self.window)
        self._set(False)

    def _set(self, breached: bool) -> None:
        self.breached = breached
        if self.observe_only:
            self.permission.set_drifted(self.instrument, breached)

    def update(self, row: np.ndarray) -> tuple[str, str] | None:
        """Score one observation; (risk event kind, detail) when the verdict changes."""
        d = self.drift
        d.update(row)
        if not d.full or not d.active:
            return None
        name, outside, psi = d.worst()
        if not self.breached and outside > self.max_outside:
            self._set(True)
            act = "; no new positions (feature_drift_action = observe_only)" if self.observe_only else ""
            return "feature_drift", (
                f"feature {name}: {outside:.0%} of the last {self.window} bars outside the trained range "
                f"(limit {self.max_outside:.0%}; PSI {psi:.2f}){act}"
            )
        if self.breached and outside < self.max_outside / 2:
            self._set(False)
            return "feature_drift_cleared", f"features back in the trained range (worst: {name}, {outside:.0%} outside)"
        return None

    def snapshot(self) -> dict[str, Any]:
        d = self.drift
        return {
            "feature_drift": {
                "active": d.active and d.full,
                "reason": d.reason or ("" if d.full else f"{min(d._n, self.window)}/{self.window} bars"),
                "breached": self.breached,
                "psi": {n: round(float(v), 4) for n, v in zip(self.names, d.psi, strict=True)},
                "outside": {n: round(float(v), 4) for n, v in zip(self.names, d.outside, strict=True)},
            }
        }
