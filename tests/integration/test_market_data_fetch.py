"""`fetch` through ccxt's real binanceus class, the HTTP layer answered from recordings."""
from __future__ import annotations

import json

import numpy as np
import pytest

from app.config import load_settings
from app.data.exchange import ExchangeError
from app.db import market_data as md
from app.db.session import session_scope
from app.errors import InputError
from app.services import market_data as svc
from tests.recorded_http import FIXTURES, recorded_session

FIRST = 1_699_999_800_000
STEP = 300_000


@pytest.fixture
def settings(db_url, tmp_path):
    return load_settings({"DATABASE_URL": db_url, "TRAD_HOME": str(tmp_path)})


def recorded_rows():
    return json.loads((FIXTURES / "klines_BTCUSDT_5m.json").read_text())


def test_fetch_pages_through_the_whole_range(settings):
    http, adapter = recorded_session()
    report = svc.fetch(settings, "binanceus", "BTC/USDT", "5m", since=FIRST, http_session=http)
    rows = recorded_rows()
    assert report.rows == len(rows) == report.total_rows
    klines = [c for c in adapter.calls if "/klines" in c]
    assert len(klines) >= 3  # 2,500 rows at 1,000 a page
    with session_scope(settings.database_url) as s:
        back = md.load_candles(s, "binanceus", "BTC/USDT", "5m")
    np.testing.assert_array_equal(back.ts, [r[0] for r in rows])
    np.testing.assert_array_equal(back.close, [float(r[4]) for r in rows])


def test_fetch_resumes_after_the_last_stored_candle(settings):
    http, _ = recorded_session()
    until = FIRST + 1200 * STEP
    first = svc.fetch(settings, "binanceus", "BTC/USDT", "5m", since=FIRST, until=until,
                      http_session=http)
    assert first.rows == 1200 and first.last == until - STEP
    http, adapter = recorded_session()
    second = svc.fetch(settings, "binanceus", "BTC/USDT", "5m", since=FIRST, http_session=http)
    assert second.first == until
    assert second.total_rows == 2500 and second.rows == 1300
    starts = [int(c.split("startTime=")[1].split("&")[0]) for c in adapter.calls if "/klines" in c]
    assert starts[0] == until


def test_unknown_symbol_is_refused_before_any_write(settings):
    http, _ = recorded_session()
    with pytest.raises(InputError, match="no market 'DOGE/USDT'"):
        svc.fetch(settings, "binanceus", "DOGE/USDT", "5m", since=FIRST, http_session=http)


def test_unknown_exchange_suggests_a_known_one(settings):
    with pytest.raises(InputError, match="did you mean binanceus"):
        svc.fetch(settings, "binanceu", "BTC/USDT", "5m")


def test_unknown_timeframe_is_refused(settings):
    with pytest.raises(InputError, match="unknown timeframe"):
        svc.fetch(settings, "binanceus", "BTC/USDT", "7m")


def test_exchange_outage_keeps_the_pages_already_stored(settings):
    http, _ = recorded_session(fail_after=2)  # exchangeInfo, one page, then 503s
    with pytest.raises(ExchangeError, match="fetch_ohlcv"):
        svc.fetch(settings, "binanceus", "BTC/USDT", "5m", since=FIRST, http_session=http)
    with session_scope(settings.database_url) as s:
        assert md.count_rows(s, "binanceus", "BTC/USDT", "5m") == 1000


def test_watch_refreshes_every_series_and_reports_failures_per_series(db_url, tmp_path):
    settings = load_settings({"DATABASE_URL": db_url, "TRAD_HOME": str(tmp_path),
                              "TRAD_DATA_WATCH": "binanceus:BTC/USDT:5m,binanceus:DOGE/USDT:5m"})
    with session_scope(settings.database_url) as s:  # resume point near the end of the recording
        from tests.conftest import random_candles
        md.upsert_candles(s, "binanceus", "BTC/USDT", "5m",
                          random_candles(1, start_ms=FIRST + 2400 * STEP, step_ms=STEP))
    http, _ = recorded_session()
    results = svc.refresh_watched(settings, http_session=http)
    assert results[0] == {"series": "binanceus:BTC/USDT:5m", "ok": True, "rows": 99}
    assert results[1]["ok"] is False and "DOGE/USDT" in results[1]["error"]


def test_malformed_watch_list_fails_at_start_up():
    with pytest.raises(InputError, match="exchange:SYMBOL:timeframe"):
        load_settings({"TRAD_DATA_WATCH": "binanceus-BTC/USDT-5m"})
