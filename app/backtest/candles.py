"""OHLCV candles as contiguous float64 arrays, validated once, fingerprinted for caching."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from app.errors import InputError

__all__ = ["Candles", "TIMEFRAMES", "timeframe_ms", "periods_per_year"]

# Milliseconds per bar. A month has no fixed length: "1M" is its shortest (28 days), which
# is what the code needs of it (a range ending one bar after a month's open never takes in
# the next month); calendar months are counted in app.validation.calendars.
TIMEFRAMES: dict[str, int] = {
    "1m": 60_000,
    "3m": 180_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": 3_600_000,
    "2h": 7_200_000,
    "4h": 14_400_000,
    "6h": 21_600_000,
    "8h": 28_800_000,
    "12h": 43_200_000,
    "1d": 86_400_000,
    "3d": 259_200_000,
    "1w": 604_800_000,
    "1M": 28 * 86_400_000,
}
_YEAR_MS = 365 * 86_400_000


def timeframe_ms(timeframe: str) -> int:
    """Length of one bar in milliseconds.

    >>> timeframe_ms("5m")
    300000
    """
    try:
        return TIMEFRAMES[timeframe]
    except KeyError:
        from app.errors import did_you_mean

        raise InputError(
            f"unknown timeframe {timeframe!r}",
            field="timeframe",
            hint=did_you_mean(timeframe, TIMEFRAMES),
        ) from None


def periods_per_year(timeframe: str) -> float:
    """Bars in a year of round-the-clock trading (a 24/7 market; weekly and monthly bars
    by the calendar). A series' own bars a year are measured from its timestamps by
    ``app.validation.calendars``; this is the default for a bare backtest.

    >>> periods_per_year("1d"), periods_per_year("5m"), periods_per_year("1M")
    (365.0, 105120.0, 12.0)
    """
    if timeframe == "1M":
        return 12.0
    if timeframe == "1w":
        return 365.25 / 7
    return _YEAR_MS / timeframe_ms(timeframe)


def _as_array(name: str, values) -> np.ndarray:
    arr = np.ascontiguousarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise InputError(f"{name} must be one-dimensional, got shape {arr.shape}", field=name)
    return arr


@dataclass(frozen=True, eq=False)
class Candles:
    """A series of bars. ``ts`` is the bar's open time in epoch milliseconds (int64).

    Construction checks what a backtest relies on: equal lengths, strictly increasing
    times, finite prices, ``low <= min(open, close)``, ``high >= max(open, close)``,
    ``volume >= 0``. Arrays are made read-only so a strategy cannot alter them.
    """

    ts: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    _fingerprint: list = field(default_factory=list, repr=False, compare=False)

    def __post_init__(self) -> None:
        ts = np.ascontiguousarray(self.ts, dtype=np.int64)
        object.__setattr__(self, "ts", ts)
        for name in ("open", "high", "low", "close", "volume"):
            object.__setattr__(self, name, _as_array(name, getattr(self, name)))
        n = len(ts)
        for name in ("open", "high", "low", "close", "volume"):
            if len(getattr(self, name)) != n:
                raise InputError(f"{name} has {len(getattr(self, name))} values, ts has {n}")
        self._check()
        for name in ("ts", "open", "high", "low", "close", "volume"):
            getattr(self, name).flags.writeable = False

    def _check(self) -> None:
        if len(self.ts) > 1:
            steps = np.diff(self.ts)
            bad = np.flatnonzero(steps <= 0)
            if bad.size:
                i = int(bad[0]) + 1
                kind = "duplicate" if steps[bad[0]] == 0 else "unsorted"
                raise InputError(
                    f"{kind} time at row {i}: {int(self.ts[i])} after {int(self.ts[i - 1])}",
                    field="ts",
                    hint="sort the candles by time and drop duplicates",
                )
        for name in ("open", "high", "low", "close", "volume"):
            arr = getattr(self, name)
            bad = np.flatnonzero(~np.isfinite(arr))
            if bad.size:
                raise InputError(f"{name} is not a finite number at row {int(bad[0])}", field=name)
        bad = np.flatnonzero(self.high < self.low)
        if bad.size:
            raise InputError(f"high below low at row {int(bad[0])}", field="high")
        bad = np.flatnonzero((self.high < np.maximum(self.open, self.close)) |
                             (self.low > np.minimum(self.open, self.close)))
        if bad.size:
            raise InputError(
                f"open/close outside [low, high] at row {int(bad[0])}", field="high"
            )
        bad = np.flatnonzero(self.volume < 0)
        if bad.size:
            raise InputError(f"negative volume at row {int(bad[0])}", field="volume")
        bad = np.flatnonzero(self.open <= 0)
        if bad.size:
            raise InputError(f"non-positive price at row {int(bad[0])}", field="open")

    def __len__(self) -> int:
        return len(self.ts)

    @property
    def fingerprint(self) -> str:
        """sha256 over the six arrays: the identity of the series for caches and results."""
        if not self._fingerprint:
            h = hashlib.sha256()
            for name in ("ts", "open", "high", "low", "close", "volume"):
                h.update(getattr(self, name).tobytes())
            self._fingerprint.append(h.hexdigest())
        return self._fingerprint[0]

    def slice(self, start: int, stop: int | None = None) -> Candles:
        """Bars ``[start, stop)`` as a new series (views, no copy)."""
        s = slice(start, stop)
        return Candles(self.ts[s], self.open[s], self.high[s], self.low[s], self.close[s], self.volume[s])

    @classmethod
    def from_frame(cls, frame) -> Candles:
        """From a pandas DataFrame with columns ts (epoch ms) or a DatetimeIndex, and OHLCV."""
        import pandas as pd

        if "ts" in frame.columns:
            ts = frame["ts"].to_numpy(dtype=np.int64)
        elif isinstance(frame.index, pd.DatetimeIndex):
            ts = frame.index.as_unit("ms").asi8
        else:
            raise InputError("frame needs a 'ts' column (epoch ms) or a DatetimeIndex")
        return cls(ts, *(frame[c].to_numpy() for c in ("open", "high", "low", "close", "volume")))

    def to_frame(self):
        """As a pandas DataFrame indexed by UTC time."""
        import pandas as pd

        index = pd.to_datetime(self.ts, unit="ms", utc=True)
        return pd.DataFrame(
            {c: getattr(self, c) for c in ("open", "high", "low", "close", "volume")}, index=index
        )
