"""LIQUIDITY_SWEEP on hand-made bars."""
import numpy as np

from app.backtest import Candles
from app.strategies import IndicatorCache, get_strategy, run_strategy
from tests.conftest import random_candles


def bars(high, low, close):
    high, low, close = (np.asarray(x, dtype=float) for x in (high, low, close))
    open_ = np.concatenate(([close[0]], close[:-1]))
    high = np.maximum(high, np.maximum(open_, close))
    low = np.minimum(low, np.minimum(open_, close))
    return Candles(np.arange(len(close)) * 300_000, open_, high, low, close, np.ones(len(close)))


PARAMS = {"lookback": 3, "max_hold_bars": 2, "atr_period": 2, "min_sweep_atr": 0.0}


def test_a_swept_low_that_closes_back_inside_goes_long_for_the_hold():
    # swing low of bars 0-2 is 99; bar 4 dips to 98 and closes at 100.5 -> long bars 4, 5
    c = bars(high=[101, 101, 101, 101, 101, 101, 101, 101],
             low=[99.5, 99, 99.5, 99.6, 98, 99.8, 99.8, 99.8],
             close=[100, 100, 100, 100, 100.5, 100, 100, 100])
    s = get_strategy("LIQUIDITY_SWEEP")
    target = s.positions(c, {**s.defaults(), **PARAMS}, IndicatorCache(c))
    assert target.tolist() == [0, 0, 0, 0, 1, 1, 0, 0]


def test_a_swept_high_goes_short_unless_shorts_are_off():
    c = bars(high=[101, 102, 101, 101, 103, 101, 101],
             low=[99, 99, 99, 99, 99, 99, 99],
             close=[100, 100, 100, 100, 101.5, 100, 100])
    s = get_strategy("LIQUIDITY_SWEEP")
    short = s.positions(c, {**s.defaults(), **PARAMS}, IndicatorCache(c))
    assert short.tolist() == [0, 0, 0, 0, -1, -1, 0]
    flat = s.positions(c, {**s.defaults(), **PARAMS, "allow_short": False}, IndicatorCache(c))
    assert flat.tolist() == [0] * 7


def test_a_sweep_that_closes_outside_is_a_breakout_not_a_signal():
    c = bars(high=[101] * 6, low=[99.5, 99, 99.5, 99.6, 98, 99.8],
             close=[100, 100, 100, 100, 98.5, 100])
    s = get_strategy("LIQUIDITY_SWEEP")
    assert s.positions(c, {**s.defaults(), **PARAMS}, IndicatorCache(c)).tolist() == [0] * 6


def test_stops_and_targets_are_the_engines_atr_stops():
    s = get_strategy("LIQUIDITY_SWEEP")
    config = s.execution(s.validate({"stop_atr": 2.0, "target_atr": 4.0, "atr_period": 10}))
    assert config == {"stop_loss_atr": 2.0, "take_profit_atr": 4.0, "atr_period": 10}
    result = run_strategy(s, random_candles(3000, seed=3), {"lookback": 10})
    reasons = {t.exit_reason for t in result.trades}
    assert reasons & {"stop_loss", "take_profit"}
    assert result.metrics["num_trades"] > 10


def test_positions_use_no_bar_after_their_own():
    c = random_candles(800, seed=8)
    s = get_strategy("LIQUIDITY_SWEEP")
    params = s.validate({"lookback": 12, "min_sweep_atr": 0.2})
    full = s.positions(c, params, IndicatorCache(c))
    for k in (50, 333, 799):
        cut = c.slice(0, k)
        np.testing.assert_array_equal(s.positions(cut, params, IndicatorCache(cut)), full[:k])
