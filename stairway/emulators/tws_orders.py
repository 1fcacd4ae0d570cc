"""The TWS emulator's working orders (stairway/emulators/tws.py): the openOrder message a gateway
sends for each working order (on reqOpenOrders / reqAllOpenOrders, and when one is placed), and
when a resting stop order triggers.

openOrder 5, server version 176, field by field as ib_async's decoder.openOrder reads it (no
version field since ORDER_CONTAINER): the order id and contract, then the order's fields in
the decoder's groups; every optional group empty (no delta-neutral order, combo legs, smart
routing params, scale orders, hedge, algo, conditions), the order state's margins unset.
"""

from __future__ import annotations

from typing import Any

UNSET = 1.7976931348623157e308  # UNSET_DOUBLE: a field TWS sends as "not set"


def open_order_fields(o: Any, contract: tuple, account: str) -> tuple:
    """Fields of openOrder 5 for ServerOrder ``o`` on ``contract`` (the emulator's 11 contract
    fields: conId .. tradingClass)."""
    lmt = o.limit if o.limit is not None else UNSET
    aux = o.aux if o.aux is not None else UNSET
    head = (
        5, o.order_id, *contract,
        o.action, o.quantity, o.order_type, lmt, aux, o.tif, "", account, "O", 0, o.order_ref,
        o.client_id, o.perm_id, 0, 0, 0.0, "", "",  # outsideRth, hidden, discretionaryAmt, goodAfterTime, (shares)
        "", "", "", "",  # faGroup, faMethod, faPercentage, faProfile (server < 177)
    )  # fmt: skip
    order = (
        "", "", "", "", "", 0, "", -1,  # modelCode, goodTillDate, rule80A, percentOffset, settlingFirm, shortSaleSlot, designatedLocation, exemptCode
        0, "", "", "", "", "",  # auctionStrategy, startingPrice, stockRefPrice, delta, stockRangeLower, stockRangeUpper
        0, 0, 0, 0, "", 0, 0, 0, "",  # displaySize, blockOrder, sweepToFill, allOrNone, minQty, ocaType, eTradeOnly, firmQuoteOnly, nbboPriceCap
        o.parent_id, 0, "", 0, "", "",  # parentId, triggerMethod, volatility, volatilityType, deltaNeutralOrderType ("": none), deltaNeutralAuxPrice
        0, 0, "", "", "", "", "",  # continuousUpdate, referencePriceType, trailStopPrice, trailingPercent, basisPoints, basisPointsType, comboLegsDescrip
        0, 0, 0,  # combo legs, order combo legs, smart combo routing params
        "", "", "",  # scaleInitLevelSize, scaleSubsLevelSize, scalePriceIncrement ("": none)
        "",  # hedgeType ("": none)
        0, "", "", 0, 0,  # optOutSmartRouting, clearingAccount, clearingIntent, notHeld, dncPresent
        "",  # algoStrategy ("": none)
        0, 0, o.status, *([""] * 13),  # solicited, whatIf, status, 9 margins, commission, min, max, currency
        "",  # warningText
        0, 0,  # randomizeSize, randomizePrice
        0,  # conditions
        "", "", "", "", "", "", "", 0, "", "", "", "", 0, 0, "", 0,  # adjustedOrderType .. usePriceMgmtAlgo
        "", "", 0,  # duration, postToAts, autoCancelParent (server >= 159, 160, 162)
        "", "", "", "", "",  # minTradeQty, minCompeteSize, competeAgainstBestOffset, midOffsetAtWhole, midOffsetAtHalf
    )  # fmt: skip
    return head + order


def triggered(o: Any, bid: float, ask: float) -> bool:
    """Whether the quote triggers resting stop order ``o``: a sell stop at or above the bid,
    a buy stop at or below the ask (and the fill is at that quote)."""
    if o.order_type != "STP" or o.done or o.aux is None:
        return False
    return bid <= o.aux if o.action == "SELL" else ask >= o.aux
