"""The account side of the OANDA v20 emulator (stairway/emulators/oanda_v20.py): transactions,
trades and their fills (FIFO, as v20 closes them), stop-losses and their triggers, financing,
margin and open P&L, and what someone does by hand at the broker. The HTTP side lives in
``OandaEmulator``, which holds the state these methods read (set in its ``__init__``)."""

from __future__ import annotations

import time


def rfc3339(ts_ns: int) -> str:
    secs, ns = divmod(ts_ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{ns:09d}Z"


class OandaAccount:
    def _tx(self, kind: str, **fields) -> dict:
        self.last_id += 1
        tx = {
            "id": str(self.last_id),
            "time": rfc3339(self.now_ns),
            "userID": 1234567,
            "accountID": self.account,
            "batchID": str(self.last_id),
            "type": kind,
            **fields,
        }
        self.transactions.append(tx)
        for q in self._tx_subscribers:
            q.put_nowait(tx)
        return tx

    def margin_used(self) -> float:
        rate = self.knobs.margin_rate
        return sum(abs(u) * sum(self.quote(i)) / 2 * rate for i, u in self.positions.items())

    def quote(self, instrument: str) -> tuple[float, float]:
        return self.quotes.get(instrument, (self.bid, self.ask))

    def unrealized(self) -> float:
        """Open trades marked where they would close now: a long at the bid, a short at the ask."""
        total = 0.0
        for inst, trades in self.trades.items():
            bid, ask = self.quote(inst)
            total += sum(t["units"] * ((bid if t["units"] > 0 else ask) - t["price"]) for t in trades)
        return total

    def manual_trade(self, instrument: str, units: float) -> dict:
        """A trade placed by hand at the broker (web platform): no client order id."""
        bid, ask = self.quote(instrument)
        price = ask if units > 0 else bid
        return self._fill(instrument, units, price, str(self.last_id + 1), None)

    def daily_financing(self, long_pct: float, short_pct: float, days: float = 1.0) -> dict | None:
        """A DAILY_FINANCING transaction for the open positions, as v20 books it at 17:00 New
        York: per position ``financing`` < 0 when paid, at the mid, per 365-day year; the
        balance moves by the total. None when nothing is open."""
        parts = []
        for inst, units in self.positions.items():
            if units:
                rate = long_pct if units > 0 else short_pct
                amount = -abs(units) * sum(self.quote(inst)) / 2 * rate / 100 * days / 365
                parts.append({"instrument": inst, "financing": f"{amount:.4f}", "openTradeFinancings": []})
        if not parts:
            return None
        total = sum(float(p["financing"]) for p in parts)
        self.balance += total
        return self._tx(
            "DAILY_FINANCING",
            financing=f"{total:.4f}",
            accountBalance=f"{self.balance:.4f}",
            accountFinancingMode="DAILY",
            positionFinancings=parts,
        )

    def _stop_loss(self, inst: str, trade_id: str, details: dict, trailing: bool = False) -> None:
        """A STOP_LOSS order on the trade an order opened (``stopLossOnFill``), as v20 creates it;
        ``trailing``: a TRAILING_STOP_LOSS (``trailingStopLossOnFill``, a ``distance``), its
        value the trade's closing price now (a long's bid) less the distance."""
        ext = {"clientExtensions": details["clientExtensions"]} if details.get("clientExtensions") else {}
        trade = next((t for t in self.trades.get(inst, []) if t["id"] == trade_id), None)
        if trailing:
            d = float(details["distance"])
            bid, ask = self.quote(inst)
            price = bid - d if trade is not None and trade["units"] > 0 else ask + d
            tx = self._tx("TRAILING_STOP_LOSS_ORDER", tradeID=trade_id, distance=details["distance"],
                          timeInForce=details.get("timeInForce", "GTC"), triggerCondition="DEFAULT",
                          reason="ON_FILL", **ext)  # fmt: skip
        else:
            d, price = 0.0, float(details["price"])
            tx = self._tx("STOP_LOSS_ORDER", tradeID=trade_id, price=details["price"],
                          timeInForce=details.get("timeInForce", "GTC"), triggerCondition="DEFAULT",
                          reason="ON_FILL", **ext)  # fmt: skip
        if trade is not None:
            coid = (details.get("clientExtensions") or {}).get("id")
            trade["sl"] = {"id": tx["id"], "price": price, "coid": coid, "trail": d}
        self.stop_orders_created += 1

    def check_stops(self, inst: str) -> None:
        """Each open trade's stop-loss fills when the quote reaches it (a long's at the bid, a
        short's at the ask), closing that trade at the quote (a gap fills through the stop)."""
        bid, ask = self.quote(inst)
        trades = self.trades.get(inst, [])
        for t in list(trades):
            sl = t.get("sl")
            if sl is None:
                continue
            if not ((t["units"] > 0 and bid <= sl["price"]) or (t["units"] < 0 and ask >= sl["price"])):
                if sl.get("trail"):  # a trailing stop follows the price, never back
                    d = sl["trail"]
                    sl["price"] = max(sl["price"], bid - d) if t["units"] > 0 else min(sl["price"], ask + d)
                continue
            trades.remove(t)
            trades.insert(0, t)  # the fill below closes exactly this trade
            reason = "TRAILING_STOP_LOSS_ORDER" if sl.get("trail") else "STOP_LOSS_ORDER"
            self._fill(inst, -t["units"], bid if t["units"] > 0 else ask, sl["id"], sl["coid"], reason)
            self.stops_filled += 1

    def move_price(self, inst: str, bid: float, ask: float) -> None:
        """The market moves while no stream is connected (the stops still work at the broker)."""
        self.quotes[inst] = (bid, ask)
        if inst == "EUR_USD":
            self.bid, self.ask = bid, ask
        self.check_stops(inst)

    def average_price(self, instrument: str) -> float:
        trades = self.trades.get(instrument, [])
        units = sum(t["units"] for t in trades)
        return sum(t["units"] * t["price"] for t in trades) / units if units else 0.0

    def _fill(
        self, inst: str, filled: float, price: float, order_id: str, coid: str | None, reason: str = "MARKET_ORDER"
    ) -> dict:
        """ORDER_FILL for ``filled`` units at ``price``: opposite trades are closed oldest
        first (tradesClosed / tradeReduced), the rest opens a trade whose id is the fill's."""
        fill_id = str(self.last_id + 1)
        px = f"{price:.5f}"
        trades = self.trades.setdefault(inst, [])
        closed, reduced, left, realized = [], None, filled, 0.0
        while left and trades and (trades[0]["units"] > 0) != (left > 0):
            t = trades[0]
            n = -t["units"] if abs(left) >= abs(t["units"]) else left  # closing units (sign of the fill)
            pl = -n * (price - t["price"])
            realized += pl
            part = {
                "tradeID": t["id"],
                "units": f"{n:.0f}",
                "realizedPL": f"{pl:.4f}",
                "financing": "0.0000",
                "halfSpreadCost": "0.6000",
            }
            if self.knobs.per_trade_price:
                part["price"] = px
            t["units"] += n
            left -= n
            if t["units"] == 0:
                trades.pop(0)
                closed.append(part)
            else:
                reduced = part
        parts: dict = {}
        if closed:
            parts["tradesClosed"] = closed
        if reduced is not None:
            parts["tradeReduced"] = reduced
        if left:
            opened = {
                "tradeID": fill_id,
                "units": f"{left:.0f}",
                "halfSpreadCost": "0.6000",
                "initialMarginRequired": "2346.9000",
            }
            if self.knobs.per_trade_price:
                opened["price"] = px
            parts["tradeOpened"] = opened
            trades.append({"id": fill_id, "units": left, "price": price})
        self.positions[inst] = self.positions.get(inst, 0.0) + filled
        self.balance += realized
        extra = {"clientOrderID": coid} if coid is not None else {}  # absent, never null, without one
        return self._tx(
            "ORDER_FILL",
            orderID=order_id,
            instrument=inst,
            units=f"{filled:.0f}",
            price=px,
            fullVWAP=px,
            reason=reason,
            pl=f"{realized:.4f}",
            financing="0.0000",
            commission="0.0000",
            halfSpreadCost="0.6000",
            accountBalance=f"{self.balance:.4f}",
            **extra,
            **parts,
        )

    # -- handlers -------------------------------------------------------------------------
    def cancel_stop(self, inst: str) -> None:
        """Someone removes the stop-loss at the broker by hand (an ORDER_CANCEL, CLIENT_REQUEST)."""
        for t in self.trades.get(inst, []):
            sl = t.pop("sl", None)
            if sl is not None:
                self._tx("ORDER_CANCEL", orderID=sl["id"], reason="CLIENT_REQUEST")

    def move_stop(self, inst: str, price: float) -> None:
        """Someone moves the stop-loss by hand (the web platform replaces it: ORDER_CANCEL
        CLIENT_REQUEST_REPLACED, then a STOP_LOSS_ORDER with replacesOrderID, no client id)."""
        for t in self.trades.get(inst, []):
            sl = t.get("sl")
            if sl is not None:
                self._tx("ORDER_CANCEL", orderID=sl["id"], reason="CLIENT_REQUEST_REPLACED")
                tx = self._tx("STOP_LOSS_ORDER", tradeID=t["id"], price=f"{price:.5f}", timeInForce="GTC",
                              triggerCondition="DEFAULT", reason="REPLACEMENT", replacesOrderID=sl["id"])  # fmt: skip
                t["sl"] = {"id": tx["id"], "price": price, "coid": None}
