"""The market_data repository, the same tests on Postgres and SQLite."""
from __future__ import annotations

import numpy as np
import pytest

from app.backtest.candles import Candles
from app.db import market_data as md
from app.db.migrate import SchemaMissing, current_revision, head_revision, require_schema
from app.db.session import session_scope
from app.errors import InputError
from tests.conftest import random_candles

FIVE_MIN = 300_000


def series(n=100, seed=0, start=1_700_000_100_000 // FIVE_MIN * FIVE_MIN):
    return random_candles(n, seed=seed, start_ms=start, step_ms=FIVE_MIN)


def test_migrations_bring_the_schema_to_head(db_url):
    assert current_revision(db_url) == head_revision(db_url)
    require_schema(db_url)


def test_missing_schema_is_reported_with_the_fix(tmp_path):
    url = f"sqlite:///{tmp_path / 'empty.sqlite3'}"
    with pytest.raises(SchemaMissing, match="trad db upgrade"):
        require_schema(url)


def test_round_trip_keeps_every_value(db_url):
    c = series(1000)
    with session_scope(db_url) as s:
        assert md.upsert_candles(s, "binanceus", "BTC/USDT", "5m", c) == 1000
    with session_scope(db_url) as s:
        back = md.load_candles(s, "binanceus", "BTC/USDT", "5m")
    for name in ("ts", "open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(getattr(back, name), getattr(c, name))
    assert back.fingerprint == c.fingerprint


def test_upsert_twice_leaves_the_same_rows(db_url):
    c = series(300)
    for _ in range(2):
        with session_scope(db_url) as s:
            md.upsert_candles(s, "binanceus", "BTC/USDT", "5m", c)
    with session_scope(db_url) as s:
        assert md.count_rows(s, "binanceus", "BTC/USDT", "5m") == 300
        assert md.load_candles(s, "binanceus", "BTC/USDT", "5m").fingerprint == c.fingerprint


def test_overlapping_sets_merge_and_newer_values_win(db_url):
    a = series(200, seed=1)
    b = series(200, seed=2, start=int(a.ts[100]))
    with session_scope(db_url) as s:
        md.upsert_candles(s, "x", "ETH/USDT", "5m", a)
    with session_scope(db_url) as s:
        md.upsert_candles(s, "x", "ETH/USDT", "5m", b)
    with session_scope(db_url) as s:
        back = md.load_candles(s, "x", "ETH/USDT", "5m")
    assert len(back) == 300
    np.testing.assert_array_equal(back.close[:100], a.close[:100])
    np.testing.assert_array_equal(back.close[100:], b.close)


def test_a_failed_transaction_writes_nothing(db_url):
    c = series(50)
    with pytest.raises(RuntimeError):
        with session_scope(db_url) as s:
            md.upsert_candles(s, "x", "BTC/USDT", "5m", c)
            raise RuntimeError("boom")
    with session_scope(db_url) as s:
        assert md.count_rows(s, "x", "BTC/USDT", "5m") == 0


def test_load_respects_the_time_range(db_url):
    c = series(100)
    with session_scope(db_url) as s:
        md.upsert_candles(s, "x", "BTC/USDT", "5m", c)
    with session_scope(db_url) as s:
        part = md.load_candles(s, "x", "BTC/USDT", "5m", start=int(c.ts[10]), end=int(c.ts[20]))
        assert md.last_timestamp(s, "x", "BTC/USDT", "5m") == int(c.ts[-1])
    np.testing.assert_array_equal(part.ts, c.ts[10:20])


def test_a_symbol_with_no_data_says_how_to_get_some(db_url):
    with session_scope(db_url) as s:
        with pytest.raises(InputError, match="trad data fetch"):
            md.load_candles(s, "binanceus", "DOGE/USDT", "5m")


def test_gaps_are_found_and_counted(db_url):
    c = series(100)
    keep = np.ones(100, dtype=bool)
    keep[10:13] = False  # 3 bars missing after bar 9
    keep[50] = False     # 1 bar missing after bar 49
    holed = Candles(c.ts[keep], c.open[keep], c.high[keep], c.low[keep], c.close[keep], c.volume[keep])
    with session_scope(db_url) as s:
        md.upsert_candles(s, "x", "BTC/USDT", "5m", holed)
    from app.config import load_settings
    from app.services import market_data as svc

    settings = load_settings({"DATABASE_URL": db_url})
    with session_scope(db_url) as s:
        assert md.load_timestamps(s, "x", "BTC/USDT", "5m").tolist() == c.ts[keep].tolist()
        assert md.series_keys(s) == [("x", "BTC/USDT", "5m", 96)]
    gaps = svc.find_gaps(settings, "x", "BTC/USDT", "5m")
    listing = svc.list_series(settings)
    assert [(g.after, g.before, g.missing_bars) for g in gaps] == [
        (int(c.ts[9]), int(c.ts[13]), 3), (int(c.ts[49]), int(c.ts[51]), 1)]
    assert len(listing) == 1
    info = listing[0]
    assert (info.rows, info.gaps, info.missing_bars) == (96, 2, 4)
    assert (info.first, info.last) == (int(c.ts[0]), int(c.ts[-1]))
