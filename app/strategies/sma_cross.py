"""SMA_CROSS: long while the fast simple moving average is above the slow one."""
from __future__ import annotations

from app.strategies._signals import above_below
from app.strategies.base import CategoricalParam, Constraint, IntParam, Strategy


class SmaCross(Strategy):
    """Moving-average crossover on simple moving averages of the close.

    Rules, for each bar t (decided at its close, filled at the next open):
    - +1 while SMA(close, fast)[t] > SMA(close, slow)[t];
    - otherwise 0, or -1 when ``allow_short`` is true;
    - 0 before both averages exist (the first ``slow - 1`` bars).
    """

    name = "SMA_CROSS"
    version = 1
    space = (
        IntParam("fast", 2, 200, default=10, help="bars in the fast average"),
        IntParam("slow", 3, 500, default=30, help="bars in the slow average"),
        CategoricalParam("allow_short", (False, True), default=False,
                         help="go short while fast <= slow instead of flat"),
    )
    constraints = (Constraint("fast", "<", "slow"),)

    def positions(self, candles, params, cache):
        return above_below(cache.sma(params["fast"]), cache.sma(params["slow"]),
                           -1.0 if params["allow_short"] else 0.0)
