"""Interactive Brokers error codes, classified (pure). The gateway reports connection and
data-farm state through the same error channel as real errors, so a daemon that treats
every code as an error tears down healthy connections every night."""

from __future__ import annotations

import enum


class IBErrorClass(enum.Enum):
    CONNECTIVITY_LOST = "connectivity_lost"  # 1100: gateway <-> IB servers lost; the API socket stays up
    RESTORED_DATA_LOST = "restored_data_lost"  # 1101: restored, market data subscriptions lost: resubscribe
    RESTORED = "restored"  # 1102: restored, data kept: resync orders/executions/positions
    FARM_NOTICE = "farm_notice"  # 2103-2108, 2157, 2158: data-farm status; never a reason to disconnect
    CLIENT_ID_IN_USE = "client_id_in_use"  # 326: an old session still holds our client id: retry later
    ORDER_REJECTED = "order_rejected"  # 201, 203: the order will not execute
    OTHER = "other"


_CODES = {
    1100: IBErrorClass.CONNECTIVITY_LOST,
    1101: IBErrorClass.RESTORED_DATA_LOST,
    1102: IBErrorClass.RESTORED,
    326: IBErrorClass.CLIENT_ID_IN_USE,
    201: IBErrorClass.ORDER_REJECTED,
    203: IBErrorClass.ORDER_REJECTED,
}
_CODES.update({c: IBErrorClass.FARM_NOTICE for c in (2103, 2104, 2105, 2106, 2107, 2108, 2157, 2158)})


def classify(code: int) -> IBErrorClass:
    return _CODES.get(int(code), IBErrorClass.OTHER)
