"""Errors a person can act on: what is wrong, which field, and how to fix it."""
from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["TradError", "InputError", "did_you_mean", "no_nul", "transient"]


class TradError(Exception):
    """Base of every error Trad reports to a user (never shown with a traceback)."""

    code = "error"

    def __init__(self, message: str, *, field: str | None = None, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message

    def to_dict(self) -> dict:
        body = {"code": self.code, "message": str(self)}
        if self.field is not None:
            body["field"] = self.field
        return body


class InputError(TradError, ValueError):
    """The caller gave something Trad cannot use: bad parameters, bad data, bad names."""

    code = "invalid_input"


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return ``" (did you mean X?)"``-style hint text, or a list of the choices.

    >>> did_you_mean("SMA_CORSS", ["SMA_CROSS", "EMA_CROSS", "MACD"])
    'did you mean SMA_CROSS or EMA_CROSS?'
    >>> did_you_mean("zzz", ["a", "b"])
    'known: a, b'
    """
    choices = sorted(choices)
    by_upper = {c.upper(): c for c in choices}
    close = difflib.get_close_matches(word.upper(), list(by_upper), n=3, cutoff=0.6)
    if close:
        return "did you mean " + " or ".join(by_upper[c] for c in close) + "?"
    return "known: " + ", ".join(choices)


def no_nul(value, where: str, kind=InputError) -> None:
    """A NUL character is in no name, date or reason Trad takes; a database cannot store it."""
    if isinstance(value, str):
        if "\x00" in value:
            raise kind(f"{where} holds a NUL character (\\u0000)", field=where, hint="remove it")
    elif isinstance(value, dict):
        for key, item in value.items():
            no_nul(key, where, kind)
            no_nul(item, f"{where}.{key}", kind)
    elif isinstance(value, list):
        for item in value:
            no_nul(item, where, kind)


def transient(exc: BaseException) -> bool:
    """True for an error that says the database or the broker was briefly out of reach (a
    restart, a failover, a dropped connection, a deadlock): worth retrying, unlike a
    mistake in the job or a bug.

    >>> transient(ConnectionResetError()), transient(ValueError("bad"))
    (True, False)
    """
    from kombu.exceptions import OperationalError as BrokerError
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError
    from sqlalchemy import exc as sa

    if isinstance(exc, TradError):
        return False
    if isinstance(exc, (ConnectionError, TimeoutError, RedisConnectionError, RedisTimeoutError,
                        BrokerError, sa.TimeoutError, sa.InterfaceError)):
        return True
    if isinstance(exc, sa.DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, sa.OperationalError):
        # SQLite says a missing table with OperationalError too: that is no outage.
        return "no such table" not in str(exc) and "no such column" not in str(exc)
    return False
