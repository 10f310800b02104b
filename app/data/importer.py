"""The checks a file passes before any of it is stored: OHLC consistency (in csv_io) and
times on the timeframe's grid, each fault naming its line.

The grid: a month's bar opens on the first of the month, a week's on one weekday, a
day's at midnight UTC; a bar shorter than a day opens a whole number of bars after the
first bar of its UTC day (so a stock's hourly bars from 13:30 UTC are on the grid, and
so are a crypto exchange's from 00:00). A file whose bars sit further apart than its
timeframe (a monthly file given as 1d) is refused with the timeframe its spacing fits.
"""
from __future__ import annotations

import numpy as np

from app.backtest.candles import TIMEFRAMES, Candles, timeframe_ms
from app.data.csv_io import read_candle_table

__all__ = ["read_for_import", "off_grid"]

_DAY = 86_400_000


def off_grid(ts: np.ndarray, timeframe: str) -> int | None:
    """Index of the first bar not on ``timeframe``'s grid (see the module notes), or None.

    >>> day = 86_400_000
    >>> off_grid(np.array([0, day, 2 * day]), "1d"), off_grid(np.array([0, day + 60_000]), "1d")
    (None, 1)
    >>> off_grid(np.array([13 * 3_600_000 + 1_800_000, 14 * 3_600_000 + 1_800_000]), "1h")
    """
    t = np.asarray(ts, dtype=np.int64)
    if t.size == 0:
        return None
    if timeframe == "1M":
        months = t.astype("datetime64[ms]").astype("datetime64[M]")
        bad = np.flatnonzero(months.astype("datetime64[ms]").astype(np.int64) != t)
    elif timeframe == "1w":
        bad = np.flatnonzero((t % _DAY != 0) | ((t - t[0]) % (7 * _DAY) != 0))
    else:
        step = timeframe_ms(timeframe)
        if step >= _DAY:
            bad = np.flatnonzero(t % step != 0)
        else:
            day = t // _DAY
            first_of_day = t[np.searchsorted(day, day)]
            bad = np.flatnonzero((t - first_of_day) % step != 0)
    return int(bad[0]) if bad.size else None


def _spacing_hint(ts: np.ndarray, timeframe: str) -> str | None:
    """A timeframe that fits the file's spacing better than the one given, if any."""
    if ts.size < 3:
        return None
    spacing = float(np.median(np.diff(ts)))
    nominal = {**TIMEFRAMES, "1M": 30.44 * _DAY}
    if spacing <= 1.5 * nominal[timeframe]:
        return None
    best = min(nominal, key=lambda tf: abs(np.log(nominal[tf] / spacing)))
    return best if best != timeframe else None


def read_for_import(path: str, timeframe: str) -> Candles:
    """Candles from ``path``, every open time on the ``timeframe`` grid (UTC)."""
    table = read_candle_table(path)
    timeframe_ms(timeframe)
    from app.data.timeutil import iso

    better = _spacing_hint(table.ts, timeframe)
    if better is not None:
        spacing_days = float(np.median(np.diff(table.ts))) / _DAY
        raise table.fail(0, f"the bars are {spacing_days:.3g} days apart (median), not {timeframe}: "
                            f"is the file {better} candles?", "timeframe")
    i = off_grid(table.ts, timeframe)
    if i is not None:
        raise table.fail(i, f"time {iso(int(table.ts[i]))} is not on the {timeframe} grid "
                            f"(is the file {timeframe} candles?)", "timeframe")
    return table.to_candles()
