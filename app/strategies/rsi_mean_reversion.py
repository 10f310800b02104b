"""RSI_MEAN_REVERSION: buy oversold, sell overbought, by Wilder's RSI."""
from __future__ import annotations

import numpy as np

from app.strategies._signals import band_reversion
from app.strategies.base import CategoricalParam, Constraint, FloatParam, IntParam, Strategy


class RsiMeanReversion(Strategy):
    """Mean reversion on RSI(``period``) of the close, decided at each bar's close.

    - Flat: go long when RSI < ``oversold``; go short when RSI > ``overbought`` (only
      with ``allow_short``).
    - Long: stay long until RSI >= ``exit_level``; short: until RSI <= 100 - ``exit_level``.
    - 0 before the RSI exists (bar ``period``).
    """

    name = "RSI_MEAN_REVERSION"
    version = 1
    space = (
        IntParam("period", 2, 100, default=14, help="bars in the RSI"),
        FloatParam("oversold", 5.0, 45.0, default=30.0, step=1.0, help="buy below this RSI"),
        FloatParam("overbought", 55.0, 95.0, default=70.0, step=1.0, help="sell short above this RSI"),
        FloatParam("exit_level", 40.0, 90.0, default=50.0, step=1.0,
                   help="a long exits at this RSI (a short at 100 minus it)"),
        CategoricalParam("allow_short", (False, True), default=False),
    )
    constraints = (Constraint("oversold", "<", "exit_level"),)

    def positions(self, candles, params, cache):
        r = cache.rsi(params["period"])
        n = len(r)
        return band_reversion(r, np.full(n, params["oversold"]), np.full(n, params["overbought"]),
                              np.full(n, params["exit_level"]), np.full(n, 100.0 - params["exit_level"]),
                              bool(params["allow_short"]))
