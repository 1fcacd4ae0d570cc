"""Issue 22 §1: `data fetch` asks the broker 30 days at a time and says how far it is."""

from __future__ import annotations

import asyncio
import datetime as dt

import numpy as np

from stairway.core.types import BAR_DTYPE
from stairway.data_cli import _in_chunks


def test_fetch_goes_in_chunks_with_a_line_each_and_joins_them_once(capsys):
    asked = []

    async def fetch(a, b):  # hourly bars of [a, b] inclusive of b's midnight: chunks overlap by one bar
        asked.append((a, b))
        t = np.arange(np.datetime64(a, "h"), np.datetime64(b, "h") + 1).astype("datetime64[ns]").astype(np.int64)
        out = np.zeros(len(t), BAR_DTYPE)
        out["ts_ns"], out["close"] = t, 1.0
        return out

    bars = asyncio.run(_in_chunks(dt.date(2024, 1, 1), dt.date(2024, 3, 11), fetch))
    assert asked == [
        (dt.date(2024, 1, 1), dt.date(2024, 1, 31)),
        (dt.date(2024, 1, 31), dt.date(2024, 3, 1)),
        (dt.date(2024, 3, 1), dt.date(2024, 3, 11)),
    ]
    assert len(bars) == 70 * 24 + 1 and (np.diff(bars["ts_ns"]) == 3600 * 10**9).all()  # the overlaps once
    lines = capsys.readouterr().err.strip().splitlines()  # not a terminal: one line per chunk
    assert [ln.split(":")[0] for ln in lines] == ["fetch 1/3", "fetch 2/3", "fetch 3/3"]
    assert "eta" in lines[0] and lines[-1].endswith("eta 0.0 s")
