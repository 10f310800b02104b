"""The checks a file passes before any of it is stored: OHLC consistency (in csv_io) and
times on the timeframe's grid, each fault naming its line.

The grid: a month's bar opens on the first of the month, a week's on one weekday, a
day's at midnight UTC; a bar shorter than a day, in a market that trades around the
clock, opens on the timeframe's grid from the epoch (as every crypto exchange's do). A
market with sessions has its own grid (a stock's hourly bars from 13:30 UTC, Hong Kong's
from 09:30 and again from 13:00 after lunch): its intraday bars are only checked for
their spacing. A file whose bars sit further apart than its timeframe (a monthly file
given as 1d) is refused with the timeframe its spacing fits, the spacing being the most
common one between bars (a stock's nights and weekends are not its spacing).
"""
from __future__ import annotations

import numpy as np

from app.backtest.candles import TIMEFRAMES, Candles, timeframe_ms
from app.data.csv_io import read_candle_table

__all__ = ["read_for_import", "off_grid"]

_DAY = 86_400_000


def off_grid(ts: np.ndarray, timeframe: str, sessions: bool = False) -> int | None:
    """Index of the first bar not on ``timeframe``'s grid (see the module notes), or None;
    ``sessions``: the market has trading sessions (intraday bars are not checked).

    >>> day = 86_400_000
    >>> off_grid(np.array([0, day, 2 * day]), "1d"), off_grid(np.array([0, day + 60_000]), "1d")
    (None, 1)
    >>> half_past = np.array([13 * 3_600_000 + 1_800_000, 14 * 3_600_000 + 1_800_000])
    >>> off_grid(half_past, "1h"), off_grid(half_past, "1h", sessions=True)
    (0, None)
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
        elif sessions:
            return None
        else:
            bad = np.flatnonzero(t % step != 0)
    return int(bad[0]) if bad.size else None


def _spacing_hint(ts: np.ndarray, timeframe: str) -> str | None:
    """A timeframe that fits the file's spacing better than the one given, if any."""
    if ts.size < 3:
        return None
    gaps, counts = np.unique(np.diff(ts), return_counts=True)
    spacing = float(gaps[np.argmax(counts)])
    nominal = {**TIMEFRAMES, "1M": 30.44 * _DAY}
    if 0.75 * nominal[timeframe] <= spacing <= 1.5 * nominal[timeframe]:
        return None
    best = min(nominal, key=lambda tf: abs(np.log(nominal[tf] / spacing)))
    return best if best != timeframe else None


def read_for_import(path: str, timeframe: str, calendar_of=None) -> Candles:
    """Candles from ``path``, every open time on the ``timeframe`` grid (UTC).
    ``calendar_of(ts)``: the series' calendar name (``24/7`` when not given)."""
    table = read_candle_table(path)
    timeframe_ms(timeframe)
    from app.data.timeutil import iso

    better = _spacing_hint(table.ts, timeframe)
    if better is not None:
        gaps, counts = np.unique(np.diff(table.ts), return_counts=True)
        spacing_days = float(gaps[np.argmax(counts)]) / _DAY
        amount, unit = (spacing_days, "day") if spacing_days >= 1 else (spacing_days * 1440, "minute")
        apart = f"{amount:.3g} {unit}" + ("" if f"{amount:.3g}" == "1" else "s")
        raise table.fail(0, f"the bars are {apart} apart (mostly), not {timeframe}: "
                            f"is the file {better} candles?", "timeframe")
    calendar = calendar_of(table.ts) if calendar_of is not None else "24/7"
    i = off_grid(table.ts, timeframe, sessions=calendar != "24/7")
    if i is not None:
        raise table.fail(i, f"time {iso(int(table.ts[i]))} is not on the {timeframe} grid "
                            f"(is the file {timeframe} candles?)", "timeframe")
    return table.to_candles()
