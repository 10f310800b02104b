"""No built-in strategy peeks: cutting the data after bar k changes nothing before k."""
import numpy as np
import pytest

from app.strategies import IndicatorCache, get_strategy, run_strategy, strategy_names
from app.optimize.space import build_space
from tests.conftest import random_candles

CANDLES = random_candles(700, seed=17, vol=0.02)
CUTS = (120, 301, 555, 699)


def param_sets(name):
    s = get_strategy(name)
    return [s.defaults(), *build_space(s).sample(3, seed=5)]


@pytest.mark.parametrize("name", strategy_names())
def test_positions_up_to_each_cut_do_not_change_when_later_bars_are_removed(name):
    s = get_strategy(name)
    for params in param_sets(name):
        full = s.positions(CANDLES, params, IndicatorCache(CANDLES))
        for k in CUTS:
            cut = CANDLES.slice(0, k)
            np.testing.assert_array_equal(s.positions(cut, params, IndicatorCache(cut)), full[:k],
                                          err_msg=f"{name} {params} cut at {k}")


@pytest.mark.parametrize("name", strategy_names())
def test_equity_and_closed_trades_before_a_cut_do_not_change(name):
    s = get_strategy(name)
    for params in param_sets(name):
        full = run_strategy(s, CANDLES, params)
        for k in CUTS:
            cut = run_strategy(s, CANDLES.slice(0, k), params)
            # the last bar of the cut run closes its open position: compare before it
            np.testing.assert_allclose(cut.equity[:k - 1], full.equity[:k - 1], rtol=0, atol=1e-9)
            closed_full = [t for t in full.trades if t.exit_time < CANDLES.ts[k - 1]]
            closed_cut = [t for t in cut.trades if t.exit_time < CANDLES.ts[k - 1]]
            assert closed_cut == closed_full
