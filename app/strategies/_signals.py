"""Compiled helpers that turn indicator arrays into target positions in one pass."""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def above_below(fast: np.ndarray, slow: np.ndarray, short_value: float) -> np.ndarray:
    """+1 where ``fast > slow``, ``short_value`` where ``fast <= slow``, 0 where either is
    NaN (before an indicator exists)."""
    n = fast.shape[0]
    out = np.empty(n)
    for i in range(n):
        f = fast[i]
        s = slow[i]
        if f != f or s != s:
            out[i] = 0.0
        elif f > s:
            out[i] = 1.0
        else:
            out[i] = short_value
    return out


@njit(cache=True, nogil=True)
def band_reversion(x, lower_enter, upper_enter, lower_exit, upper_exit, allow_short):
    """Mean reversion with hysteresis, bar by bar: long when ``x < lower_enter``, held
    until ``x >= lower_exit``; short when ``x > upper_enter`` (if allowed), held until
    ``x <= upper_exit``. 0 where any input is NaN and no position is held."""
    n = x.shape[0]
    out = np.zeros(n)
    side = 0.0
    for t in range(n):
        v = x[t]
        le = lower_enter[t]
        ue = upper_enter[t]
        if v != v or le != le or ue != ue:
            out[t] = side if side != 0.0 else 0.0
            continue
        if side > 0.0 and v >= lower_exit[t]:
            side = 0.0
        elif side < 0.0 and v <= upper_exit[t]:
            side = 0.0
        if side == 0.0:
            if v < le:
                side = 1.0
            elif allow_short and v > ue:
                side = -1.0
        out[t] = side
    return out


@njit(cache=True, nogil=True)
def breakout(close, upper, lower, exit_lower, exit_upper, allow_short):
    """Channel breakout: long when close > ``upper``, out when close < ``exit_lower``;
    short when close < ``lower`` (if allowed), out when close > ``exit_upper``."""
    n = close.shape[0]
    out = np.zeros(n)
    side = 0.0
    for t in range(n):
        c = close[t]
        if side > 0.0 and exit_lower[t] == exit_lower[t] and c < exit_lower[t]:
            side = 0.0
        elif side < 0.0 and exit_upper[t] == exit_upper[t] and c > exit_upper[t]:
            side = 0.0
        if side == 0.0 and upper[t] == upper[t] and lower[t] == lower[t]:
            if c > upper[t]:
                side = 1.0
            elif allow_short and c < lower[t]:
                side = -1.0
        out[t] = side
    return out
