"""Metrics against values worked out by hand, their edge cases, and the two routes to them."""
import math
import sys

import numpy as np
import pytest

from app.backtest import METRIC_NAMES, BacktestConfig, Candles, backtest, evaluate
from app.backtest.candles import periods_per_year
from app.backtest.metrics import (
    PROFIT_FACTOR_CAP,
    bar_returns,
    cagr,
    compute_metrics,
    max_drawdown,
    profit_factor,
    sharpe_ratio,
    sortino_ratio,
)
from tests.conftest import random_candles

DAY = 86_400_000
NO_TRADES = np.empty(0)

# Initial capital 100, then +10 %, -10 %, +10 %: r = [0.1, -0.1, 0.1].
# mean = 1/30; deviations 1/15, -2/15, 1/15, so var(ddof=1) = (6/225) / 2 = 1/75;
# downside: only -0.1, so sqrt(0.01 / 3) = 0.1 / sqrt(3).
UP_DOWN_UP = np.array([110.0, 99.0, 108.9])


def assert_all_finite(metrics):
    assert set(metrics) == set(METRIC_NAMES)
    bad = {k: v for k, v in metrics.items() if not math.isfinite(v)}
    assert not bad


# --- one function at a time -------------------------------------------------------------

def test_bar_returns_start_from_the_initial_capital_and_stop_at_zero_equity():
    r = bar_returns(np.array([110.0, 99.0, 0.0, 0.0, -5.0]), 100.0)
    np.testing.assert_allclose(r, [0.1, -0.1, -1.0, 0.0, 0.0], atol=1e-15)


def test_sharpe_is_mean_over_sample_std_annualised_by_sqrt_365():
    r = bar_returns(UP_DOWN_UP, 100.0)
    assert sharpe_ratio(r, 365) == pytest.approx((1 / 30) / math.sqrt(1 / 75) * math.sqrt(365),
                                                 rel=1e-12)
    assert sharpe_ratio(r, 365) == pytest.approx(5.515130, rel=1e-6)


def test_sharpe_and_sortino_of_the_docstring_example():
    # r = [0.01, -0.01, 0.02]: mean 1/150, deviations (1, -5, 4) / 300, so
    # var(ddof=1) = 42 / 90000 / 2 and Sharpe = 2 * sqrt(365 / 21); downside 0.01 / sqrt(3),
    # so Sortino = 2 * sqrt(365 / 3).
    r = np.array([0.01, -0.01, 0.02])
    assert sharpe_ratio(r, 365) == pytest.approx(2 * math.sqrt(365 / 21), rel=1e-12)
    assert sortino_ratio(r, 365) == pytest.approx(2 * math.sqrt(365 / 3), rel=1e-12)


def test_sortino_divides_by_the_downside_deviation_over_all_bars():
    r = bar_returns(UP_DOWN_UP, 100.0)
    assert sortino_ratio(r, 365) == pytest.approx((1 / 30) / (0.1 / math.sqrt(3)) * math.sqrt(365),
                                                  rel=1e-12)
    assert sortino_ratio(r, 365) == pytest.approx(math.sqrt(365 / 3), rel=1e-12)


def test_max_drawdown_is_the_worst_fall_from_a_running_peak():
    assert max_drawdown(np.array([100.0, 120.0, 90.0, 130.0])) == 0.25
    assert max_drawdown(UP_DOWN_UP, 100.0) == pytest.approx(0.1)
    # The initial capital is a peak too.
    assert max_drawdown(np.array([90.0, 95.0]), 100.0) == pytest.approx(0.1)
    assert max_drawdown(np.array([90.0, 95.0])) == 0.0
    assert max_drawdown(np.array([101.0, 102.0, 103.0]), 100.0) == 0.0


def test_cagr_compounds_per_year():
    assert cagr(12_100.0, 10_000.0, 730, 365) == pytest.approx(0.1, rel=1e-12)  # 1.1 ** 2
    assert cagr(5_000.0, 10_000.0, 365, 365) == pytest.approx(-0.5, rel=1e-12)
    assert cagr(10_000.0, 10_000.0, 100, 365) == 0.0
    assert cagr(10_000.0, 10_000.0, 0, 365) == 0.0


def test_cagr_of_a_short_lucky_run_is_capped_not_infinite():
    value = cagr(1e6, 1.0, 1, 105_120)
    assert math.isfinite(value) and value == pytest.approx(math.expm1(700.0))


def test_calmar_of_a_short_lucky_run_with_a_tiny_drawdown_stays_finite():
    # Three 5-minute bars: +3 % after a 0.005 % dip. CAGR hits its cap (e**700) and
    # divided by a 5e-5 drawdown it would overflow to inf, which JSON storage rejects.
    o = np.array([100.0, 100.0, 100.0])
    close = np.array([100.0, 99.995, 103.0])
    c = Candles(np.arange(3) * 300_000, o, np.maximum(o, close), np.minimum(o, close), close,
                np.ones(3))
    cfg = BacktestConfig.for_timeframe("5m", fee=0.0)
    for m in (evaluate(c, [1, 1, 1], cfg), backtest(c, [1, 1, 1], cfg).metrics):
        assert_all_finite(m)
        assert m["cagr"] == pytest.approx(math.expm1(700.0))
        assert m["calmar_ratio"] == sys.float_info.max


def test_cagr_is_minus_one_when_equity_is_gone():
    assert cagr(0.0, 10_000.0, 10, 365) == -1.0
    assert cagr(-50.0, 10_000.0, 10, 365) == -1.0


def test_profit_factor_is_capped_and_zero_without_profits():
    assert profit_factor(300.0, 100.0) == 3.0
    assert profit_factor(10_000.0, 1.0) == PROFIT_FACTOR_CAP == 100.0
    assert profit_factor(50.0, 0.0) == PROFIT_FACTOR_CAP
    assert profit_factor(0.0, 40.0) == 0.0
    assert profit_factor(0.0, 0.0) == 0.0


# --- all metrics from an equity curve and trades ---------------------------------------

def test_compute_metrics_on_a_hand_worked_curve():
    # With periods_per_year = 3 = bars the CAGR is the total return, Sharpe is
    # (1/30) / sqrt(1/75) * sqrt(3) = 0.5 and Sortino (1/30) / (0.1 / sqrt(3)) * sqrt(3) = 1.
    m = compute_metrics(UP_DOWN_UP, np.array([300.0, -100.0, 50.0, -50.0]), 2, 100.0, 3.0)
    expected = {
        "net_profit": 8.9,
        "total_return": 0.089,
        "cagr": 0.089,
        "sharpe_ratio": 0.5,
        "sortino_ratio": 1.0,
        "max_drawdown": 0.1,
        "calmar_ratio": 0.89,
        "win_rate": 0.5,
        "profit_factor": 350.0 / 150.0,
        "num_trades": 4,
        "exposure": 2 / 3,
        "avg_trade": 50.0,
        "final_equity": 108.9,
    }
    assert set(m) == set(expected)
    for name, value in expected.items():
        assert m[name] == pytest.approx(value, rel=1e-12), name
    assert isinstance(m["num_trades"], int)


def test_compute_metrics_annualises_with_365_for_daily_bars():
    m = compute_metrics(UP_DOWN_UP, NO_TRADES, 0, 100.0, 365.0)
    assert m["sharpe_ratio"] == pytest.approx(math.sqrt(75 * 365) / 30, rel=1e-12)
    assert m["sortino_ratio"] == pytest.approx(math.sqrt(365 / 3), rel=1e-12)
    assert m["cagr"] == pytest.approx(1.089 ** (365 / 3) - 1, rel=1e-9)
    assert m["calmar_ratio"] == pytest.approx(m["cagr"] / 0.1, rel=1e-9)


def test_profit_factor_cap_applies_through_compute_metrics():
    m = compute_metrics(UP_DOWN_UP, np.array([1_000.0, -1.0]), 1, 100.0, 365.0)
    assert m["profit_factor"] == PROFIT_FACTOR_CAP
    assert m["win_rate"] == 0.5 and m["avg_trade"] == pytest.approx(499.5)


def test_all_winning_trades():
    m = compute_metrics(UP_DOWN_UP, np.array([5.0, 10.0, 0.5]), 3, 100.0, 365.0)
    assert m["win_rate"] == 1.0
    assert m["profit_factor"] == PROFIT_FACTOR_CAP
    assert m["avg_trade"] == pytest.approx(15.5 / 3)
    assert_all_finite(m)


def test_all_losing_trades_and_a_breakeven_trade():
    m = compute_metrics(UP_DOWN_UP, np.array([-5.0, 0.0]), 1, 100.0, 365.0)
    assert m["win_rate"] == 0.0 and m["profit_factor"] == 0.0 and m["avg_trade"] == -2.5


# --- edge cases: every metric defined ----------------------------------------------------

def test_no_bars_at_all():
    m = compute_metrics(np.empty(0), NO_TRADES, 0, 100.0, 365.0)
    assert_all_finite(m)
    assert m["final_equity"] == 100.0 and m["num_trades"] == 0 and m["cagr"] == 0.0


def test_one_bar():
    m = compute_metrics(np.array([105.0]), NO_TRADES, 0, 100.0, 365.0)
    assert_all_finite(m)
    assert m["sharpe_ratio"] == 0.0  # fewer than two bars
    assert m["sortino_ratio"] == 0.0  # no losing bar
    assert m["max_drawdown"] == 0.0 and m["calmar_ratio"] == 0.0
    assert m["cagr"] == pytest.approx(1.05 ** 365 - 1, rel=1e-9)


def test_flat_equity_has_zero_variance_and_zero_ratios():
    m = compute_metrics(np.full(10, 100.0), NO_TRADES, 0, 100.0, 365.0)
    assert_all_finite(m)
    assert m["sharpe_ratio"] == m["sortino_ratio"] == m["max_drawdown"] == 0.0
    assert m["cagr"] == 0.0 and m["calmar_ratio"] == 0.0 and m["exposure"] == 0.0


def test_constant_nonzero_returns_have_zero_variance():
    m = compute_metrics(np.array([200.0, 400.0, 800.0]), NO_TRADES, 3, 100.0, 365.0)
    assert_all_finite(m)
    assert m["sharpe_ratio"] == 0.0 and m["sortino_ratio"] == 0.0
    assert m["max_drawdown"] == 0.0 and m["calmar_ratio"] == 0.0


def test_equity_wiped_out():
    # r = [-0.5, -1, 0]: mean -0.5, var(ddof=1) = (0 + 0.25 + 0.25) / 2, downside^2 = 1.25 / 3.
    m = compute_metrics(np.array([50.0, 0.0, 0.0]), np.array([-100.0]), 1, 100.0, 365.0)
    assert_all_finite(m)
    assert m["total_return"] == -1.0 and m["cagr"] == -1.0
    assert m["max_drawdown"] == 1.0 and m["calmar_ratio"] == -1.0
    assert m["sharpe_ratio"] == pytest.approx(-math.sqrt(365), rel=1e-12)
    assert m["sortino_ratio"] == pytest.approx(-0.5 / math.sqrt(1.25 / 3) * math.sqrt(365),
                                               rel=1e-12)


def test_equity_below_zero():
    m = compute_metrics(np.array([-20.0, -20.0]), np.array([-120.0]), 1, 100.0, 365.0)
    assert_all_finite(m)
    assert m["max_drawdown"] == pytest.approx(1.2) and m["cagr"] == -1.0


def test_engine_without_trades_gives_the_initial_capital_and_zeros():
    c = random_candles(50, seed=1)
    for m in (evaluate(c, np.zeros(50)), backtest(c, np.zeros(50)).metrics):
        assert_all_finite(m)
        assert m["final_equity"] == 10_000.0 and m["num_trades"] == 0
        assert all(m[k] == 0.0 for k in METRIC_NAMES if k != "final_equity")


def test_engine_on_one_bar():
    px = np.array([100.0])
    c = Candles(np.array([0]), px, px, px, px, np.ones(1))
    for m in (evaluate(c, [1.0]), backtest(c, [1.0]).metrics):
        assert_all_finite(m)
        assert m["num_trades"] == 0 and m["final_equity"] == 10_000.0


def test_engine_exposure_counts_bars_that_close_with_a_position():
    px = np.full(5, 100.0)
    c = Candles(np.arange(5) * DAY, px, px, px, px, np.ones(5))
    # target[1] is filled at bar 2's open, target[3] = 0 closes it at bar 4's open.
    m = backtest(c, [0, 1, 1, 0, 0], BacktestConfig(fee=0.0)).metrics
    assert m["exposure"] == pytest.approx(2 / 5)
    assert m["num_trades"] == 1 and m["win_rate"] == 0.0 and m["profit_factor"] == 0.0


def test_engine_wiped_out_by_a_short_squeeze():
    o = np.array([100.0, 100.0, 180.0, 300.0, 300.0])
    c = Candles(np.arange(5) * DAY, o, o * 1.01, o * 0.99, o, np.ones(5))
    full = backtest(c, [-1, -1, -1, -1, -1])
    fast = evaluate(c, [-1, -1, -1, -1, -1])
    assert full.trades[-1].exit_reason == "liquidation"
    for m in (full.metrics, fast):
        assert_all_finite(m)
        assert m["cagr"] == -1.0 and m["max_drawdown"] > 1.0 and m["final_equity"] < 0.0


# --- the fast route ---------------------------------------------------------------------

def _persistent_target(n, seed, levels):
    rng = np.random.default_rng(seed)
    changes = rng.random(n) < 0.12
    picks = rng.choice(np.asarray(levels, dtype=float), n)
    idx = np.maximum.accumulate(np.where(changes, np.arange(n), 0))
    target = np.where(changes.cumsum() > 0, picks[idx], 0.0)
    target[rng.random(n) < 0.03] = np.nan
    return target


FAST_ROUTE_CONFIGS = [
    {"fee": 0.0},
    {},
    {"slippage_bps": 5.0, "periods_per_year": 8760.0},
    {"stop_loss": 0.02, "take_profit": 0.03},
    {"stop_loss_atr": 1.5, "take_profit_atr": 2.5, "atr_period": 7},
    {"slippage_bps": 10.0, "stop_loss": 0.01, "take_profit_atr": 1.0},
]


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("config", FAST_ROUTE_CONFIGS, ids=lambda kw: ",".join(kw) or "default")
@pytest.mark.parametrize("levels", [(0.0, 1.0), (-1.0, -0.5, 0.0, 0.5, 1.0), (-2.0, 0.0, 2.0)],
                         ids=["long", "both", "levered"])
def test_evaluate_equals_backtest_metrics(levels, config, seed):
    vol = 0.05 if 2.0 in levels else 0.012
    c = random_candles(250 + 50 * seed, seed=100 + seed, vol=vol)
    target = _persistent_target(len(c), seed, levels)
    cfg = BacktestConfig(**config)
    full = backtest(c, target, cfg).metrics
    fast = evaluate(c, target, cfg)
    assert set(fast) == set(full) == set(METRIC_NAMES)
    assert_all_finite(fast)
    for name in METRIC_NAMES:
        assert fast[name] == pytest.approx(full[name], rel=1e-9, abs=1e-10), name


# --- annualisation ------------------------------------------------------------------------

def test_periods_per_year_for_24_7_markets():
    assert periods_per_year("1d") == 365
    assert periods_per_year("5m") == 105_120
    assert periods_per_year("1h") == 8_760
    assert BacktestConfig.for_timeframe("5m").periods_per_year == 105_120
