"""DONCHIAN_BREAKOUT: follow a close beyond the channel of the previous bars."""
from __future__ import annotations

from app.strategies._signals import breakout
from app.strategies.base import CategoricalParam, IntParam, Strategy
from app.strategies.liquidity_sweep import _shift


class DonchianBreakout(Strategy):
    """Channel breakout (the turtles' rule), decided at each bar's close.

    - Entry channel: the highest high and lowest low of the ``entry_period`` bars before
      t (bar t excluded). Exit channel: the same over ``exit_period`` bars.
    - Flat: long when close > entry high; short when close < entry low (``allow_short``).
    - Long until close < exit low; short until close > exit high.
    - 0 before the entry channel exists.
    """

    name = "DONCHIAN_BREAKOUT"
    version = 1
    space = (
        IntParam("entry_period", 5, 300, default=20, help="bars in the entry channel"),
        IntParam("exit_period", 2, 200, default=10, help="bars in the exit channel"),
        CategoricalParam("allow_short", (False, True), default=False),
    )

    def _previous(self, cache, kind, period):
        if kind == "max":
            return cache.get(("prev_max", period), lambda: _shift(cache.rolling_max(period, "high")))
        return cache.get(("prev_min", period), lambda: _shift(cache.rolling_min(period, "low")))

    def positions(self, candles, params, cache):
        entry, exit_ = params["entry_period"], params["exit_period"]
        return breakout(candles.close, self._previous(cache, "max", entry),
                        self._previous(cache, "min", entry), self._previous(cache, "min", exit_),
                        self._previous(cache, "max", exit_), bool(params["allow_short"]))
