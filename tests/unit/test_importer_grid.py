"""A file's times must sit on its timeframe's grid, and its spacing must fit the timeframe."""
import numpy as np
import pandas as pd
import pytest

from app.data.importer import off_grid, read_for_import
from app.errors import InputError

DAY = 86_400_000


def write(tmp_path, times, name="c.csv"):
    n = len(times)
    frame = pd.DataFrame({"time": pd.to_datetime(times, utc=True).strftime("%Y-%m-%dT%H:%M:%SZ"),
                          "open": np.full(n, 10.0), "high": np.full(n, 11.0),
                          "low": np.full(n, 9.0), "close": np.full(n, 10.5),
                          "volume": np.ones(n)})
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return str(path)


def test_monthly_bars_import_as_1M_and_are_refused_as_1d(tmp_path):
    months = pd.date_range("2015-01-01", periods=36, freq="MS")
    path = write(tmp_path, months)
    assert len(read_for_import(path, "1M")) == 36
    with pytest.raises(InputError, match="days apart .*not 1d: is the file 1M candles"):
        read_for_import(path, "1d")


def test_weekly_bars_open_on_one_weekday_at_midnight(tmp_path):
    mondays = pd.date_range("2024-01-01", periods=20, freq="W-MON")
    assert len(read_for_import(write(tmp_path, mondays), "1w")) == 20
    shifted = list(mondays)
    shifted[7] = shifted[7] + pd.Timedelta(days=1)
    with pytest.raises(InputError, match="not on the 1w grid"):
        read_for_import(write(tmp_path, shifted, "w.csv"), "1w")


def test_a_stock_sessions_hourly_bars_from_the_half_hour_are_on_the_grid(tmp_path):
    # 13:30 to 19:30 UTC, five days: each day's bars a whole number of hours after its first
    days = pd.date_range("2024-03-04", periods=5, freq="D")
    times = [d + pd.Timedelta(hours=13, minutes=30) + pd.Timedelta(hours=h) for d in days for h in range(7)]
    nyse = lambda ts: "XNYS"  # noqa: E731
    assert len(read_for_import(write(tmp_path, times), "1h", calendar_of=nyse)) == 35
    with pytest.raises(InputError, match="60 minutes apart .*not 4h: is the file 1h candles"):
        read_for_import(write(tmp_path, times, "b.csv"), "4h", calendar_of=nyse)
    # a 24/7 market's bars sit on the epoch's grid
    with pytest.raises(InputError, match="not on the 1h grid"):
        read_for_import(write(tmp_path, times, "c.csv"), "1h")


def test_a_year_of_4h_stock_bars_and_lunch_breaks_import(tmp_path):
    # Nights and weekends make the median spacing long; the most common one is the bar.
    sessions = pd.bdate_range("2023-01-02", "2023-12-29")
    four_hourly = [d + pd.Timedelta(hours=h, minutes=30) for d in sessions for h in (13, 17)]
    assert len(read_for_import(write(tmp_path, four_hourly), "4h", calendar_of=lambda ts: "XNYS")) \
        == 2 * len(sessions)
    # Hong Kong: 09:30, 10:30, 11:30, then 13:00 after lunch (01:30 .. 05:00 UTC)
    hk = [d + pd.Timedelta(minutes=m) for d in sessions[:20] for m in (90, 150, 210, 300, 360, 420)]
    assert len(read_for_import(write(tmp_path, hk, "hk.csv"), "1h", calendar_of=lambda ts: "XHKG")) \
        == 120


def test_daily_bars_open_at_midnight_utc():
    assert off_grid(np.array([0, DAY, 3 * DAY]), "1d") is None
    assert off_grid(np.array([0, DAY + 3_600_000]), "1d") == 1
    months = pd.date_range("2020-01-01", periods=3, freq="MS").as_unit("ms").asi8
    assert off_grid(months, "1M") is None and off_grid(months + DAY, "1M") == 0
