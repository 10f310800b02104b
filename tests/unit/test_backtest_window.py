"""Test windows with warm-up: indicators see the bars before the window, positions and
metrics start at its first bar."""
import numpy as np
import pytest

from app.backtest import BacktestConfig, backtest
from app.backtest.engine import backtest_window
from app.errors import InputError
from app.strategies import get_strategy, run_strategy
from app.strategies.runner import run_window
from tests.conftest import random_candles

CANDLES = random_candles(1000, seed=9, vol=0.01)
SMA = get_strategy("SMA_CROSS")
SLOW = {"fast": 20, "slow": 107, "allow_short": True}


def test_a_slow_average_trades_from_the_windows_first_bar():
    start = 694
    cold = run_strategy(SMA, CANDLES.slice(start), SLOW)
    warm = run_window(SMA, CANDLES, start, SLOW)
    # cold, the 107-bar average leaves the first 106 bars flat; warm, the first bar trades
    assert np.count_nonzero(cold.position[:106]) == 0
    assert warm.position[0] != 0 and warm.trades[0].entry_time == int(CANDLES.ts[start])
    assert len(warm.equity) == len(CANDLES) - start == len(warm.returns)
    assert warm.metrics["exposure"] == pytest.approx(np.count_nonzero(warm.position) / (1000 - start))


def test_a_target_held_before_the_window_is_bought_at_its_first_open():
    # Long all along: the window buys at its first bar's open (the target of the bar
    # before it) and its equity follows the close from there, whatever came before.
    start = 500
    config = BacktestConfig(fee=0.0)
    window = backtest_window(CANDLES, np.ones(len(CANDLES)), start, config)
    expected = config.initial_capital * CANDLES.close[start:] / CANDLES.open[start]
    np.testing.assert_allclose(window.equity[:-1], expected[:-1], rtol=1e-12)
    assert window.trades[0].entry_price == pytest.approx(CANDLES.open[start], rel=1e-14)
    assert window.metrics["num_trades"] == 1


def test_a_window_from_bar_0_is_the_plain_backtest():
    from app.strategies.cache import IndicatorCache

    target = SMA.positions(CANDLES, SMA.validate(SLOW), IndicatorCache(CANDLES))
    a = backtest_window(CANDLES, target, 0)
    b = backtest(CANDLES, target)
    assert a.metrics == b.metrics


def test_the_window_start_must_be_a_bar():
    with pytest.raises(InputError, match="outside"):
        backtest_window(CANDLES, np.zeros(len(CANDLES)), len(CANDLES))
    with pytest.raises(InputError, match="shape"):
        backtest_window(CANDLES, np.zeros(5), 3)
