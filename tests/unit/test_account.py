"""The account several instruments share: drawdown tiers on the sum of their equity, the
margin limit, per-instrument flatten files."""

import asyncio
import json

import numpy as np
import pytest

from stairway.cli import main as cli_main
from stairway.core.bar_builder import BarBuilder
from stairway.core.config import RiskConfig
from stairway.core.execution import ExecutionModel
from stairway.core.types import TICK_DTYPE
from stairway.daemon.account import Account
from stairway.daemon.build import load_current_policy
from stairway.daemon.control import ControlFiles, hint
from stairway.daemon.paper_broker import PaperBroker
from stairway.daemon.risk import RiskEngine
from stairway.daemon.slot import Slot
from stairway.daemon.store import Store
from tests.helpers import daemon_config, portfolio_bars, portfolio_config, tiny_checkpoint

LOT = 100_000.0
HOUR = 3600 * 10**9
T0 = 1_507_536_000 * 10**9  # Monday 2017-10-09 08:00 UTC, markets open


def quote(ts, bid):
    t = np.zeros(1, dtype=TICK_DTYPE)
    t[0] = (ts, bid, bid + 0.0001)
    return t


@pytest.fixture()
def two_slots(tmp_path, spec, market_cfg):
    tiny_checkpoint(tmp_path / "models", spec, seed=1)
    policy = load_current_policy(tmp_path / "models", spec)
    risk = RiskEngine(RiskConfig(), LOT, 60)  # tiers 1.5 / 1.8 / 2.0 / 2.5 %
    account = Account(risk, 100_000.0)
    ex = ExecutionModel.from_config(market_cfg.execution, market_cfg.instrument)
    broker = PaperBroker(ex)
    store = asyncio.run(Store.open(tmp_path / "s.db"))
    slots = {
        inst: Slot("r", inst, spec, BarBuilder(HOUR, "ask"), ex, policy, broker, store, account)
        for inst in ("EUR_USD", "GBP_USD")
    }
    yield slots, account, risk, broker
    asyncio.run(store.close())


def test_drawdown_tiers_count_every_instrument_of_the_account(two_slots):
    slots, account, risk, broker = two_slots
    eur, gbp = slots["EUR_USD"], slots["GBP_USD"]
    eur.orders.set_position(LOT, 1.10000)
    gbp.orders.set_position(LOT, 1.30000)
    eur.on_ticks(quote(T0, 1.10000))  # each instrument's opening equity: flat
    gbp.on_ticks(quote(T0, 1.30000))
    eur.on_ticks(quote(T0 + 10**9, 1.08700))  # -1,300 on EUR: 1.3 % of the account
    assert risk.state.tier == 0 and not broker.working  # alone, below the first tier
    gbp.on_ticks(quote(T0 + 2 * 10**9, 1.29000))  # -1,000 more on GBP: 2.3 % -> stop opening
    assert risk.state.tier == 3 and account.drawdown_pct == pytest.approx(2.3, abs=0.01)
    assert not broker.working
    gbp.on_ticks(quote(T0 + 3 * 10**9, 1.28800))  # -1,200: 2.5 % -> flatten, both instruments
    assert risk.state.tier == 4 and risk.state.halted and account.flattens == 1
    assert "GBP_USD" in broker.working  # the instrument that crossed closes at once
    eur.on_ticks(quote(T0 + 4 * 10**9, 1.08700))  # the other at its next quote
    for inst in ("EUR_USD", "GBP_USD"):
        order = broker.working[inst]
        assert order.intent.units == LOT and int(order.intent.side) == -1  # closes the long
    # an opening order is refused on either instrument now; a closing one is not
    assert risk.check("EUR_USD", LOT, LOT).units == 0.0
    assert risk.check("GBP_USD", LOT, -LOT).units == -LOT


def test_the_margin_limit_refuses_what_would_cross_it_and_never_blocks_a_reduction():
    risk = RiskEngine(RiskConfig(max_total_lots=10.0, max_position_lots=2.0), LOT, 60)
    account = Account(risk, 100_000.0, max_margin_pct=5.0)
    for inst, mid in (("EUR_USD", 1.17), ("GBP_USD", 1.30), ("USD_JPY", 112.0)):
        risk.add_instrument(inst, LOT)
        account.margin_rates[inst] = 0.02
        account.on_quote(inst, mid, mid)
    risk.on_position("EUR_USD", LOT)  # 117,000 USD notional: 2.34 % margin
    assert account.margin_pct == pytest.approx(2.34)
    assert risk.check("GBP_USD", 0.0, LOT).units == LOT  # +2.60 % -> 4.94 %
    risk.on_position("GBP_USD", LOT)
    d = risk.check("USD_JPY", 0.0, LOT)  # based in USD: 100,000 notional, +2.00 % -> 6.94 %
    assert d.units == 0.0 and d.kind == "margin_limit" and "6.9 %" in d.note and "5 %" in d.note
    assert risk.check("GBP_USD", LOT, -LOT).units == -LOT  # closing is always allowed
    account.broker_margin_pct = 9.0  # the broker's own figure, when higher, is the one that counts
    assert risk.check("EUR_USD", 0.0, 0.5 * LOT).kind == "margin_limit"


def test_a_working_order_counts_against_the_total_before_it_fills():
    risk = RiskEngine(RiskConfig(max_total_lots=2.0), LOT, 60)
    risk.on_position("EUR_USD", LOT)
    risk.on_working("GBP_USD", LOT)  # sent, not filled yet
    d = risk.check("AUD_USD", 0.0, LOT)
    assert d.units == 0.0 and d.kind == "position_limit"
    risk.on_working("GBP_USD", 0.0)
    assert risk.check("AUD_USD", 0.0, LOT).units == LOT


def test_flatten_files_per_instrument(tmp_path):
    c = ControlFiles(tmp_path / "control", instruments=["EUR_USD", "GBP_USD"])
    (c.dir / "FLATTEN_GBP_USD").write_text("")
    (c.dir / "FLATTEN_GBPUSD").write_text("")  # a typo: not a command, reported with a hint
    st = c.poll()
    assert st.flatten_requests(["EUR_USD", "GBP_USD"]) == [("FLATTEN_GBP_USD", ["GBP_USD"])]
    assert st.unknown == ("FLATTEN_GBPUSD",) and "FLATTEN_GBP_USD" in hint("FLATTEN_GBPUSD", c.known)
    (c.dir / "FLATTEN").write_text("")
    assert c.poll().flatten_requests(["EUR_USD", "GBP_USD"])[0] == ("FLATTEN", ["EUR_USD", "GBP_USD"])
    c.consume("FLATTEN_GBP_USD")
    assert not (c.dir / "FLATTEN_GBP_USD").exists()


def test_ctl_flatten_one_instrument(tmp_path, capsys):
    files = portfolio_bars(tmp_path)
    cfg, path = daemon_config(tmp_path, files["EUR_USD"], "2017-10-01", "2017-11-01")
    text = path.read_text()
    legs = ", ".join(f'{{ symbol = "{s}", bars_csv = "{p}" }}' for s, p in files.items())
    path.write_text(text + f"\n[portfolio]\ninstruments = [{legs}]\n")
    assert portfolio_config(cfg, files).legs()[1].symbol == "GBP_USD"
    assert cli_main(["ctl", "flatten", "--instrument", "GBP_USD", "--config", str(path)]) == 0
    assert (tmp_path / "state" / "control" / "FLATTEN_GBP_USD").exists()
    assert "close GBP_USD" in capsys.readouterr().out
    assert cli_main(["ctl", "flatten", "--instrument", "XAU_USD", "--config", str(path)]) != 0
    err = capsys.readouterr().err
    assert "XAU_USD" in err and "not traded" in err and len(err.strip().splitlines()) == 1
    assert cli_main(["ctl", "status", "--config", str(path)]) == 0
    assert json.loads(capsys.readouterr().out)["flatten_pending"] is False


def test_a_slot_is_its_pipeline_with_the_book_in_one_order_manager(two_slots):
    """Issue 23 §1: the slot holds quote -> bar -> features -> policy -> risk -> intent and no
    more (≤ 20 attributes, ≤ 10 constructor parameters); the book, the working order and the
    fills are its order manager's. A setting written to a name the slot no longer has fails
    (it had been silently ignored: a size ramp set as ``slot.ramp`` did nothing)."""
    import inspect

    slots, account, risk, broker = two_slots
    eur = slots["EUR_USD"]
    assert len(Slot.__slots__) <= 20 and len(inspect.signature(Slot.__init__).parameters) - 1 <= 10
    with pytest.raises(AttributeError):
        eur.ramp = (0.5, 1.0)
    eur.orders.set_position(LOT, 1.10000)
    assert eur.position is eur.orders.position and eur.orders.units == LOT and risk.positions["EUR_USD"] == LOT
    eur.request_flatten("operator")
    eur.on_ticks(quote(T0, 1.10000))  # the flatten goes out through the order manager at this quote
    order = broker.working["EUR_USD"]
    assert order.intent.units == LOT and int(order.intent.side) == -1 and eur.orders.working
    assert eur.counters.orders == 1 and eur.counters.risk_events == {"flatten": 1}


def test_the_reconciler_refuses_a_router_that_books_fills_elsewhere(two_slots, tmp_path):
    """Each reconciliation pass books the router's fills (LiveRouter.deliver) before it
    compares the book with the broker's: a slot whose order manager the router does not book
    into would read a filled order as a discrepancy, and its "correction" would be a second
    order. Wired otherwise, the daemon refuses to build, naming why."""
    from stairway.daemon.order_router import LiveRouter
    from stairway.daemon.reconcile_runner import Reconciler
    from stairway.daemon.reconciliation import UnknownPositionPolicy

    slots, _, _, _ = two_slots
    store = slots["EUR_USD"].journal.store
    router = LiveRouter(None, store, "r")  # type: ignore[arg-type]  # no broker is called here
    args = (store, "r", UnknownPositionPolicy("flatten"), lambda inst: 1e9, 5.0, 30.0)
    router.books = {"EUR_USD": slots["EUR_USD"].orders}  # GBP_USD's fills would go nowhere
    with pytest.raises(ValueError, match="order managers of the slots it reconciles"):
        Reconciler(None, router, slots, *args)  # type: ignore[arg-type]
    router.books = {inst: s.orders for inst, s in slots.items()}
    assert Reconciler(None, router, slots, *args).slots is slots  # type: ignore[arg-type]
