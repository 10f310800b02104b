"""MACD: long while the MACD line is above its signal line."""
from __future__ import annotations

from app.backtest.indicators import ema
from app.strategies._signals import above_below
from app.strategies.base import CategoricalParam, Constraint, IntParam, Strategy


class Macd(Strategy):
    """Moving-average convergence/divergence.

    - MACD line = EMA(close, fast) - EMA(close, slow); signal line = EMA(MACD, signal),
      computed over the bars where the MACD line exists.
    - +1 while MACD > signal at bar t's close; otherwise 0, or -1 with ``allow_short``;
    - 0 before the signal line exists (bar ``slow + signal - 2``).
    """

    name = "MACD"
    version = 1
    space = (
        IntParam("fast", 2, 100, default=12, help="bars in the fast EMA"),
        IntParam("slow", 3, 300, default=26, help="bars in the slow EMA"),
        IntParam("signal", 2, 100, default=9, help="bars in the signal EMA"),
        CategoricalParam("allow_short", (False, True), default=False),
    )
    constraints = (Constraint("fast", "<", "slow"),)

    def positions(self, candles, params, cache):
        fast, slow, signal = params["fast"], params["slow"], params["signal"]
        line = cache.get(("macd", fast, slow), lambda: cache.ema(fast) - cache.ema(slow))

        def _signal():
            out = line.copy()
            start = slow - 1
            out[start:] = ema(line[start:], signal) if len(line) > start else out[start:]
            return out

        sig = cache.get(("macd_signal", fast, slow, signal), _signal)
        return above_below(line, sig, -1.0 if params["allow_short"] else 0.0)
