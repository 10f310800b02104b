"""BOLLINGER_REVERSION: buy below the lower Bollinger band, exit at the middle."""
from __future__ import annotations

from app.strategies._signals import band_reversion
from app.strategies.base import CategoricalParam, FloatParam, IntParam, Strategy


class BollingerReversion(Strategy):
    """Mean reversion to the moving average, decided at each bar's close.

    - Middle band: SMA(close, ``period``); bands: middle +/- ``k`` x the population
      standard deviation of the same ``period`` closes.
    - Flat: long when close < lower band; short when close > upper band (``allow_short``).
    - Long until close >= middle band; short until close <= middle band.
    - 0 before the bands exist (bar ``period - 1``).
    """

    name = "BOLLINGER_REVERSION"
    version = 1
    space = (
        IntParam("period", 5, 200, default=20, help="bars in the average"),
        FloatParam("k", 0.5, 4.0, default=2.0, step=0.1, help="band width in standard deviations"),
        CategoricalParam("allow_short", (False, True), default=False),
    )

    def positions(self, candles, params, cache):
        period, k = params["period"], params["k"]
        middle = cache.sma(period)
        width = cache.rolling_std(period)
        lower = cache.get(("bb_lower", period, k), lambda: middle - k * width)
        upper = cache.get(("bb_upper", period, k), lambda: middle + k * width)
        return band_reversion(candles.close, lower, upper, middle, middle, bool(params["allow_short"]))
