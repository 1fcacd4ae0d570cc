"""What happens to the daemon's models while it runs (one object the daemon builds at set-up
and hands to what raises the events): a hot swap verified by the model watcher is handed to
its instrument's slot, a refusal is recorded and alerted, and the two automatic rollbacks
(the account's flatten tier, an instrument's live-performance guard) point models/current
back at gold through one decision, ``to_gold``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from stairway.core.policy import Policy
from stairway.daemon.aio import spawn
from stairway.daemon.alerts import Alerter
from stairway.daemon.control import ControlFiles
from stairway.daemon.rows import ModelSwapRow
from stairway.daemon.store import Store

if TYPE_CHECKING:
    from stairway.daemon.config import DaemonConfig, Leg
    from stairway.daemon.slot import Slot

log = structlog.get_logger("daemon")


def to_gold(models_dir: Path, real_orders: bool) -> str:
    """Point ``models_dir``/current at gold; returns what was done. Only a daemon sending real
    orders touches models/current: a paper replay or paper-live run never repoints the
    operator's model."""
    from stairway.core.checkpoint import roll_back

    if not real_orders:
        return "not rolled back: paper run (models/current is the operator's)"
    if not (models_dir / "gold").is_symlink():
        return "no gold model to roll back to"
    roll_back(models_dir, "gold")
    return "rolled back to gold"


class ModelEvents:
    def __init__(
        self,
        cfg: DaemonConfig,
        legs: list[Leg],
        slots: dict[str, Slot],
        alerter: Alerter,
        control: ControlFiles,
        store: Store,
        run_id: str,
    ) -> None:
        """``slots``: the daemon's (filled after this is made: read when an event comes)."""
        self.cfg, self.legs, self.slots = cfg, legs, slots
        self.alerter, self.control, self.store, self.run_id = alerter, control, store, run_id

    def on_flatten_tier(self, reason: str) -> None:
        """The flatten tier: positions are being closed; roll the model back to gold and stop
        trading until an operator starts it again. Only a daemon sending real orders touches
        models/current: a paper replay or paper-live run never repoints the operator's model.
        Rare and critical, so done at once, on the loop (a few file operations), before the
        next quote can be handled."""
        for leg in self.legs:  # the account's tier: every instrument's model goes back to gold
            action = to_gold(leg.models_dir, self.cfg.real_orders)
            log.error("flatten_tier_rollback", instrument=leg.symbol, reason=reason, action=action)
            self.alerter.notify("flatten_tier_rollback", f"{leg.symbol}: {reason}; {action}", level="failure")
        if self.cfg.risk.halt_resume == "operator":  # else the next session trades again (with gold)
            self.control.stop_trading()

    def on_guard_breach(self, instrument: str, detail: str) -> None:
        """The live guard: the instrument's model has stopped working. Roll its model back to
        gold (real orders only, as for the flatten tier) in a worker thread; the watcher then
        swaps gold in between two bars."""
        spawn(self._guard_rollback(instrument, detail), f"guard-rollback-{instrument}")

    async def _guard_rollback(self, instrument: str, detail: str) -> None:
        leg = next(leg for leg in self.legs if leg.symbol == instrument)
        if not self.cfg.guards.rollback_on_breach:
            action = "alert only (guards.rollback_on_breach = false)"
        else:
            try:
                action = await asyncio.to_thread(to_gold, leg.models_dir, self.cfg.real_orders)
            except Exception as e:  # the model store is the trainer's too: report, keep trading
                action = f"roll back failed: {e}"
        log.error("live_guard_breach", instrument=instrument, detail=detail, action=action)
        self.alerter.notify(
            "live_guard", f"{instrument}: {detail}; {action}", key=f"live_guard:{instrument}", level="failure"
        )

    def on_policy_of(self, instrument: str) -> Callable[[Policy, float], None]:
        def on_policy(policy: Policy, t0: float) -> None:
            self.slots[instrument].swap.pending = policy  # applied between two bars (daemon.slot)

        return on_policy

    def on_refused_of(self, instrument: str) -> Callable[[str, str], None]:
        def on_refused(target: str, reason: str) -> None:
            # model_swaps.ts_ns is wall-clock time for swaps and refusals alike
            old = self.slots[instrument].policy.sha
            self.store.add(ModelSwapRow(self.run_id, time.time_ns(), old, Path(target).stem, "refused", reason))
            self.alerter.notify("model_refused", f"{instrument}: {reason}", key=f"model_refused:{instrument}")

        return on_refused
