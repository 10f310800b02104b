"""Bars a year and gaps by each series' own calendar: GOOG daily, EURUSD hourly, crypto."""
import numpy as np
import pandas as pd
import pytest

from app.backtest.candles import Candles
from app.backtest.engine import BacktestConfig
from app.errors import InputError
from app.strategies import get_strategy, run_strategy
from app.validation.calendars import (
    calendar_for,
    check_calendar_name,
    exchange_calendar_name,
    find_gaps,
    infer_calendar,
    measure_bars_per_year,
    resolve_bars_per_year,
)

DAY = 86_400_000


def candles_of(frame) -> Candles:
    ts = pd.DatetimeIndex(frame.index).as_unit("ms").asi8
    return Candles(ts, frame.Open.to_numpy(), frame.High.to_numpy(), frame.Low.to_numpy(),
                   frame.Close.to_numpy(), frame.Volume.to_numpy(dtype=float))


@pytest.fixture(scope="module")
def goog():
    from backtesting.test import GOOG

    return candles_of(GOOG)


@pytest.fixture(scope="module")
def eurusd():
    from backtesting.test import EURUSD

    return candles_of(EURUSD)


def test_goog_daily_has_about_252_bars_a_year(goog):
    # 2,148 sessions from 2004-08-19 to 2013-03-01: 251.6 a year, not 365
    assert measure_bars_per_year(goog.ts, "1d") == pytest.approx(251.6, abs=0.1)
    assert infer_calendar(goog.ts, "1d") == "weekdays"
    assert calendar_for("nasdaq", goog.ts, "1d") == "XNYS"


def test_goog_annualised_with_its_own_bars_a_year(goog):
    # The same trades and returns; the Sharpe ratio scales with sqrt(bars a year): 365
    # overstates a stock's by sqrt(365 / 251.6) = 1.2045.
    params = {"fast": 10, "slow": 40}
    own = run_strategy(get_strategy("SMA_CROSS"), goog, params,
                       BacktestConfig(periods_per_year=measure_bars_per_year(goog.ts, "1d"))).metrics
    crypto = run_strategy(get_strategy("SMA_CROSS"), goog, params,
                          BacktestConfig(periods_per_year=365.0)).metrics
    assert crypto["sharpe_ratio"] / own["sharpe_ratio"] == pytest.approx((365 / 251.6) ** 0.5, rel=1e-3)
    assert own["num_trades"] == crypto["num_trades"] and own["final_equity"] == crypto["final_equity"]
    assert own["cagr"] < crypto["cagr"]


def test_goog_has_no_gaps_on_the_nyse_calendar_and_weekends_are_not_gaps(goog):
    assert find_gaps(goog.ts, "1d", "XNYS") == []
    # without the exchange's holidays only the holidays show, never a weekend
    weekday_gaps = find_gaps(goog.ts, "1d", "weekdays")
    assert 50 < len(weekday_gaps) < 100
    assert all(g.missing_bars <= 2 for g in weekday_gaps)
    # as a 24/7 market, every weekend would be a hole
    assert len(find_gaps(goog.ts, "1d", "24/7")) > 400


def test_eurusd_hourly_has_about_6200_bars_a_year_and_trades_24_5(eurusd):
    assert 6_000 < measure_bars_per_year(eurusd.ts, "1h") < 6_300
    assert infer_calendar(eurusd.ts, "1h") == "24/5"
    gaps = find_gaps(eurusd.ts, "1h", "24/5")
    # the weekend closures are not gaps; only Christmas and New Year's Day are
    assert [pd.Timestamp(g.before, unit="ms").strftime("%m-%d") for g in gaps] == ["12-25", "01-01"]
    assert [g.missing_bars for g in gaps] == [24, 24]   # the holiday Monday, not the weekend


def test_a_24_7_series_keeps_the_round_the_clock_count():
    ts = np.arange(0, 60 * DAY, 300_000)
    assert measure_bars_per_year(ts, "5m") == 105_120.0
    assert infer_calendar(ts, "5m") == "24/7"
    assert calendar_for("binanceus", ts, "5m") == "24/7"
    holed = np.delete(ts, [100, 101, 102])
    assert [g.missing_bars for g in find_gaps(holed, "5m", "24/7")] == [3]


def test_a_few_days_are_too_short_to_tell_and_count_as_24_7():
    ts = np.arange(0, 3 * DAY, 3_600_000)       # Thursday to Saturday
    assert infer_calendar(ts, "1h") == "24/7"
    assert measure_bars_per_year(ts, "1h") == 8760.0


def test_weekly_and_monthly_bars():
    assert measure_bars_per_year(np.arange(10) * 7 * DAY, "1w") == pytest.approx(52.18, abs=0.01)
    months = pd.date_range("2020-01-01", periods=24, freq="MS").as_unit("ms").asi8
    assert measure_bars_per_year(months, "1M") == 12.0
    assert find_gaps(months, "1M", "24/7") == []
    missing = np.delete(months, [5, 6])
    assert [g.missing_bars for g in find_gaps(missing, "1M", "24/7")] == [2]


def test_the_request_then_the_series_then_the_measurement():
    ts = np.arange(0, 30 * DAY, DAY)
    assert resolve_bars_per_year(ts, "1d").to_dict() == {"bars_per_year": 365.0, "source": "measured"}
    assert resolve_bars_per_year(ts, "1d", series=252).to_dict() == {"bars_per_year": 252.0,
                                                                     "source": "series"}
    assert resolve_bars_per_year(ts, "1d", request=260, series=252).source == "request"
    with pytest.raises(InputError, match="bars_per_year"):
        resolve_bars_per_year(ts, "1d", request=-1)


def test_exchange_labels_and_calendar_names():
    assert exchange_calendar_name("NYSE") == "XNYS" and exchange_calendar_name("lse") == "XLON"
    assert exchange_calendar_name("oanda") is None
    assert check_calendar_name("xlon") == "XLON" and check_calendar_name("24/5") == "24/5"
    with pytest.raises(InputError, match="unknown calendar"):
        check_calendar_name("MOON")


def test_a_few_days_of_a_stocks_5m_bars_count_by_the_exchanges_sessions():
    days = pd.bdate_range("2024-03-04", periods=5)
    ts = np.array([(d + pd.Timedelta(hours=13, minutes=30 + 5 * i)).value // 10**6
                   for d in days for i in range(78)])
    # 78 bars a session, 252 sessions a year; as a 24/7 market it would be 105,120
    assert measure_bars_per_year(ts, "5m", "XNYS") == pytest.approx(78 * 252, rel=0.01)
    assert resolve_bars_per_year(ts, "5m", calendar="XNYS").source == "measured"


def test_daily_fx_bars_on_sundays_are_a_weekday_market():
    # Some providers put FX's Sunday evening open in a bar of its own: 6 bars a week
    days = pd.date_range("2023-01-01", "2023-12-31", freq="D")
    ts = days[days.day_of_week != 5].as_unit("ms").asi8
    assert infer_calendar(ts, "1d") == "weekdays"
    assert measure_bars_per_year(ts, "1d") == pytest.approx(313, abs=2)


def test_a_weekend_is_not_a_gap_for_daily_24_5_bars_and_a_missing_weekday_counts_its_bars():
    weekdays = pd.bdate_range("2024-01-01", "2024-03-01").as_unit("ms").asi8
    assert find_gaps(weekdays, "1d", "24/5") == []
    hourly = np.array([d + h * 3_600_000 for d in weekdays for h in range(14, 21)])
    missing_day = hourly[(hourly < weekdays[10]) | (hourly >= weekdays[11])]
    [gap] = find_gaps(missing_day, "1h", "weekdays")
    assert gap.missing_bars == 7


def test_bars_of_several_days_on_a_closing_market_allow_for_weekends():
    ts = np.arange(0, 60, 3) * DAY
    assert find_gaps(ts, "3d", "XNYS") == []
    assert [g.missing_bars for g in find_gaps(np.delete(ts, [5, 6]), "3d", "XNYS")] == [2]
