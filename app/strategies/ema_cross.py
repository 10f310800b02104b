"""EMA_CROSS: long while the fast exponential moving average is above the slow one."""
from __future__ import annotations

from app.strategies._signals import above_below
from app.strategies.base import CategoricalParam, Constraint, IntParam, Strategy


class EmaCross(Strategy):
    """Moving-average crossover on exponential moving averages of the close.

    Rules, for each bar t (decided at its close, filled at the next open):
    - +1 while EMA(close, fast)[t] > EMA(close, slow)[t];
    - otherwise 0, or -1 when ``allow_short`` is true;
    - 0 before both averages exist (each EMA starts at bar ``period - 1``, seeded with
      the simple average of the first ``period`` closes).
    """

    name = "EMA_CROSS"
    version = 1
    space = (
        IntParam("fast", 2, 200, default=12, help="bars in the fast average"),
        IntParam("slow", 3, 500, default=26, help="bars in the slow average"),
        CategoricalParam("allow_short", (False, True), default=False,
                         help="go short while fast <= slow instead of flat"),
    )
    constraints = (Constraint("fast", "<", "slow"),)

    def positions(self, candles, params, cache):
        return above_below(cache.ema(params["fast"]), cache.ema(params["slow"]),
                           -1.0 if params["allow_short"] else 0.0)
