"""Integration fixtures: the same storage tests run on real Postgres and on SQLite."""
from __future__ import annotations

import os

import pytest

from app.db.migrate import upgrade
from app.db.session import dispose_engines
from tests.plugins import write_plugins
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


@pytest.fixture(scope="session")
def plugin_dir(tmp_path_factory):
    """A third-party strategy package, found through the trad.strategies entry points."""
    return write_plugins(tmp_path_factory.mktemp("plugins"))


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
