"""OANDA's documented payloads, imported from the installed oandapyV20 package (its
endpoint response examples and the JSON printed in its docstrings), never copied here."""

from __future__ import annotations

import json
from collections.abc import Iterator


def _objects(text: str) -> Iterator[dict]:
    """Every JSON object embedded in a docstring."""
    dec = json.JSONDecoder()
    i = text.find("{")
    while i != -1:
        try:
            obj, end = dec.raw_decode(text, i)
        except json.JSONDecodeError:
            i = text.find("{", i + 1)
            continue
        if isinstance(obj, dict):
            yield obj
        i = text.find("{", end)


def _walk(obj, where: str) -> Iterator[tuple[str, dict]]:
    if isinstance(obj, dict):
        if obj.get("type") == "ORDER_FILL":
            yield where, obj
        for k, v in obj.items():
            yield from _walk(v, f"{where}.{k}")
    elif isinstance(obj, list):
        for k, v in enumerate(obj):
            yield from _walk(v, f"{where}[{k}]")


def order_fill_examples() -> dict[str, dict]:
    """Every ORDER_FILL transaction in oandapyV20's examples, by where it was found."""
    import oandapyV20.contrib.requests.marketorder as marketorder
    import oandapyV20.oandapyV20 as client
    from oandapyV20.endpoints.responses import orders, positions, trades, transactions

    out: dict[str, dict] = {}
    for mod in (orders, positions, trades, transactions):
        out.update(_walk(mod.responses, mod.__name__.rsplit(".", 1)[-1]))
    for name, doc in (
        ("marketorder.MarketOrderRequest", marketorder.MarketOrderRequest.__init__.__doc__),
        ("oandapyV20.API", client.API.__doc__),
    ):
        for k, obj in enumerate(_objects(doc or "")):
            out.update(_walk(obj, f"{name}#{k}"))
    return out


def response(module: str, key: str):
    import importlib

    return importlib.import_module(f"oandapyV20.endpoints.responses.{module}").responses[key]["response"]


def market_order_create_response() -> dict:
    """The answer to a MARKET order POST, from the MarketOrderRequest docstring."""
    import oandapyV20.contrib.requests.marketorder as marketorder

    return next(o for o in _objects(marketorder.MarketOrderRequest.__init__.__doc__) if "orderFillTransaction" in o)
