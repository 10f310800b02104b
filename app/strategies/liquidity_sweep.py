"""LIQUIDITY_SWEEP: fade a sweep of the recent swing high or low that closes back inside."""
from __future__ import annotations

import numpy as np
from numba import njit

from app.strategies.base import CategoricalParam, FloatParam, IntParam, Strategy


@njit(cache=True, nogil=True)
def sweep_positions(high, low, close, swing_high, swing_low, atr, min_sweep_atr, max_hold,
                    allow_short):
    """Target per bar: +1/-1 for ``max_hold`` bars from a sweep's bar, 0 otherwise."""
    n = close.shape[0]
    out = np.zeros(n)
    side = 0.0
    left = 0
    for t in range(n):
        sh = swing_high[t]
        sl = swing_low[t]
        a = atr[t]
        signal = 0.0
        if sh == sh and sl == sl and a == a:
            depth = min_sweep_atr * a
            if low[t] < sl - depth and close[t] > sl:
                signal = 1.0
            elif allow_short and high[t] > sh + depth and close[t] < sh:
                signal = -1.0
        if signal != 0.0:
            side = signal
            left = max_hold
        if left > 0:
            out[t] = side
            left -= 1
        else:
            side = 0.0
    return out


class LiquiditySweep(Strategy):
    """Liquidity sweep (the old system's strategy), decided at each bar's close.

    - The swing high and swing low at bar t are the highest high and lowest low of the
      ``lookback`` bars before t (bar t itself excluded).
    - A bullish sweep: bar t trades below the swing low by more than
      ``min_sweep_atr`` x ATR(``atr_period``) and closes back above it. Stops below the
      low were run and the move failed: go long, against the sweep.
    - A bearish sweep mirrors it above the swing high: go short (when ``allow_short``).
    - The position is held for ``max_hold_bars`` bars from the signal bar, then the
      target returns to 0. A new sweep on the same side restarts the count; one on the
      other side flips the position.
    - The engine exits earlier on the stop (``stop_atr`` x ATR below a long's entry) or
      the target (``target_atr`` x ATR above it); after either it stays flat until the
      strategy's target changes (the hold ends or the other side sweeps).
    - No signal before the swing levels and the ATR exist.
    """

    name = "LIQUIDITY_SWEEP"
    version = 1
    space = (
        IntParam("lookback", 5, 200, default=20, help="bars that define the swing high/low"),
        FloatParam("min_sweep_atr", 0.0, 2.0, default=0.0, step=0.05,
                   help="how far past the swing level the sweep must reach, in ATRs"),
        IntParam("max_hold_bars", 1, 500, default=24, help="bars to hold after a signal"),
        FloatParam("stop_atr", 0.25, 10.0, default=1.5, step=0.25, help="stop distance in ATRs"),
        FloatParam("target_atr", 0.25, 20.0, default=3.0, step=0.25, help="target distance in ATRs"),
        IntParam("atr_period", 5, 50, default=14, help="bars in the ATR"),
        CategoricalParam("allow_short", (True, False), default=True,
                         help="fade sweeps of the swing high too"),
    )

    def positions(self, candles, params, cache):
        lookback = params["lookback"]
        swing_high = cache.get(("prev_max", lookback),
                               lambda: _shift(cache.rolling_max(lookback, "high")))
        swing_low = cache.get(("prev_min", lookback),
                              lambda: _shift(cache.rolling_min(lookback, "low")))
        return sweep_positions(candles.high, candles.low, candles.close, swing_high, swing_low,
                               cache.atr(params["atr_period"]), float(params["min_sweep_atr"]),
                               int(params["max_hold_bars"]), bool(params["allow_short"]))

    def execution(self, params):
        return {"stop_loss_atr": float(params["stop_atr"]),
                "take_profit_atr": float(params["target_atr"]),
                "atr_period": int(params["atr_period"])}


def _shift(values: np.ndarray) -> np.ndarray:
    """``values`` one bar later: bar t sees the value of bar t-1 (NaN at bar 0)."""
    out = np.empty_like(values)
    out[0] = np.nan
    out[1:] = values[:-1]
    return out
