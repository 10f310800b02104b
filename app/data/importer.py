"""The checks a file passes before any of it is stored: OHLC consistency (in csv_io) and
times aligned to the timeframe, each fault naming its line."""
from __future__ import annotations

import numpy as np

from app.backtest.candles import Candles, timeframe_ms
from app.data.csv_io import read_candle_table

__all__ = ["read_for_import"]


def read_for_import(path: str, timeframe: str) -> Candles:
    """Candles from ``path``, every open time on the ``timeframe`` grid (UTC)."""
    table = read_candle_table(path)
    step = timeframe_ms(timeframe)
    off = np.flatnonzero(table.ts % step != 0)
    if off.size:
        i = int(off[0])
        from app.data.timeutil import iso

        raise table.fail(i, f"time {iso(int(table.ts[i]))} is not on the {timeframe} grid "
                            f"(is the file {timeframe} candles?)", "timeframe")
    return table.to_candles()
