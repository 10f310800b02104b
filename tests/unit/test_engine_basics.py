"""The engine's rules on hand-made bars."""
import numpy as np
import pytest

from app.backtest import BacktestConfig, Candles, backtest, equity_returns, evaluate
from app.errors import InputError
from tests.conftest import random_candles

DAY = 86_400_000


def flat_bars(prices):
    px = np.asarray(prices, dtype=float)
    return Candles(np.arange(len(px)) * DAY, px, px, px, px, np.ones(len(px)))


def test_target_is_filled_at_the_next_open():
    c = Candles(np.arange(4) * DAY, [100.0, 110.0, 120.0, 130.0], [101.0, 112.0, 121.0, 131.0],
                [99.0, 109.0, 119.0, 129.0], [101.0, 111.0, 121.0, 130.0], np.ones(4))
    res = backtest(c, [1, 1, 1, 1], BacktestConfig(fee=0.0))
    assert res.trades[0].entry_price == 110.0
    assert res.trades[0].entry_time == DAY
    assert res.equity[0] == 10_000.0
    assert res.trades[0].exit_price == 130.0
    assert res.trades[0].exit_reason == "end"


def test_fees_and_slippage_are_paid_on_both_fills():
    c = flat_bars([100.0, 100.0, 100.0])
    res = backtest(c, [1, 0, 0], BacktestConfig(fee=0.001, slippage_bps=10))
    t = res.trades[0]
    assert t.entry_price == pytest.approx(100.0 * 1.001)
    assert t.exit_price == pytest.approx(100.0 * 0.999)
    assert t.pnl < 0
    assert res.equity[-1] == pytest.approx(10_000 + t.pnl)
    assert t.fees == pytest.approx(0.001 * t.size * (t.entry_price + t.exit_price))


def test_bar_touching_stop_and_target_takes_the_stop():
    c = Candles(np.arange(3) * DAY, [100.0, 100.0, 100.0], [100.0, 110.0, 100.0],
                [100.0, 90.0, 100.0], [100.0, 100.0, 100.0], np.ones(3))
    res = backtest(c, [1, 1, 1], BacktestConfig(fee=0.0, stop_loss=0.05, take_profit=0.05))
    assert res.trades[0].exit_reason == "stop_loss"
    assert res.trades[0].exit_price == pytest.approx(95.0)


def test_no_trades_gives_defined_metrics():
    m = evaluate(random_candles(50), np.zeros(50))
    assert m["num_trades"] == 0 and m["sharpe_ratio"] == 0.0 and m["net_profit"] == 0.0
    assert all(np.isfinite(v) for v in m.values())


def test_one_bar_gives_defined_metrics():
    m = evaluate(flat_bars([100.0]), [1.0])
    assert m["num_trades"] == 0 and all(np.isfinite(v) for v in m.values())


def test_fast_route_agrees_with_full_route():
    c = random_candles(800, seed=3)
    target = np.sign(np.sin(np.arange(800) / 7.0))
    cfg = BacktestConfig(slippage_bps=3, stop_loss=0.02, take_profit=0.03)
    full = backtest(c, target, cfg).metrics
    fast = evaluate(c, target, cfg)
    for key, value in full.items():
        assert fast[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key


@pytest.mark.parametrize("cfg", [BacktestConfig(slippage_bps=3, stop_loss=0.02, take_profit=0.03),
                                 BacktestConfig(stop_loss_atr=2.0, fee=0.0)])
def test_returns_only_route_gives_the_full_routes_returns(cfg):
    c = random_candles(800, seed=4)
    target = 0.7 * np.sign(np.sin(np.arange(800) / 5.0))
    np.testing.assert_array_equal(equity_returns(c, target, cfg), backtest(c, target, cfg).returns)


def test_config_rejects_nonsense():
    with pytest.raises(InputError, match="fee"):
        BacktestConfig(fee=-0.1)
    with pytest.raises(InputError, match="not both"):
        BacktestConfig(stop_loss=0.1, stop_loss_atr=2.0)
