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
    assert len(read_for_import(write(tmp_path, times), "1h")) == 35
    with pytest.raises(InputError, match="not on the 4h grid"):
        read_for_import(write(tmp_path, times, "b.csv"), "4h")


def test_daily_bars_open_at_midnight_utc():
    assert off_grid(np.array([0, DAY, 3 * DAY]), "1d") is None
    assert off_grid(np.array([0, DAY + 3_600_000]), "1d") == 1
    months = pd.date_range("2020-01-01", periods=3, freq="MS").as_unit("ms").asi8
    assert off_grid(months, "1M") is None and off_grid(months + DAY, "1M") == 0
