"""Builds and sends the canvas a step of a job asks for: a round as
chord(group(run_trials...), finish_round) with an errback that ends the job failed, a
walk-forward's folds as jobs of their own, a finished job's study export. Signatures are
built by task name, so this module imports no task module (tasks import it, not the
other way round). No backtest logic here.

In eager mode (the embedded default) the same signatures run in-process, a round's chunks
on ``local_workers`` local processes (workers/local_pool.py); a finished round's next
round is queued on a trampoline instead of nesting inside the previous one, so a job of
hundreds of rounds does not grow the stack.
"""
from __future__ import annotations

import threading

from celery import chord, group

from app.services import training
from workers.celery_app import CONTROL_QUEUE, TRIALS_QUEUE, celery_app
from workers.local_pool import LocalChord

__all__ = ["enqueue_start", "enqueue_export", "enqueue_finish", "send", "send_repairs",
           "broker_priority"]

_local = threading.local()

START_JOB = "trad.start_job"
RUN_TRIALS = "trad.run_trials"
FINISH_ROUND = "trad.finish_round"
EXPORT_STUDY = "trad.export_study"
ON_CHORD_ERROR = "trad.on_chord_error"


def broker_priority(priority: int) -> int:
    """API priority 9 runs first; Redis' emulated priorities run 0 first."""
    return 9 - int(priority)


def _task(name: str, args: tuple, kwargs: dict | None = None, *, queue: str, priority: int = 4):
    return celery_app.signature(name, args=args, kwargs=kwargs or {}, queue=queue,
                                priority=priority)


def enqueue_start(job_id: str, priority: int = 5) -> None:
    _send(_task(START_JOB, (job_id,), queue=CONTROL_QUEUE, priority=broker_priority(priority)))


def enqueue_export(job_id: str) -> None:
    _send(_task(EXPORT_STUDY, (job_id,), queue=CONTROL_QUEUE, priority=9))


def enqueue_finish(job_id: str, round_no: int, expected: int, priority: int = 5,
                   resume: bool = False) -> None:
    """finish_round alone: a round whose chord's callback, or whose finish, was lost."""
    _send(_task(FINISH_ROUND, ([], job_id, round_no, expected), {"resume": resume},
                queue=CONTROL_QUEUE, priority=broker_priority(priority)))


def _dispatch_round(plan: training.Round) -> None:
    """The round's chunks as a chord, then recorded as sent (a redelivered start_job or
    finish_round sends it again only if not)."""
    p = broker_priority(plan.priority)
    header = [_task(RUN_TRIALS, (plan.job_id, plan.number, c.to_message()),
                    queue=TRIALS_QUEUE, priority=p) for c in plan.chunks]
    body = _task(FINISH_ROUND, (plan.job_id, plan.number, plan.expected), queue=CONTROL_QUEUE,
                 priority=p)
    body.link_error(_task(ON_CHORD_ERROR, (plan.job_id,), queue=CONTROL_QUEUE))
    settings = celery_app.conf.trad_settings
    if celery_app.conf.task_always_eager and settings.local_workers > 1 and len(header) > 1:
        # The embedded default on every core: the same tasks, on local processes.
        _send(LocalChord(header, body, settings, settings.local_workers))
    else:
        _send(chord(group(header), body))
    training.mark_dispatched(celery_app.conf.trad_settings, plan.job_id, plan.number)


def send(plan) -> dict:
    """Send what a step asked for (``training.Round``, ``Folds`` or ``Done``); returns a
    small summary for the task's result."""
    if isinstance(plan, training.Round):
        if plan.chunks:
            _dispatch_round(plan)
        return {"job_id": plan.job_id, "round": plan.number, "chunks": len(plan.chunks)}
    if isinstance(plan, training.Folds):
        # A walk-forward: every fold is a job of its own, started in parallel.
        for child in plan.folds:
            enqueue_start(child.job_id, child.priority)
        training.mark_dispatched(celery_app.conf.trad_settings, plan.job_id, 0)
        return {"job_id": plan.job_id, "folds": len(plan.folds)}
    if isinstance(plan, training.Done):
        if plan.status == "succeeded":
            enqueue_export(plan.job_id)
        return {"job_id": plan.job_id, "status": plan.status}
    raise TypeError(f"nothing to send for {plan!r}")


def send_repairs(repairs: list) -> list[str]:
    """Send what ``training.repair_stalled_jobs`` found missing; returns the job ids."""
    for r in repairs:
        if r.folds:
            for child in r.folds:
                enqueue_start(child.job_id, child.priority)
        elif r.finish:
            enqueue_finish(r.job_id, r.round, r.expected, r.priority, resume=True)
        elif r.chunks:
            _dispatch_round(training.round_of(r.job_id, r.round, r.chunks, r.priority, r.expected))
        else:
            enqueue_finish(r.job_id, r.round, r.expected, r.priority)
    return [r.job_id for r in repairs]


def _send(signature) -> None:
    if not celery_app.conf.task_always_eager:
        signature.apply_async()   # by name: the broker takes it whatever this process imported
        return
    # In-process, the tasks must be registered here: import the app's task modules (its
    # ``include``) the way a worker does at start, without an import of them in this module.
    celery_app.loader.import_default_modules()
    pending = getattr(_local, "pending", None)
    if pending is not None:
        pending.append(signature)
        return
    _local.pending = [signature]
    try:
        while _local.pending:
            _local.pending.pop(0).apply_async()
    finally:
        _local.pending = None
