"""What the daemon is made of: ``Given`` (what its caller supplies) and ``Parts`` (every
component set-up builds, daemon.build.build). The Daemon (daemon.app) runs and stops them;
the status view (daemon.status), the supervisor and the model events each receive the parts
they read, never the Daemon."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from stairway.core.broker import Broker, Feed
from stairway.core.execution import ExecutionModel
from stairway.core.policy import Policy
from stairway.daemon.account import Account
from stairway.daemon.alerts import Alerter, Conditions
from stairway.daemon.control import ControlFiles
from stairway.daemon.feeds.replay import ReplayFeed
from stairway.daemon.hot_swap import ModelWatcher
from stairway.daemon.model_events import ModelEvents
from stairway.daemon.order_router import LiveRouter
from stairway.daemon.paper_broker import OrderGateway
from stairway.daemon.reconcile_runner import Reconciler
from stairway.daemon.recorder import TickRecorder
from stairway.daemon.risk import RiskEngine
from stairway.daemon.slot import Slot
from stairway.daemon.store import Store
from stairway.daemon.supervisor import ControlSupervisor

if TYPE_CHECKING:
    from stairway.daemon.brokers.factory import AdapterBundle
    from stairway.daemon.config import Leg


@dataclass(frozen=True)
class Given:
    """What the caller hands the daemon besides its config."""

    policy: Policy | dict[str, Policy] | None = None  # else each instrument's models/current
    ticks: np.ndarray | dict[str, np.ndarray] | None = None  # else a paper replay's bar-derived quotes
    adapters: Callable[..., AdapterBundle] | None = None  # (cfg, environ) -> bundle; else brokers.factory
    environ: dict[str, str] | None = None  # the secrets' source (None: os.environ)
    clock: Callable[[], int] = time.time_ns  # the wall clock live decisions are timed by
    latency_capacity: int = 4096  # decision latencies kept per instrument


@dataclass(eq=False)
class Parts:
    """Every component of a started daemon, by what it is. One instrument's pieces are keyed
    by instrument in ``slots``, ``watchers``, ``recorders`` and ``exs``; the account, the risk
    engine, the order gateway and the store are the account's, shared by its instruments."""

    legs: list[Leg]
    run_id: str
    mode: str  # "paper-replay", "<broker>-paper-live" or "<broker>-live"
    alerter: Alerter
    conditions: Conditions
    control: ControlFiles
    feed: Feed | ReplayFeed
    store: Store
    risk: RiskEngine
    account: Account
    exs: dict[str, ExecutionModel]
    broker: OrderGateway  # the live router (real orders) or the paper broker
    models: ModelEvents
    supervisor: ControlSupervisor
    slots: dict[str, Slot]
    watchers: dict[str, ModelWatcher] = field(default_factory=dict)
    recorders: dict[str, TickRecorder] = field(default_factory=dict)
    quotes: dict[str, np.ndarray] | None = None  # a replay's quotes by instrument
    bundle: AdapterBundle | None = None  # live: the adapter bundle (broker, feed, the adapter's own tasks)
    adapter: Broker | None = None  # live: the broker adapter
    router: LiveRouter | None = None  # real orders only
    reconciler: Reconciler | None = None  # real orders only
    startup_events: list[tuple[str, str]] = field(default_factory=list)  # (instrument, why) of a model fallback
