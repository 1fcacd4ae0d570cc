"""Trainer environment vs daemon slot: the same bars must give the same observations, and
the same actions the same fills, positions and PnL."""

import asyncio
import sqlite3

import numpy as np
import pytest

from stairway.core.bar_files import load_bars
from stairway.core.bar_ticks import bars_to_ticks
from stairway.core.execution import ExecutionModel
from stairway.core.policy import ModelCard, PPOPolicy, ScriptedPolicy
from stairway.core.position import PS_AVG, PS_FINANCING, PS_REALIZED, PS_UNITS, equity
from stairway.daemon.account import Account
from stairway.daemon.paper_broker import PaperBroker
from stairway.daemon.risk import RiskConfig, RiskEngine
from stairway.daemon.slot import Slot, SlotOptions
from stairway.daemon.store import Store
from stairway.trainer.env import RS_FORCED, VecTradingEnv
from stairway.trainer.evaluation import evaluate
from stairway.trainer.history import history_from_bars
from tests.helpers import EURUSD, tiny_checkpoint

N_BARS = 420
# Tiers out of reach: parity of observations, fills and PnL on their own
NO_TIERS = RiskConfig(drawdown_tiers_pct=(90.0, 91.0, 92.0, 93.0))
# Tiers a random policy reaches on hourly EUR/USD within a few days: warn, halve, stop, flatten
LOW_TIERS = RiskConfig(drawdown_tiers_pct=(0.05, 0.1, 0.15, 0.2))


def run_slot(cfg, spec, ex, bars, policy, db, batch_sizes, risk_cfg=NO_TIERS):
    ticks = bars_to_ticks(
        bars, cfg.bars.period_ns, cfg.data.bars_side, cfg.data.modelled_spread_pips * cfg.instrument.pip_size
    )

    async def go():
        store = await Store.open(db)
        slot = Slot(
            "r",
            "EUR_USD",
            spec,
            cfg.bars.builder(),
            ex,
            policy,
            PaperBroker(ex),
            store,
            Account(RiskEngine(risk_cfg, cfg.instrument.lot_units, 60), 100_000.0),
            SlotOptions(cfg.instrument.calendar()),
        )
        pos, k = 0, 0
        while pos < len(ticks):
            n = batch_sizes[k % len(batch_sizes)]
            slot.on_ticks(ticks[pos : pos + n])
            await store.flush()
            pos, k = pos + n, k + 1
        slot.finish()
        await store.flush()
        rows = await (
            await store.db.execute("SELECT ts_ns, units, avg_price, realized, equity FROM positions ORDER BY ts_ns")
        ).fetchall()
        # positions are marked from the first bar (issue 9.4); the env starts at the first decision
        rows = [r for r in rows if r[0] >= slot.counters.first_decision_bar_ts]
        fills = await (
            await store.db.execute("SELECT units, price, commission FROM fills ORDER BY ts_ns, seq")
        ).fetchall()
        await store.close()
        return slot, rows, fills

    return asyncio.run(go())


def run_env(cfg, spec, ex, bars, actions, risk_cfg=NO_TIERS, safe_f=None):
    """The env over the same bars; like the daemon, it takes no decision on a bar where the
    flatten tier closes the position, and the scripted actions move on only on decisions."""
    hist = history_from_bars(bars, cfg, spec)
    n = len(hist) - 2 - (spec.window - 1) + 1
    env = VecTradingEnv(hist, spec, ex, 100_000.0, 1, n, seed=0, auto_reset=False, risk=risk_cfg, safe_f=safe_f)
    obs = env.reset(np.array([spec.window - 1])).copy()
    observations, states = [], []
    k = 0
    for _ in range(n):
        if env.rstate[0, RS_FORCED]:
            a = 0
        else:
            observations.append(obs[0].copy())
            a, k = actions[k], k + 1
        obs, _, _ = env.step(np.array([a]))
        i = env.bar[0]
        st = env.state[0]
        states.append(
            (st[PS_UNITS], st[PS_AVG], st[PS_REALIZED], equity(st, hist.last_bid[i], hist.last_ask[i], 100_000.0))
        )
    return hist, observations, states


@pytest.mark.parametrize("liquidity, latency_ms", [(5.0, 250.0), (0.3, 250.0), (0.7, 20 * 60 * 1000.0)])
def test_parity_observations_fills_and_pnl(tmp_path, market_cfg, spec, liquidity, latency_ms):
    cfg = market_cfg.model_copy(
        update={
            "execution": market_cfg.execution.model_copy(
                update={"liquidity_lots_per_quote": liquidity, "latency_ms": latency_ms}
            )
        }
    )
    ex = ExecutionModel.from_config(cfg.execution, cfg.instrument)
    bars = load_bars(EURUSD)[0][:N_BARS]
    actions = np.random.default_rng(7).integers(0, 4, size=N_BARS).tolist()
    policy = ScriptedPolicy(actions)
    slot, rows, fills = run_slot(cfg, spec, ex, bars, policy, tmp_path / "p.db", batch_sizes=[1, 7, 64, 3, 500])
    hist, env_obs, env_states = run_env(cfg, spec, ex, bars, actions)

    # observations: the daemon decided on exactly the bars the env stepped through
    assert len(policy.observations) == len(env_obs) == N_BARS - spec.window
    diff = np.max(np.abs(np.array(policy.observations) - np.array(env_obs)))
    assert diff <= 1e-12
    # positions and equity after every bar (daemon rows start at the first decision bar)
    daemon_states = [tuple(r[1:]) for r in rows[1:]]
    assert len(daemon_states) == len(env_states)
    assert np.max(np.abs(np.array(daemon_states) - np.array(env_states))) <= 1e-9
    # the same summary through the trainer's evaluation
    env_summary, _ = evaluate(None, hist, spec, ex, 100_000.0, 0, actions=np.array(actions), risk=NO_TIERS)
    assert env_summary == pytest.approx(slot.tracker.summary(), rel=1e-12, abs=1e-9)  # risk counts included
    assert env_summary["trades"] > 20
    assert env_summary["flattens"] == env_summary["halted_bars"] == 0
    if liquidity < 1.0:  # partial fills really happened: more fills than orders
        assert len(fills) > slot.counters.orders


def test_parity_with_builtin_and_plugin_features(tmp_path, market_cfg):
    """Issue 20 §3: the built-in families and a user's plug-in file, through the daemon's slot
    and the trainer's env, observation for observation."""
    from stairway.core.config import load_config
    from stairway.core.features import FeatureSpec
    from stairway.trainer.config import TrainerConfig
    from tests.helpers import ROOT

    env = {
        "STAIRWAY_FEATURES__PLUGINS": f'["{ROOT / "examples" / "features" / "gap_and_range.py"}"]',
        "STAIRWAY_FEATURES__EXTRA": '["mtf", "tod_harmonics", "gap", "range_z"]',
    }
    cfg = load_config(TrainerConfig, ROOT / "config" / "trainer.toml", environ=env)
    spec = FeatureSpec.from_config(cfg)
    ex = ExecutionModel.from_config(cfg.execution, cfg.instrument)
    bars = load_bars(EURUSD)[0][:N_BARS]
    actions = np.random.default_rng(11).integers(0, 4, size=N_BARS).tolist()
    policy = ScriptedPolicy(actions)
    run_slot(cfg, spec, ex, bars, policy, tmp_path / "p.db", batch_sizes=[1, 9, 500])
    _, env_obs, _ = run_env(cfg, spec, ex, bars, actions)
    assert len(policy.observations) == len(env_obs) == N_BARS - spec.window
    daemon = np.array(policy.observations)
    assert daemon.shape[1] == spec.obs_dim == FeatureSpec.from_config(market_cfg).obs_dim + 14
    assert np.array_equal(daemon, np.array(env_obs))
    assert daemon[:, spec.names.index("d1_pos")].std() > 0.3  # the added columns carry information


def test_parity_with_financing_charged_at_the_daily_roll(tmp_path, market_cfg, spec):
    """Holding costs (core.execution.financing_*) in both: the same charges, to the cent, and
    they are real: realised PnL differs from the run without them by exactly what was charged."""
    base = market_cfg.execution
    runs = {}
    for rates in ((0.0, 0.0), (3.0, -1.0)):
        execution = base.model_copy(
            update={"financing_long_pct_per_year": rates[0], "financing_short_pct_per_year": rates[1]}
        )
        cfg = market_cfg.model_copy(update={"execution": execution})
        ex = ExecutionModel.from_config(cfg.execution, cfg.instrument)
        bars = load_bars(EURUSD)[0][:N_BARS]
        actions = np.random.default_rng(11).choice([0, 0, 0, 0, 1, 2, 3], size=N_BARS).tolist()
        policy = ScriptedPolicy(actions)
        slot, rows, _ = run_slot(cfg, spec, ex, bars, policy, tmp_path / f"f{rates[0]}.db", batch_sizes=[5, 64, 999])
        _, env_obs, env_states = run_env(cfg, spec, ex, bars, actions)
        assert np.max(np.abs(np.array(policy.observations) - np.array(env_obs))) <= 1e-12
        daemon_states = [tuple(r[1:]) for r in rows[1:]]
        assert np.max(np.abs(np.array(daemon_states) - np.array(env_states))) <= 1e-9
        runs[rates] = (slot, env_states)
    (flat_slot, flat_env), (fin_slot, fin_env) = runs[(0.0, 0.0)], runs[(3.0, -1.0)]
    charged = fin_slot.position[PS_FINANCING]
    assert flat_slot.position[PS_FINANCING] == 0.0 and abs(charged) > 1.0  # dollars, over ~14 days of holding
    assert fin_slot.counters.financing == pytest.approx(charged)
    assert flat_env[-1][2] - fin_env[-1][2] == pytest.approx(charged, abs=1e-6)  # realised, env side


def test_no_look_ahead_through_the_daemon(tmp_path, market_cfg, spec):
    """Changing every bar after t changes neither the observation nor the decision at t."""
    ex = ExecutionModel.from_config(market_cfg.execution, market_cfg.instrument)
    _, net = tiny_checkpoint(tmp_path / "m", spec, seed=3)
    bars = load_bars(EURUSD)[0][:300]
    t = 200
    changed = bars.copy()
    scale = np.random.default_rng(1).uniform(0.97, 1.03, len(bars) - t - 1)
    for f in ("open", "high", "low", "close"):
        changed[f][t + 1 :] *= scale

    class Recording(PPOPolicy):
        def __init__(self, net):
            super().__init__(net, "x")
            self.log = []

        def act(self, obs):
            a = super().act(obs)
            self.log.append((obs.copy(), a))
            return a

    p1, p2 = Recording(net), Recording(net)
    run_slot(market_cfg, spec, ex, bars, p1, tmp_path / "a.db", [97])
    run_slot(market_cfg, spec, ex, changed, p2, tmp_path / "b.db", [13])
    k = t - (spec.window - 1)  # decision index of bar t
    for (o1, a1), (o2, a2) in zip(p1.log[: k + 1], p2.log[: k + 1]):
        assert np.array_equal(o1, o2) and a1 == a2
    assert any(not np.array_equal(o1, o2) for (o1, _), (o2, _) in zip(p1.log[k + 1 :], p2.log[k + 1 :]))
    assert len({a for _, (a, _) in p1.log}) > 1


@pytest.mark.parametrize("batches", [[10**9], [1, 7, 500]], ids=["bulk", "mixed"])
@pytest.mark.parametrize("halt_resume", ["next_session", "operator"])
def test_parity_includes_the_risk_engine_when_the_flatten_tier_fires(tmp_path, market_cfg, spec, halt_resume, batches):
    """Issue 10 §5: the env applies the daemon's drawdown tiers (halve size, stop opening,
    flatten + halt), caps and blocked intents (core.risk_rules). A replay in which the flatten
    tier fires is identical in both: decisions, fills, positions, equity, the summary, and the
    risk counts, whatever the daemon's batch size: both mark and tier an open position at every
    quote (daemon.slot_quotes, the env's _tier_at), so the flatten tier fires at the same quote.
    Issue 19.8: the halt means the same in both, over a window
    that spans flattens and later sessions: it ends with the session (next_session), or stays
    to the end (operator: the env has no operator)."""
    ex = ExecutionModel.from_config(market_cfg.execution, market_cfg.instrument)
    bars = load_bars(EURUSD)[0][:N_BARS]
    actions = np.random.default_rng(11).integers(0, 4, size=N_BARS).tolist()
    policy = ScriptedPolicy(actions)
    risk = LOW_TIERS.model_copy(update={"halt_resume": halt_resume})
    slot, rows, _ = run_slot(market_cfg, spec, ex, bars, policy, tmp_path / "r.db", batches, risk)
    hist, env_obs, env_states = run_env(market_cfg, spec, ex, bars, actions, risk)

    events = slot.counters.risk_events
    assert events.get("flatten", 0) >= 1  # the flatten tier fired and halted
    if halt_resume == "operator":
        assert slot.risk.state.halted and "halt_ended" not in events and events["flatten"] == 1
    else:  # halts ended with their sessions and trading went on: flattened again on later days
        assert events["halt_ended"] >= 1 and events["flatten"] >= 2
    assert events.get("tier_halve_size", 0) >= 1 and events.get("stop_opening", 0) + events.get("halted", 0) >= 1
    # the same decisions: a flatten at a quote leaves the next bar's decision to the policy (halted:
    # it can only close); one still working at the close, or one from a mark, takes that decision's place
    assert len(policy.observations) == len(env_obs) <= N_BARS - spec.window
    assert np.max(np.abs(np.array(policy.observations) - np.array(env_obs))) <= 1e-12
    daemon_states = [tuple(r[1:]) for r in rows[1:]]
    assert np.max(np.abs(np.array(daemon_states) - np.array(env_states))) <= 1e-9
    env_summary, _ = evaluate(None, hist, spec, ex, 100_000.0, 0, actions=np.array(actions), risk=risk)
    assert env_summary == pytest.approx(slot.tracker.summary(), rel=1e-12, abs=1e-9)  # risk counts included
    assert env_summary["flattens"] == events["flatten"]
    assert env_summary["blocked_intents"] == slot.counters.blocked_intents > 0
    assert env_summary["halted_bars"] > 0
    # and without the tiers the same actions trade on: the risk engine changed the outcome
    free, _ = evaluate(None, hist, spec, ex, 100_000.0, 0, actions=np.array(actions), risk=NO_TIERS)
    assert free["trades"] > env_summary["trades"]


def test_parity_with_price_bounds_that_cancel_orders(tmp_path, market_cfg, spec):
    """Issue 21 §2: with a bound tight enough to cancel some decisions' orders (0.4 pips past
    the bar's last quote), the env and the daemon cancel the same ones: same fills and PnL."""
    cfg = market_cfg.model_copy(update={"execution": market_cfg.execution.model_copy(update={"price_bound_pips": 0.4})})
    ex = ExecutionModel.from_config(cfg.execution, cfg.instrument)
    bars = load_bars(EURUSD)[0][:N_BARS]
    actions = np.random.default_rng(9).integers(0, 4, size=N_BARS).tolist()
    policy = ScriptedPolicy(actions)
    slot, rows, fills = run_slot(cfg, spec, ex, bars, policy, tmp_path / "p.db", batch_sizes=[1, 7, 500])
    _, env_obs, env_states = run_env(cfg, spec, ex, bars, actions)
    assert np.array_equal(np.array(policy.observations), np.array(env_obs))
    daemon_states = [tuple(r[1:]) for r in rows[1:]]
    assert np.max(np.abs(np.array(daemon_states) - np.array(env_states))) <= 1e-9
    n = slot.counters.bound_cancels
    assert 5 < n < slot.counters.orders and slot.counters.risk_events["price_bound"] == n
    # the same decisions without a bound: nothing cancelled, more fills
    free = ExecutionModel.from_config(cfg.execution.model_copy(update={"price_bound_pips": None}), cfg.instrument)
    unbounded_slot, _, free_fills = run_slot(
        cfg, spec, free, bars, ScriptedPolicy(actions), tmp_path / "q.db", batch_sizes=[500]
    )
    assert unbounded_slot.counters.bound_cancels == 0 and len(free_fills) > len(fills)


@pytest.mark.parametrize(
    "protection, without",
    [
        # a fixed stop 8 pips from each decision's quote; against no stop at all
        ({"stop_pips": 8.0}, {"stop_pips": None}),
        # a stop 1.5 ATRs (12 bars) away; each entry sized to lose 0.05 % of the balance there
        ({"stop_atr_multiple": 1.5, "stop_atr_bars": 12, "risk_per_trade_pct": 0.05}, {"risk_per_trade_pct": None}),
        # a fixed size; the ATR stop pulled in to lose at most 120 (account currency) per position
        ({"stop_atr_multiple": 1.5, "stop_atr_bars": 12, "stop_max_loss": 120.0}, {"stop_max_loss": None}),
        # risk-sized as above, scaled by the model's safe-f (0.4); against the same unscaled
        (
            {"stop_atr_multiple": 1.5, "stop_atr_bars": 12, "risk_per_trade_pct": 0.05, "safe_f_sizing": True},
            {"safe_f_sizing": False},
        ),
        # a trailing stop 8 pips behind the price (armed at the fill quote); against the same stop fixed
        ({"stop_pips": 8.0, "stop_trailing": True}, {"stop_trailing": False}),
        # a trailing stop 1.5 ATRs behind, capped at 120 per position; against it fixed
        (
            {"stop_atr_multiple": 1.5, "stop_atr_bars": 12, "stop_max_loss": 120.0, "stop_trailing": True},
            {"stop_trailing": False},
        ),
    ],
    ids=["fixed", "atr-risk-sized", "atr-max-loss", "safe-f-scaled", "trailing", "trailing-atr"],
)
def test_parity_with_protective_stops_that_fire(tmp_path, market_cfg, spec, protection, without):
    """Issue 21 §1, §5 (the one execution model): a protective stop, armed by the opening fill,
    fires at the same quote in the env and the daemon's paper broker, at the quote's price less
    slippage, with the same costs; its distance (fixed, or from the average true range capped by
    a maximum loss) and the size from the balance at risk come from one kernel (core.protection):
    identical observations (the position features see the stopped-out position), positions,
    equity and summary; each setting changes the outcome."""
    cfg = market_cfg.model_copy(update={"execution": market_cfg.execution.model_copy(update=protection)})
    ex = ExecutionModel.from_config(cfg.execution, cfg.instrument)
    bars = load_bars(EURUSD)[0][:N_BARS]
    actions = np.random.default_rng(21).choice([0, 0, 0, 1, 2, 3], size=N_BARS).tolist()
    sf = 0.4 if protection.get("safe_f_sizing") else None  # the model's safe-f, as a checkpoint records it
    policy, evaluated = ScriptedPolicy(actions), ScriptedPolicy(actions)
    policy.card = evaluated.card = ModelCard(safe_f=sf)
    slot, rows, fills = run_slot(cfg, spec, ex, bars, policy, tmp_path / "p.db", batch_sizes=[1, 7, 64, 500])
    hist, env_obs, env_states = run_env(cfg, spec, ex, bars, actions, safe_f=sf)
    assert np.array_equal(np.array(policy.observations), np.array(env_obs))
    daemon_states = [tuple(r[1:]) for r in rows[1:]]
    assert np.max(np.abs(np.array(daemon_states) - np.array(env_states))) <= 1e-9
    env_summary, _ = evaluate(evaluated, hist, spec, ex, 100_000.0, 0, risk=NO_TIERS)
    assert env_summary == pytest.approx(slot.tracker.summary(), rel=1e-12, abs=1e-9)
    fired = slot.counters.risk_events.get("stop_filled", 0)
    assert fired > 5, slot.counters.risk_events
    # the decision rows say why the position ended: the next decision after each stop names it
    with sqlite3.connect(tmp_path / "p.db") as c:
        notes = [r[0] for r in c.execute("SELECT risk_note FROM decisions ORDER BY bar_ts_ns") if r[0]]
    assert sum("ended at its protective stop" in n for n in notes) == fired
    positions = {abs(s[0]) for s in env_states} - {0.0}
    if "risk_per_trade_pct" in protection:  # sizes follow the range: many, all under the 1-lot limit
        assert len(positions) > 10 and max(positions) <= 100_000
    else:
        assert positions == {100_000.0}
    other = cfg.execution.model_copy(update=without)
    _, _, other_states = run_env(
        cfg.model_copy(update={"execution": other}),
        spec,
        ExecutionModel.from_config(other, cfg.instrument),
        bars,
        actions,
        safe_f=sf,
    )
    assert np.array(other_states).shape == np.array(env_states).shape
    assert np.max(np.abs(np.array(other_states) - np.array(env_states))) > 1.0
    if sf is not None:  # the same entries at 0.4 of the size (whole units; balances differ a little)
        held = [(abs(a[0]), abs(b[0])) for a, b in zip(env_states, other_states) if a[0] and b[0]]
        assert len(held) > 50
        assert np.median([a / b for a, b in held]) == pytest.approx(0.4, abs=0.01)


def test_the_shipped_fx_configs_carry_the_stop_the_trainer_trains_with():
    """OANDA places them (stopLossOnFill), IB as a GTC stop order, the paper broker simulates
    them: every shipped FX config carries one (3 ATRs of 24 bars), the trainer's as the
    daemon's."""
    from stairway.core.config import load_config
    from stairway.daemon.config import DaemonConfig
    from stairway.trainer.config import TrainerConfig
    from tests.helpers import ROOT

    secrets = {"OANDA_TOKEN": "t", "OANDA_ACCOUNT": "101-001-1-001"}
    for name in (
        "live-ib.toml",
        "live-oanda.toml",
        "paper.toml",
        "paper-live-ib.toml",
        "paper-live-oanda.toml",
        "portfolio-oanda.toml",
    ):
        ex = load_config(DaemonConfig, ROOT / "config" / name, environ=secrets).execution
        assert ex.stop_atr_multiple == 3.0 and ex.stop_atr_bars == 24, name
    for name in ("trainer.toml", "trainer-muzero.toml", "trainer-service.toml"):
        assert load_config(TrainerConfig, ROOT / "config" / name, environ={}).execution.stop_atr_multiple == 3.0
