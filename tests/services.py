"""Real services for the integration and e2e tiers: a Postgres database and Redis keys of
the run's own, created for it and removed after.

Where a service is missing, a test that needs it skips locally and FAILS under CI=true.
"""
from __future__ import annotations

import os
import uuid

import pytest

PG_ADMIN_URL = os.environ.get("TRAD_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("TRAD_TEST_REDIS_URL", "redis://127.0.0.1:6379")


def service_missing(what: str, error: Exception):
    message = f"{what} is not reachable ({error.__class__.__name__}: {error})"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + " and CI=true: integration tests must not skip", pytrace=False)
    pytest.skip(message)


def system_program(variable: str, default: str, what: str) -> str:
    """The path of a program a test needs (``$variable`` or ``default``), installed by
    ``make test`` from Debian's packages; skip without it, or under CI=true fail."""
    import shutil

    path = os.environ.get(variable) or default
    resolved = path if os.path.isabs(path) else shutil.which(path)
    if not resolved or not os.access(resolved, os.X_OK):
        message = (f"{what} not found at {path} (`make test` installs Debian's package; or "
                   f"set {variable})")
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + " and CI=true: this test must not skip", pytrace=False)
        pytest.skip(message)
    return resolved


def _admin_execute(sql: str) -> None:
    """Run one statement on the admin database, outside a transaction."""
    import psycopg2
    from sqlalchemy.engine import make_url

    admin = make_url(PG_ADMIN_URL)
    conn = psycopg2.connect(host=admin.host, port=admin.port or 5432, user=admin.username,
                            password=admin.password, dbname=admin.database, connect_timeout=5)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


def create_pg_database() -> tuple[str, str]:
    """Create a fresh database; returns (sqlalchemy url, name)."""
    from sqlalchemy.engine import make_url

    name = f"trad_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    _admin_execute(f'CREATE DATABASE "{name}"')
    url = make_url(PG_ADMIN_URL).set(drivername="postgresql+psycopg2", database=name)
    return url.render_as_string(hide_password=False), name


def drop_pg_database(name: str) -> None:
    _admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
