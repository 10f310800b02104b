"""One logging setup for every process: one line per event on stderr, each line once.

Two formats (``TRAD_LOG_FORMAT``): ``text``, key=value lines::

    2026-01-01 12:00:00,000 level=INFO logger=app.services.training.start job_id=abc job started ...

and ``json``, one JSON object a line (``ts``, ``level``, ``logger``, ``message``, then
``job_id`` and ``exc`` when there are any). A traceback or a message of several lines stays
on its event's line (``\\n`` in text, JSON's own escape in json).

Every line written while a job's task runs carries ``job_id=<id>``, library lines too:
``job_id_var`` is set around each task (``workers.log_context``, from Celery's signals) and
a filter on the one handler puts it on every record that passes (``record.job_id``).
"""
from __future__ import annotations

import json
import logging
import os
import re
import sys
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime

from app.config import LOG_FORMATS

__all__ = ["LOG_FORMATS", "JobIdFilter", "JsonFormatter", "TextFormatter", "configure_logging",
           "job_context", "job_id_var"]

_MARK = "_trad_handler"
_FORMAT_ATTR = "_trad_format"
# Libraries that log per request or per trial at INFO would drown the job's lines; Alembic
# says at every import which plugins it set up (app.db.migrate lets its "Running upgrade"
# lines through while migrating).
_NOISY = ("optuna", "urllib3", "ccxt", "alembic")
_MENTIONS_JOB = re.compile(r"(?<![\w.])job_id=")

#: The job whose task runs in this context (None outside a job's task).
job_id_var: ContextVar[str | None] = ContextVar("trad_job_id", default=None)


@contextmanager
def job_context(job_id: str | None):
    """Lines logged inside carry ``job_id`` (the tasks' signals do this around each task)."""
    token = job_id_var.set(job_id)
    try:
        yield
    finally:
        job_id_var.reset(token)


class JobIdFilter(logging.Filter):
    """Puts the running job's id on every record as ``record.job_id`` (None outside a job),
    unless the record already names one (``extra={"job_id": ...}``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "job_id", None) is None:
            record.job_id = job_id_var.get()
        return True


def _exception_text(formatter: logging.Formatter, record: logging.LogRecord) -> str:
    text = ""
    if record.exc_info:
        if not record.exc_text:
            record.exc_text = formatter.formatException(record.exc_info)
        text = record.exc_text
    elif record.exc_text:
        text = record.exc_text
    if record.stack_info:
        text = (text + "\n" if text else "") + formatter.formatStack(record.stack_info)
    return text


def _one_line(text: str) -> str:
    return text.replace("\r", "").replace("\n", "\\n")


class TextFormatter(logging.Formatter):
    """``<time> level=<LEVEL> logger=<name> [job_id=<id>] <message>[ exc="<traceback>"]`` on
    one line; no second ``job_id=`` when the message says it already."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s level=%(levelname)s logger=%(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        job_id = getattr(record, "job_id", None)
        head = f"{self.formatTime(record)} level={record.levelname} logger={record.name}"
        if job_id and not _MENTIONS_JOB.search(message):
            head += f" job_id={job_id}"
        line = f"{head} {_one_line(message)}"
        exc = _exception_text(self, record)
        if exc:
            line += " exc=" + json.dumps(exc)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ``ts`` (ISO 8601, UTC), ``level``, ``logger``, ``message``,
    ``job_id`` when in a job, ``exc`` when there is a traceback."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC)
                          .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        job_id = getattr(record, "job_id", None)
        if job_id:
            out["job_id"] = str(job_id)
        exc = _exception_text(self, record)
        if exc:
            out["exc"] = exc
        return json.dumps(out, ensure_ascii=False, default=str)


def _formatter(fmt: str) -> logging.Formatter:
    return JsonFormatter() if fmt == "json" else TextFormatter()


def _format_from_env() -> str:
    # For callers that pass a level only (the web's build_app, the CLI): the same variable
    # app.config checks at start-up; anything unknown is text.
    fmt = os.environ.get("TRAD_LOG_FORMAT", "text").strip().lower()
    return fmt if fmt in LOG_FORMATS else "text"


def configure_logging(level: str = "INFO", fmt: str | None = None) -> None:
    """Install one stderr handler on the root logger (idempotent: calling it again,
    as Celery's and gunicorn's start-up paths may, never doubles a line). ``fmt``: "text"
    or "json" (default: ``TRAD_LOG_FORMAT``, else text)."""
    fmt = fmt if fmt in LOG_FORMATS else _format_from_env()
    root = logging.getLogger()
    handler = next((h for h in root.handlers if getattr(h, _MARK, False)), None)
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler.addFilter(JobIdFilter())
        setattr(handler, _MARK, True)
        root.addHandler(handler)
    if getattr(handler, _FORMAT_ATTR, None) != fmt:
        handler.setFormatter(_formatter(fmt))
        setattr(handler, _FORMAT_ATTR, fmt)
    root.setLevel(level)
    for noisy in _NOISY:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if fmt == "json":
        _adopt_gunicorn(handler.formatter)


def _adopt_gunicorn(formatter: logging.Formatter) -> None:
    """Under gunicorn, its own error and access logs (handlers of their own, not propagated)
    written in our format too, so a JSON log is JSON throughout."""
    for name in ("gunicorn.error", "gunicorn.access"):
        for handler in logging.getLogger(name).handlers:
            if not getattr(handler, _MARK, False):
                handler.setFormatter(formatter)
                if not any(isinstance(f, JobIdFilter) for f in handler.filters):
                    handler.addFilter(JobIdFilter())
