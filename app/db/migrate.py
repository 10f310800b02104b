"""Alembic, driven from code: ``trad db upgrade`` and the "is the schema there?" check."""
from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path

# Quiet before the first import: Alembic logs "setup plugin ..." seven times at INFO as it
# loads, and "Context impl ..." at every schema check, in every process that starts (the
# web, Flower, workers). Only a migration says what it does (see ``upgrade``).
logging.getLogger("alembic").setLevel(logging.WARNING)

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from app.db.session import get_engine
from app.errors import TradError

__all__ = ["alembic_config", "upgrade", "current_revision", "head_revision", "require_schema",
           "SchemaMissing"]

_MIGRATIONS = Path(__file__).with_name("migrations")


class SchemaMissing(TradError):
    code = "schema_missing"


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> str:
    """Apply migrations up to ``revision``; returns the revision now current. Logs one
    line per migration applied (Alembic's "Running upgrade a -> b, ..."), nothing else, and
    nothing when the schema is current."""
    with _steps_logged():
        command.upgrade(alembic_config(url), revision)
    return current_revision(url)


class _StepsOnly(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or str(record.msg).startswith("Running ")


@contextmanager
def _steps_logged():
    logger = logging.getLogger("alembic.runtime.migration")
    level, only = logger.level, _StepsOnly()
    logger.setLevel(logging.INFO)
    logger.addFilter(only)
    try:
        yield
    finally:
        logger.removeFilter(only)
        logger.setLevel(level)


def current_revision(url: str) -> str | None:
    with get_engine(url).connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision(url: str) -> str:
    return ScriptDirectory.from_config(alembic_config(url)).get_current_head()


def require_schema(url: str) -> None:
    """Raise a clear error when the database is missing migrations."""
    current = current_revision(url)
    head = head_revision(url)
    if current != head:
        state = "has no schema" if current is None else f"is at revision {current}, not {head}"
        raise SchemaMissing(f"the database {state}", hint="run `trad db upgrade` first")
