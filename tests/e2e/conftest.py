"""e2e fixtures: the Procfile's processes against the run's Postgres and Redis."""
from __future__ import annotations

import os

import pytest

from app.db.migrate import upgrade
from app.db.session import dispose_engines

# The browser fixtures (chromium_browser, console_errors, page), here so that one browser
# serves every module of the session (two sync Playwrights cannot run at once).
from tests.e2e.browser import (  # noqa: F401
    chromium_browser_fixture,
    console_errors_fixture,
    page_fixture,
)
from tests.services import create_pg_database, drop_pg_database, service_missing


@pytest.fixture(scope="session")
def e2e_db():
    try:
        url, name = create_pg_database()
    except Exception as exc:  # noqa: BLE001
        service_missing("PostgreSQL", exc)
    try:
        import redis

        redis.Redis.from_url(os.environ["CELERY_BROKER_URL"], socket_connect_timeout=2).ping()
    except Exception as exc:  # noqa: BLE001
        drop_pg_database(name)
        service_missing("Redis", exc)
    upgrade(url)
    yield url
    dispose_engines()
    drop_pg_database(name)
