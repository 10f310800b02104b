"""Strategies that peek, in every way the tests could think of, on GOOG daily: caught every
time, at the first bar that peeks."""
import numpy as np
import pandas as pd
import pytest

from app.backtest.candles import Candles
from app.strategies import IntParam, Strategy
from app.validation.lookahead import check_lookahead, scaled_after


@pytest.fixture(scope="module")
def goog() -> Candles:
    from backtesting.test import GOOG

    ts = pd.DatetimeIndex(GOOG.index).as_unit("ms").asi8
    return Candles(ts, GOOG.Open.to_numpy(), GOOG.High.to_numpy(), GOOG.Low.to_numpy(),
                   GOOG.Close.to_numpy(), GOOG.Volume.to_numpy(dtype=float))


class ShiftMinusOne(Strategy):
    """Long while the next close is above an SMA of ``period``: a shift(-1)."""

    name = "SHIFT_MINUS_ONE"
    space = (IntParam("period", 2, 50, default=14),)

    def positions(self, candles, params, cache):
        next_close = np.append(candles.close[1:], np.nan)       # pandas' close.shift(-1)
        with np.errstate(invalid="ignore"):
            return (next_close > cache.sma(params["period"])).astype(float)


class PeekFromBar(Strategy):
    """Honest (flat) until open time ``since``, then long when the next close is higher."""

    name = "PEEK_FROM"
    space = (IntParam("since", 0, 2**62, default=0), IntParam("until", 0, 2**62, default=2**62))

    def positions(self, candles, params, cache):
        nxt = np.append(candles.close[1:], np.nan)
        window = (candles.ts >= params["since"]) & (candles.ts < params["until"]) & ~np.isnan(nxt)
        target = np.zeros(len(candles))
        target[window] = (nxt[window] > candles.close[window]).astype(float)
        return target


def test_a_shift_minus_one_is_caught_in_every_one_of_300_random_windows_at_its_first_bar(goog):
    rng = np.random.default_rng(300)
    strategy = ShiftMinusOne()
    for _ in range(300):
        n = int(rng.integers(60, 800))
        start = int(rng.integers(0, len(goog) - n))
        window = goog.slice(start, start + n)
        period = int(rng.integers(2, 30))
        violation = check_lookahead(strategy, window, {"period": period})
        assert violation is not None, (start, n, period)
        # the first target that reads a later bar: the first with an average
        assert violation.bar == period - 1, (start, n, period, violation)


@pytest.mark.parametrize("where", ["middle", "last bars", "first bars"])
def test_a_peek_confined_to_a_few_bars_is_caught_there(goog, where):
    n = len(goog)
    since = {"middle": n // 2, "last bars": n - 5, "first bars": 3}[where]
    until = {"middle": n // 2 + 40, "last bars": n, "first bars": 43}[where]
    params = {"since": int(goog.ts[since]), "until": int(goog.ts[until]) if until < n else 2**62}
    violation = check_lookahead(PeekFromBar(), goog, params, marks=(since,))
    assert violation is not None and since <= violation.bar < until


def test_scaling_keeps_the_past_and_moves_every_later_bar(goog):
    k = 1000
    for factor in (2.0, 0.5):
        m = scaled_after(goog, k, factor)
        for name in ("open", "high", "low", "close", "volume"):
            np.testing.assert_array_equal(getattr(m, name)[:k], getattr(goog, name)[:k])
            np.testing.assert_allclose(getattr(m, name)[k:], getattr(goog, name)[k:] * factor)


def test_an_honest_strategy_passes_on_every_window(goog):
    from app.strategies import get_strategy

    rng = np.random.default_rng(1)
    for name in ("SMA_CROSS", "DONCHIAN_BREAKOUT", "RSI_MEAN_REVERSION", "LIQUIDITY_SWEEP"):
        strategy = get_strategy(name)
        for _ in range(5):
            start = int(rng.integers(0, len(goog) - 500))
            assert check_lookahead(strategy, goog.slice(start, start + 500), None) is None, name
