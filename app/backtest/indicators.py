"""Technical indicators as compiled O(n) kernels; bars before an indicator exists are NaN.

Every function here reads only bars ``<= t`` to produce the value at ``t``, so an
indicator never leaks the future into a signal.
"""
from __future__ import annotations

import numpy as np
from numba import njit

__all__ = [
    "sma",
    "ema",
    "rolling_std",
    "rolling_max",
    "rolling_min",
    "rsi",
    "true_range",
    "atr",
]


@njit(cache=True, nogil=True)
def sma(x: np.ndarray, period: int) -> np.ndarray:
    """Simple moving average of the last ``period`` values (Kahan-compensated running sum).

    >>> sma(np.array([1.0, 2.0, 3.0, 4.0]), 2).tolist()
    [nan, 1.5, 2.5, 3.5]
    """
    n = x.shape[0]
    out = np.empty(n)
    total = 0.0
    comp = 0.0
    for i in range(n):
        # add x[i], remove x[i - period], both compensated
        y = x[i] - comp
        t = total + y
        comp = (t - total) - y
        total = t
        if i >= period:
            y = -x[i - period] - comp
            t = total + y
            comp = (t - total) - y
            total = t
        out[i] = total / period if i >= period - 1 else np.nan
    return out


@njit(cache=True, nogil=True)
def ema(x: np.ndarray, period: int) -> np.ndarray:
    """Exponential moving average, alpha = 2 / (period + 1), seeded with the SMA of the
    first ``period`` values (so it exists from bar ``period - 1`` on, like the SMA).

    >>> ema(np.array([1.0, 2.0, 3.0, 4.0]), 2).tolist()
    [nan, 1.5, 2.5, 3.5]
    """
    n = x.shape[0]
    out = np.full(n, np.nan)
    if n < period:
        return out
    alpha = 2.0 / (period + 1.0)
    seed = 0.0
    for i in range(period):
        seed += x[i]
    value = seed / period
    out[period - 1] = value
    for i in range(period, n):
        value = value + alpha * (x[i] - value)
        out[i] = value
    return out


@njit(cache=True, nogil=True)
def rolling_std(x: np.ndarray, period: int) -> np.ndarray:
    """Population standard deviation (ddof=0) of the last ``period`` values, as Bollinger
    bands use it; computed with a two-pass window sum so it stays accurate on long series."""
    n = x.shape[0]
    out = np.full(n, np.nan)
    means = sma(x, period)
    for i in range(period - 1, n):
        m = means[i]
        acc = 0.0
        for j in range(i - period + 1, i + 1):
            d = x[j] - m
            acc += d * d
        out[i] = np.sqrt(acc / period)
    return out


@njit(cache=True, nogil=True)
def _rolling_extreme(x: np.ndarray, period: int, take_max: bool) -> np.ndarray:
    # Monotonic deque: O(n) whatever the period.
    n = x.shape[0]
    out = np.full(n, np.nan)
    dq = np.empty(n, dtype=np.int64)
    head = 0
    tail = 0
    for i in range(n):
        v = x[i]
        while tail > head and ((x[dq[tail - 1]] <= v) if take_max else (x[dq[tail - 1]] >= v)):
            tail -= 1
        dq[tail] = i
        tail += 1
        if dq[head] <= i - period:
            head += 1
        if i >= period - 1:
            out[i] = x[dq[head]]
    return out


def rolling_max(x: np.ndarray, period: int) -> np.ndarray:
    """Highest value of the last ``period`` values, bar ``t`` included.

    >>> rolling_max(np.array([1.0, 3.0, 2.0, 0.0]), 2).tolist()
    [nan, 3.0, 3.0, 2.0]
    """
    return _rolling_extreme(x, int(period), True)


def rolling_min(x: np.ndarray, period: int) -> np.ndarray:
    """Lowest value of the last ``period`` values, bar ``t`` included.

    >>> rolling_min(np.array([1.0, 3.0, 2.0, 0.0]), 2).tolist()
    [nan, 1.0, 2.0, 0.0]
    """
    return _rolling_extreme(x, int(period), False)


@njit(cache=True, nogil=True)
def rsi(close: np.ndarray, period: int) -> np.ndarray:
    """Wilder's relative strength index in [0, 100]; first value at bar ``period``.

    A window with no losses gives 100, one with no gains 0, a flat one 50.
    """
    n = close.shape[0]
    out = np.full(n, np.nan)
    if n <= period:
        return out
    gain = 0.0
    loss = 0.0
    for i in range(1, period + 1):
        d = close[i] - close[i - 1]
        if d > 0:
            gain += d
        else:
            loss -= d
    gain /= period
    loss /= period
    for i in range(period, n):
        if i > period:
            d = close[i] - close[i - 1]
            g = d if d > 0 else 0.0
            lo = -d if d < 0 else 0.0
            gain = (gain * (period - 1) + g) / period
            loss = (loss * (period - 1) + lo) / period
        if loss == 0.0:
            out[i] = 50.0 if gain == 0.0 else 100.0
        else:
            out[i] = 100.0 - 100.0 / (1.0 + gain / loss)
    return out


@njit(cache=True, nogil=True)
def true_range(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
    """max(high - low, |high - previous close|, |low - previous close|); bar 0 is high - low."""
    n = high.shape[0]
    out = np.empty(n)
    for i in range(n):
        r = high[i] - low[i]
        if i > 0:
            a = abs(high[i] - close[i - 1])
            b = abs(low[i] - close[i - 1])
            if a > r:
                r = a
            if b > r:
                r = b
        out[i] = r
    return out


@njit(cache=True, nogil=True)
def atr(high: np.ndarray, low: np.ndarray, close: np.ndarray, period: int) -> np.ndarray:
    """Wilder's average true range; first value at bar ``period - 1`` (the mean of the
    first ``period`` true ranges), then smoothed with alpha = 1 / period."""
    tr = true_range(high, low, close)
    n = tr.shape[0]
    out = np.full(n, np.nan)
    if n < period:
        return out
    value = 0.0
    for i in range(period):
        value += tr[i]
    value /= period
    out[period - 1] = value
    for i in range(period, n):
        value = (value * (period - 1) + tr[i]) / period
        out[i] = value
    return out
