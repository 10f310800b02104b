"""A job's id on every line its tasks log: ``app.logging_setup.job_id_var`` set when a task
of a job starts (Celery's ``task_prerun``) and put back when it ends (``task_postrun``).

A task is a job's when it takes a ``job_id`` argument (``start_job(job_id)``,
``run_trials(job_id, round_no, chunk)``, ``finish_round(results, job_id, ...)``,
``export_study(job_id)``): by keyword, or by position as its signature places it. Lines
logged meanwhile by anything in that process (our modules, Celery's own "succeeded" line,
optuna, SQLAlchemy) carry ``job_id=<id>``. Connected by importing this module
(``workers.celery_app`` does).
"""
from __future__ import annotations

import inspect
from contextvars import Token

from celery import signals

from app.logging_setup import job_id_var

__all__ = ["job_id_of"]

# The value before each running task set it, by task id (a task run eagerly inside
# another puts back the outer one's job).
_tokens: dict[str, Token] = {}
_signatures: dict[str, inspect.Signature | None] = {}


def job_id_of(task, args, kwargs) -> str | None:
    """The ``job_id`` a task was called with, or None for a task of no job."""
    kwargs = kwargs or {}
    if kwargs.get("job_id"):
        return str(kwargs["job_id"])
    name = getattr(task, "name", None) or repr(task)
    if name not in _signatures:
        try:
            signature = inspect.signature(task.run)
        except (TypeError, ValueError, AttributeError):
            signature = None
        _signatures[name] = signature if signature and "job_id" in signature.parameters else None
    signature = _signatures[name]
    if signature is None:
        return None
    try:
        job_id = signature.bind_partial(*(args or ()), **kwargs).arguments.get("job_id")
    except TypeError:
        return None
    return str(job_id) if job_id else None


@signals.task_prerun.connect
def _enter_job(task_id=None, task=None, args=None, kwargs=None, **_kw) -> None:
    job_id = job_id_of(task, args, kwargs)
    if job_id is not None and task_id is not None:
        _tokens[task_id] = job_id_var.set(job_id)


@signals.task_postrun.connect
def _leave_job(task_id=None, **_kw) -> None:
    token = _tokens.pop(task_id, None)
    if token is None:
        return
    try:
        job_id_var.reset(token)
    except ValueError:  # set in another context (never in Celery's pools): just clear it
        job_id_var.set(None)
