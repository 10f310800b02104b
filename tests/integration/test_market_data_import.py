"""`trad data import`: one transaction per file, idempotent, every fault named by its line."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from app.config import load_settings
from app.data.synthetic import synthetic_candles
from app.db import market_data as md
from app.db.session import session_scope
from app.errors import InputError
from app.services import market_data as svc

STEP = 300_000


@pytest.fixture
def settings(db_url, tmp_path):
    return load_settings({"DATABASE_URL": db_url, "TRAD_HOME": str(tmp_path)})


def csv_of(candles, path):
    frame = candles.to_frame()
    frame.index = frame.index.strftime("%Y-%m-%dT%H:%M:%SZ")
    frame.index.name = "time"
    frame.to_csv(path)
    return path


def stored(settings):
    with session_scope(settings.database_url) as s:
        return md.count_rows(s, "binanceus", "BTC/USDT", "5m")


def test_the_same_file_twice_leaves_the_same_rows(settings, tmp_path):
    candles = synthetic_candles(500, timeframe="5m", seed=1, start=1_700_000_000_000 // STEP * STEP)
    path = csv_of(candles, tmp_path / "a.csv")
    for _ in range(2):
        report = svc.import_file(settings, str(path), "binanceus", "BTC/USDT", "5m")
    assert report.rows == 500 and report.total_rows == 500
    with session_scope(settings.database_url) as s:
        back = md.load_candles(s, "binanceus", "BTC/USDT", "5m")
    np.testing.assert_array_equal(back.close, candles.close)


def test_overlapping_files_merge(settings, tmp_path):
    candles = synthetic_candles(500, timeframe="5m", seed=1, start=1_700_000_000_000 // STEP * STEP)
    svc.import_file(settings, str(csv_of(candles.slice(0, 300), tmp_path / "a.csv")), "binanceus", "BTC/USDT", "5m")
    svc.import_file(settings, str(csv_of(candles.slice(200), tmp_path / "b.csv")), "binanceus", "BTC/USDT", "5m")
    assert stored(settings) == 500


def test_a_bad_row_imports_nothing_and_names_the_line(settings, tmp_path):
    candles = synthetic_candles(100, timeframe="5m", seed=1, start=1_700_000_000_000 // STEP * STEP)
    path = csv_of(candles, tmp_path / "a.csv")
    lines = path.read_text().splitlines()
    fields = lines[60].split(",")
    fields[2] = "0.5"  # high far below low on file line 61
    lines[60] = ",".join(fields)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match="line 61: high is below low"):
        svc.import_file(settings, str(path), "binanceus", "BTC/USDT", "5m")
    assert stored(settings) == 0


def test_times_off_the_timeframe_grid_are_refused(settings, tmp_path):
    candles = synthetic_candles(100, timeframe="5m", seed=1, start=1_700_000_000_000 // STEP * STEP)
    shifted = candles.to_frame()
    shifted.index = shifted.index + pd.Timedelta(minutes=1)
    path = tmp_path / "a.csv"
    shifted.index = shifted.index.strftime("%Y-%m-%dT%H:%M:%SZ")
    shifted.index.name = "time"
    shifted.to_csv(path)
    with pytest.raises(InputError, match="line 2: time .* is not on the 5m grid"):
        svc.import_file(settings, str(path), "binanceus", "BTC/USDT", "5m")
    assert stored(settings) == 0


def test_a_file_of_another_timeframe_is_refused_naming_the_one_it_fits(settings, tmp_path):
    candles = synthetic_candles(100, timeframe="1m", seed=1, start=1_700_000_000_000 // STEP * STEP)
    path = csv_of(candles, tmp_path / "a.csv")
    with pytest.raises(InputError, match="the bars are 1 minute apart .*not 5m: is the file 1m"):
        svc.import_file(settings, str(path), "binanceus", "BTC/USDT", "5m")
    assert stored(settings) == 0


def test_a_malformed_label_and_an_unknown_timeframe_are_refused_before_reading(settings, tmp_path):
    with pytest.raises(InputError, match="is not a label"):
        svc.import_file(settings, str(tmp_path / "x.csv"), "bin ance!", "BTC/USDT", "5m")
    with pytest.raises(InputError, match="unknown calendar 'XNYZ'.*XNYS"):
        svc.import_file(settings, str(tmp_path / "x.csv"), "nasdaq", "GOOG", "1d", calendar="XNYZ")
    with pytest.raises(InputError, match="bars_per_year"):
        svc.import_file(settings, str(tmp_path / "x.csv"), "nasdaq", "GOOG", "1d", bars_per_year=-1)
    # any label imports; only fetching needs an exchange ccxt knows
    with pytest.raises(InputError, match="not an exchange ccxt can fetch from.*did you mean binanceus"):
        svc.fetch(settings, "binanceuss", "BTC/USDT", "5m")
    with pytest.raises(InputError, match="unknown timeframe"):
        svc.import_file(settings, str(tmp_path / "x.csv"), "binanceus", "BTC/USDT", "5x")
