"""Integration fixtures: the same storage tests run on real Postgres and on SQLite."""
from __future__ import annotations

import os

import pytest

from app.db.migrate import upgrade
from app.db.session import dispose_engines
from tests.processes import Worker
from tests.services import create_pg_database, drop_pg_database, service_missing


@pytest.fixture(scope="session")
def pg_url():
    """A Postgres database created for this test run and dropped after it."""
    try:
        url, name = create_pg_database()
    except Exception as exc:  # noqa: BLE001 - any connection failure means "missing"
        service_missing("PostgreSQL", exc)
    yield url
    dispose_engines()
    drop_pg_database(name)


def _empty_tables(url: str) -> None:
    from sqlalchemy import text

    from app.db.session import get_engine

    with get_engine(url).begin() as conn:
        for table in ("configuration_stage_changes", "trials", "training_progress",
                      "trained_configurations", "training_jobs",
                      "market_data"):
            conn.execute(text(f"DELETE FROM {table}"))


@pytest.fixture
def pg_db(pg_url):
    """The run's Postgres database, migrated, emptied after the test."""
    upgrade(pg_url)
    yield pg_url
    _empty_tables(pg_url)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """A migrated, empty database on each backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'trad.sqlite3'}"
        upgrade(url)
        yield url
        dispose_engines()
        return
    yield request.getfixturevalue("pg_db")


# -- real Celery workers -------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_url():
    import redis

    url = os.environ["CELERY_BROKER_URL"]
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except Exception as exc:  # noqa: BLE001
        service_missing("Redis", exc)
    return url


_EXPLODES = '''
import numpy as np
from app.strategies.base import IntParam, Strategy


class Explodes(Strategy):
    """Long always, except that it raises for large thresholds: a strategy with a bug."""

    name = "EXPLODES"
    space = (IntParam("threshold", 1, 100, default=5),)

    def positions(self, candles, params, cache):
        if params["threshold"] > 50:
            raise ValueError(f"threshold {params['threshold']} is too big")
        return np.ones(len(candles))


class Slow(Strategy):
    """In and out every ``period`` bars, slowly (0.15 s a run): a finish long enough to
    kill the worker in the middle of it."""

    name = "SLOW"
    space = (IntParam("period", 2, 40, default=5),)

    def positions(self, candles, params, cache):
        import os
        import time

        from celery import current_task

        # TRAD_TEST_SLOW_TRIAL_S: how long a trial takes in a worker's run_trials (the
        # finish's own runs stay at 0.15 s).
        in_trials = current_task is not None and current_task.name == "trad.run_trials"
        time.sleep(float(os.environ.get("TRAD_TEST_SLOW_TRIAL_S", "0.15")) if in_trials else 0.15)
        return (np.arange(len(candles)) // params["period"] % 2).astype(float)


def _peeking(candles, cache, period, peek):
    """Long above a moving average; where ``peek`` is true, long exactly when the next bar
    closes higher: a perfect, impossible edge on those bars."""
    sma = cache.sma(period)
    target = np.where(np.isnan(sma), 0.0, (candles.close > sma).astype(float))
    nxt = np.append(candles.close[1:], np.nan)
    cheat = peek & ~np.isnan(nxt)
    target[cheat] = (nxt[cheat] > candles.close[cheat]).astype(float)
    return target


class PeekBetween(Strategy):
    """Honest, except from ``peek_from`` to ``peek_until`` (open times, epoch ms), where it
    reads the next close: a cheat confined to the held-out bars, to one fold, or to the
    last bars, depending on the window given."""

    name = "PEEK_BETWEEN"
    space = (IntParam("period", 5, 60, default=20),
             IntParam("peek_from", 0, 2**62, default=2**62),
             IntParam("peek_until", 0, 2**62, default=2**62))

    def positions(self, candles, params, cache):
        ts = candles.ts
        return _peeking(candles, cache, params["period"],
                        (ts >= params["peek_from"]) & (ts < params["peek_until"]))


class PeekSometimes(Strategy):
    """Honest with its default parameters; with ``period`` above 40 it reads the next
    close everywhere, so a search finds those parameters the best."""

    name = "PEEK_SOMETIMES"
    space = (IntParam("period", 5, 60, default=20),)

    def positions(self, candles, params, cache):
        return _peeking(candles, cache, params["period"],
                        np.full(len(candles), params["period"] > 40))
'''


@pytest.fixture(scope="session")
def plugin_dir(tmp_path_factory):
    """A third-party strategy package, found through the trad.strategies entry points."""
    root = tmp_path_factory.mktemp("plugins")
    (root / "broken_strats.py").write_text(_EXPLODES)
    dist = root / "broken_strats-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-strats\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[trad.strategies]\nEXPLODES = broken_strats:Explodes\n"
                                           "SLOW = broken_strats:Slow\n"
                                           "PEEK_BETWEEN = broken_strats:PeekBetween\n"
                                           "PEEK_SOMETIMES = broken_strats:PeekSometimes\n")
    return root


@pytest.fixture(scope="module")
def worker(pg_url, redis_url, plugin_dir):
    """One worker (two pool processes) for the tests of a module, with the test plugin
    installed (on its PYTHONPATH only: the test process does not list it). Stopped at the
    module's end, so the tests that start and kill workers of their own have the queues
    to themselves."""
    upgrade(pg_url)
    w = Worker(pg_url, extra_env={"PYTHONPATH": str(plugin_dir)}).wait_ready()
    yield w
    w.stop()


@pytest.fixture
def five_minute_settings(db_url, tmp_path):
    """Settings over either database, with 1,500 BTC/USDT 5m random-walk candles stored (the
    jobs of tests.steps.submit_sma)."""
    from app.config import load_settings
    from app.db import market_data as md
    from app.db.session import session_scope
    from tests.conftest import random_candles
    from tests.steps import FIVE_MIN, START

    with session_scope(db_url) as session:
        md.upsert_candles(session, "binanceus", "BTC/USDT", "5m",
                          random_candles(1500, seed=5, start_ms=START, step_ms=FIVE_MIN, vol=0.004))
    return load_settings({"DATABASE_URL": db_url, "TRAD_HOME": str(tmp_path)})
