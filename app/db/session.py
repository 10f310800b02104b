"""Engines and sessions: one engine per database URL and process, short transactions."""
from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

__all__ = ["get_engine", "session_scope", "dispose_engines"]

_engines: dict[tuple[int, str], Engine] = {}
_lock = threading.Lock()


def _json_loads(text):
    """JSON columns read with orjson (3-5x json.loads: a bayesian round reads every past
    trial's parameters); what orjson refuses and json reads (NaN, Infinity, integers past
    64 bits, written by json.dumps) falls back to json, so nothing stored reads otherwise."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers run while a worker writes; busy_timeout waits instead of failing.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def get_engine(url: str) -> Engine:
    """The engine for ``url`` in this process (a forked worker gets its own)."""
    key = (os.getpid(), url)
    engine = _engines.get(key)
    if engine is not None:
        return engine
    with _lock:
        engine = _engines.get(key)
        if engine is None:
            parsed = make_url(url)
            if parsed.get_backend_name() == "sqlite":
                if parsed.database and parsed.database != ":memory:":
                    Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
                engine = create_engine(url, connect_args={"timeout": 30},
                                       json_deserializer=_json_loads)
                event.listen(engine, "connect", _sqlite_pragmas)
            else:
                engine = create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5,
                                       json_deserializer=_json_loads)
            _engines[key] = engine
    return engine


@contextmanager
def session_scope(url: str) -> Iterator[Session]:
    """A unit of work: commits if the block ends normally, rolls back otherwise."""
    session = sessionmaker(bind=get_engine(url), expire_on_commit=False)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def dispose_engines() -> None:
    """Close every pooled connection of this process (tests; after fork)."""
    with _lock:
        for key, engine in list(_engines.items()):
            engine.dispose()
            del _engines[key]
