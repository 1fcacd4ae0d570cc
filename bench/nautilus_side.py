"""NautilusTrader's per-event engine on the reference workload, for side-by-side figures.

Run by ``bench/replay_throughput.py --nautilus-python PY`` with PY a Python that has
``nautilus_trader==1.221.0`` (kept out of the project's environment: a 100-MB wheel no test
needs), e.g. ``python3.11 -m venv /tmp/ntv && /tmp/ntv/bin/pip install nautilus_trader==1.221.0``.
It reads the quotes our bench wrote (``.npy``: ts_ns, bid, ask), runs them through Nautilus's
BacktestEngine (a simulated FX venue, quotes aggregated into 1-minute mid bars internally,
the EMA-cross example strategy trading 100k on each cross: a decision on every bar, market
orders filled against the quotes) and prints one JSON line: quotes/s of ``engine.run()``
alone (wrangling the quotes into Nautilus objects is not timed), bars, orders, fills.

    PY bench/nautilus_side.py QUOTES.npy [--runs R]
"""

from __future__ import annotations

import argparse
import json
import time
from decimal import Decimal

import numpy as np
import pandas as pd
from nautilus_trader.backtest.config import BacktestEngineConfig
from nautilus_trader.backtest.engine import BacktestEngine
from nautilus_trader.config import LoggingConfig
from nautilus_trader.examples.strategies.ema_cross import EMACross, EMACrossConfig
from nautilus_trader.model import BarType, Money, TraderId, Venue
from nautilus_trader.model.currencies import USD
from nautilus_trader.model.enums import AccountType, OmsType
from nautilus_trader.persistence.wranglers import QuoteTickDataWrangler
from nautilus_trader.test_kit.providers import TestInstrumentProvider


def run_once(q: np.ndarray) -> dict:
    venue = Venue("SIM")
    instrument = TestInstrumentProvider.default_fx_ccy("EUR/USD", venue)
    frame = pd.DataFrame(
        {"bid_price": q["bid"], "ask_price": q["ask"]},
        index=pd.to_datetime(q["ts_ns"], unit="ns", utc=True),
    )
    ticks = QuoteTickDataWrangler(instrument).process(frame)
    engine = BacktestEngine(
        BacktestEngineConfig(trader_id=TraderId("BENCH-001"), logging=LoggingConfig(log_level="ERROR"))
    )
    engine.add_venue(
        venue=venue,
        oms_type=OmsType.NETTING,
        account_type=AccountType.MARGIN,
        base_currency=USD,
        starting_balances=[Money(1_000_000, USD)],
    )
    engine.add_instrument(instrument)
    engine.add_data(ticks)
    bar_type = BarType.from_str(f"{instrument.id}-1-MINUTE-MID-INTERNAL")
    config = EMACrossConfig(
        instrument_id=instrument.id,
        bar_type=bar_type,
        trade_size=Decimal(100_000),
        subscribe_trade_ticks=False,
        request_bars=False,
    )
    engine.add_strategy(EMACross(config))
    t0 = time.perf_counter()
    engine.run()
    secs = time.perf_counter() - t0
    fills = engine.trader.generate_order_fills_report()
    orders = engine.trader.generate_orders_report()
    out = {"quotes": len(q), "secs": secs, "orders": len(orders), "fills": len(fills)}
    engine.dispose()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("quotes")
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    q = np.load(a.quotes)
    runs = [run_once(q) for _ in range(a.runs)]
    rates = sorted(r["quotes"] / r["secs"] for r in runs)
    print(json.dumps({"nautilus_version": "1.221.0", "quotes_per_s": rates[len(rates) // 2], "runs": runs}))


if __name__ == "__main__":
    main()
