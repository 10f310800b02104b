"""Indicators against pandas or plain loops on random data; warm-ups; candle validation."""
import math

import numpy as np
import pandas as pd
import pytest

from app.backtest import indicators as ind
from app.backtest.candles import Candles
from app.errors import InputError
from tests.conftest import random_candles

PERIODS = [1, 2, 5, 14, 50]
SEEDS = [0, 1, 2]


def random_series(seed, n=400):
    rng = np.random.default_rng(seed)
    return 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.02, n)))


def wilder_loop(values, period, seed_from):
    """Wilder smoothing in plain Python: the mean of ``values[seed_from:seed_from+period]``
    at index ``seed_from + period - 1``, then ``(prev * (period - 1) + v) / period``."""
    out = [math.nan] * len(values)
    first = seed_from + period - 1
    if first >= len(values):
        return out
    value = sum(values[seed_from:seed_from + period]) / period
    out[first] = value
    for i in range(first + 1, len(values)):
        value = (value * (period - 1) + values[i]) / period
        out[i] = value
    return out


def true_range_loop(high, low, close):
    out = []
    for i in range(len(high)):
        if i == 0:
            out.append(high[0] - low[0])
        else:
            out.append(max(high[i] - low[i], abs(high[i] - close[i - 1]),
                           abs(low[i] - close[i - 1])))
    return out


def assert_same(got, want, rtol=1e-10):
    want = np.asarray(want, dtype=float)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=rtol, atol=1e-12)


# --- against pandas ---------------------------------------------------------------------

@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("period", PERIODS)
def test_sma_matches_pandas_rolling_mean(seed, period):
    x = random_series(seed)
    assert_same(ind.sma(x, period), pd.Series(x).rolling(period).mean().to_numpy())


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("period", PERIODS)
def test_rolling_std_matches_pandas_population_std(seed, period):
    x = random_series(seed)
    assert_same(ind.rolling_std(x, period), pd.Series(x).rolling(period).std(ddof=0).to_numpy(),
                rtol=1e-8)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("period", PERIODS)
def test_rolling_max_and_min_match_pandas(seed, period):
    x = random_series(seed)
    s = pd.Series(x).rolling(period)
    assert_same(ind.rolling_max(x, period), s.max().to_numpy(), rtol=0)
    assert_same(ind.rolling_min(x, period), s.min().to_numpy(), rtol=0)


def test_rolling_extremes_with_ties_and_monotone_runs():
    x = np.array([3.0, 3.0, 2.0, 2.0, 5.0, 5.0, 1.0, 1.0, 1.0, 4.0, 6.0, 7.0, 8.0, 0.0])
    for period in (1, 2, 3, 4, len(x)):
        s = pd.Series(x).rolling(period)
        assert_same(ind.rolling_max(x, period), s.max().to_numpy(), rtol=0)
        assert_same(ind.rolling_min(x, period), s.min().to_numpy(), rtol=0)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("period", PERIODS)
def test_ema_is_seeded_by_the_sma_then_smoothed_with_2_over_period_plus_1(seed, period):
    x = random_series(seed)
    alpha = 2.0 / (period + 1.0)
    # pandas' recursive EWM over the series that starts with the seed.
    seeded = np.concatenate(([x[:period].mean()], x[period:]))
    tail = pd.Series(seeded).ewm(alpha=alpha, adjust=False).mean().to_numpy()
    want = np.concatenate((np.full(period - 1, np.nan), tail))
    assert_same(ind.ema(x, period), want)
    # and a plain loop, as a second opinion
    loop = [math.nan] * len(x)
    value = sum(x[:period]) / period
    loop[period - 1] = value
    for i in range(period, len(x)):
        value = alpha * x[i] + (1 - alpha) * value
        loop[i] = value
    assert_same(ind.ema(x, period), loop)


# --- Wilder's RSI and ATR, by hand ------------------------------------------------------

@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("period", [2, 5, 14, 30])
def test_rsi_matches_a_hand_loop(seed, period):
    x = random_series(seed).tolist()
    gains = [0.0] + [max(x[i] - x[i - 1], 0.0) for i in range(1, len(x))]
    losses = [0.0] + [max(x[i - 1] - x[i], 0.0) for i in range(1, len(x))]
    avg_gain = wilder_loop(gains, period, seed_from=1)
    avg_loss = wilder_loop(losses, period, seed_from=1)
    want = [100.0 - 100.0 / (1.0 + g / lo) if lo > 0 else (100.0 if g > 0 else 50.0)
            for g, lo in zip(avg_gain, avg_loss)]
    want = [math.nan if math.isnan(g) else w for g, w in zip(avg_gain, want)]
    got = ind.rsi(np.array(x), period)
    assert_same(got, want, rtol=1e-9)
    assert np.nanmin(got) >= 0.0 and np.nanmax(got) <= 100.0


def test_rsi_of_one_way_and_flat_markets():
    up = np.arange(1.0, 31.0)
    assert np.all(ind.rsi(up, 14)[14:] == 100.0)
    assert np.all(ind.rsi(up[::-1].copy(), 14)[14:] == 0.0)
    assert np.all(ind.rsi(np.full(30, 7.0), 14)[14:] == 50.0)


@pytest.mark.parametrize("seed", SEEDS)
def test_true_range_matches_a_hand_loop(seed):
    c = random_candles(300, seed=seed, vol=0.02)
    want = true_range_loop(c.high.tolist(), c.low.tolist(), c.close.tolist())
    assert_same(ind.true_range(c.high, c.low, c.close), want, rtol=0)


def test_true_range_includes_gaps_from_the_previous_close():
    high = np.array([10.0, 13.0, 8.0])
    low = np.array([9.0, 12.0, 7.0])
    close = np.array([9.5, 12.5, 7.5])
    assert ind.true_range(high, low, close).tolist() == [1.0, 3.5, 5.5]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("period", [1, 5, 14, 30])
def test_atr_matches_a_hand_loop(seed, period):
    c = random_candles(300, seed=seed, vol=0.02)
    tr = true_range_loop(c.high.tolist(), c.low.tolist(), c.close.tolist())
    assert_same(ind.atr(c.high, c.low, c.close, period), wilder_loop(tr, period, seed_from=0))


# --- warm-up: NaN until an indicator exists ---------------------------------------------

def leading_nans(a):
    finite = np.flatnonzero(~np.isnan(a))
    return int(finite[0]) if finite.size else len(a)


@pytest.mark.parametrize("period", [1, 3, 20])
def test_warm_up_lengths(period):
    c = random_candles(100, seed=4)
    x = c.close
    assert leading_nans(ind.sma(x, period)) == period - 1
    assert leading_nans(ind.ema(x, period)) == period - 1
    assert leading_nans(ind.rolling_std(x, period)) == period - 1
    assert leading_nans(ind.rolling_max(x, period)) == period - 1
    assert leading_nans(ind.rolling_min(x, period)) == period - 1
    assert leading_nans(ind.rsi(x, period)) == period
    assert leading_nans(ind.atr(c.high, c.low, c.close, period)) == period - 1
    assert leading_nans(ind.true_range(c.high, c.low, c.close)) == 0
    for out in (ind.sma(x, period), ind.ema(x, period), ind.rsi(x, period),
                ind.atr(c.high, c.low, c.close, period)):
        assert not np.isnan(out[leading_nans(out):]).any()


def test_series_shorter_than_the_period_are_all_nan():
    c = random_candles(5, seed=4)
    x = c.close
    for out in (ind.sma(x, 6), ind.ema(x, 6), ind.rolling_std(x, 6), ind.rolling_max(x, 6),
                ind.rolling_min(x, 6), ind.rsi(x, 5), ind.atr(c.high, c.low, c.close, 6)):
        assert out.shape == (5,) and np.isnan(out).all()


def test_indicators_read_no_future_bar():
    c = random_candles(200, seed=6)
    x = np.array(c.close)
    full = {name: f(x) for name, f in _ONE_SERIES.items()}
    x[120:] *= 3.0  # change the future of bar 119
    for name, f in _ONE_SERIES.items():
        np.testing.assert_array_equal(f(x)[:120], full[name][:120], err_msg=name)


_ONE_SERIES = {
    "sma": lambda x: ind.sma(x, 10),
    "ema": lambda x: ind.ema(x, 10),
    "rolling_std": lambda x: ind.rolling_std(x, 10),
    "rolling_max": lambda x: ind.rolling_max(x, 10),
    "rolling_min": lambda x: ind.rolling_min(x, 10),
    "rsi": lambda x: ind.rsi(x, 10),
}


# --- candle validation --------------------------------------------------------------------

def good_columns(n=5):
    c = random_candles(n, seed=8)
    return {name: np.array(getattr(c, name)) for name in ("ts", "open", "high", "low", "close",
                                                           "volume")}


def build(cols):
    return Candles(cols["ts"], cols["open"], cols["high"], cols["low"], cols["close"],
                   cols["volume"])


def test_valid_candles_build_and_are_read_only():
    c = build(good_columns())
    assert len(c) == 5
    with pytest.raises(ValueError):
        c.close[0] = 1.0


def test_unsorted_times_are_rejected():
    cols = good_columns()
    cols["ts"][[1, 2]] = cols["ts"][[2, 1]]
    with pytest.raises(InputError, match="unsorted") as err:
        build(cols)
    assert err.value.field == "ts"


def test_duplicate_times_are_rejected():
    cols = good_columns()
    cols["ts"][3] = cols["ts"][2]
    with pytest.raises(InputError, match="duplicate"):
        build(cols)


@pytest.mark.parametrize("name", ["open", "high", "low", "close", "volume"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_values_are_rejected(name, bad):
    cols = good_columns()
    cols[name][2] = bad
    with pytest.raises(InputError, match="finite"):
        build(cols)


def test_high_below_low_is_rejected():
    cols = good_columns()
    cols["high"][1], cols["low"][1] = cols["low"][1], cols["high"][1]
    with pytest.raises(InputError, match="high below low"):
        build(cols)


def test_open_or_close_outside_the_bar_is_rejected():
    cols = good_columns()
    cols["close"][2] = cols["high"][2] * 1.01
    with pytest.raises(InputError, match="outside"):
        build(cols)


def test_negative_volume_and_non_positive_prices_are_rejected():
    cols = good_columns()
    cols["volume"][0] = -1.0
    with pytest.raises(InputError, match="volume"):
        build(cols)
    cols = good_columns()
    for name in ("open", "high", "low", "close"):
        cols[name][0] = 0.0
    with pytest.raises(InputError, match="non-positive"):
        build(cols)


def test_columns_of_different_lengths_are_rejected():
    cols = good_columns()
    cols["volume"] = cols["volume"][:-1]
    with pytest.raises(InputError, match="volume"):
        build(cols)
