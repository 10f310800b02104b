"""Builds and sends the canvas of one round: chord(group(run_trials...), finish_round),
with an errback that ends the job failed. No backtest logic here.

In eager mode (the embedded default) the same signatures run in-process; a finished
round's next round is queued on a trampoline instead of nesting inside the previous
one, so a job of hundreds of rounds does not grow the stack.
"""
from __future__ import annotations

import threading

from celery import chord, group

from workers.celery_app import CONTROL_QUEUE, TRIALS_QUEUE, celery_app

__all__ = ["enqueue_start", "enqueue_export", "enqueue_finish", "dispatch_round", "send_repairs",
           "broker_priority"]

_local = threading.local()


def broker_priority(priority: int) -> int:
    """API priority 9 runs first; Redis' emulated priorities run 0 first."""
    return 9 - int(priority)


def enqueue_start(job_id: str, priority: int = 5) -> None:
    from workers.tasks import start_job

    _send(start_job.signature((job_id,), queue=CONTROL_QUEUE, priority=broker_priority(priority)))


def enqueue_export(job_id: str) -> None:
    from workers.tasks import export_study

    _send(export_study.signature((job_id,), queue=CONTROL_QUEUE, priority=9))


def enqueue_finish(job_id: str, round_no: int, expected: int, priority: int = 5,
                   resume: bool = False) -> None:
    """finish_round alone: a round whose chord's callback, or whose finish, was lost."""
    from workers.tasks import finish_round

    _send(finish_round.signature(([], job_id, round_no, expected), {"resume": resume},
                                 queue=CONTROL_QUEUE, priority=broker_priority(priority)))


def dispatch_round(job_id: str, round_no: int, chunks: list, priority: int = 5,
                   expected: int | None = None) -> None:
    """The round's chunks as a chord, then recorded as sent (a redelivered start_job or
    finish_round sends it again only if not); ``expected``: the round's size when the
    chunks are only its missing part (a repair)."""
    from app.services import training
    from workers.tasks import finish_round, on_chord_error, run_trials

    if expected is None:
        expected = sum(len(c.numbers) for c in chunks)
    p = broker_priority(priority)
    header = group(run_trials.signature((job_id, round_no, c.to_message()), queue=TRIALS_QUEUE,
                                        priority=p) for c in chunks)
    body = finish_round.signature((job_id, round_no, expected), queue=CONTROL_QUEUE, priority=p)
    body.link_error(on_chord_error.signature((job_id,), queue=CONTROL_QUEUE))
    _send(chord(header, body))
    training.mark_dispatched(celery_app.conf.trad_settings, job_id, round_no)


def send_repairs(repairs: list) -> list[str]:
    """Send what ``training.repair_stalled_jobs`` found missing; returns the job ids."""
    for r in repairs:
        if r.folds:
            for child in r.folds:
                enqueue_start(child.job_id, child.priority)
        elif r.finish:
            enqueue_finish(r.job_id, r.round, r.expected, r.priority, resume=True)
        elif r.chunks:
            dispatch_round(r.job_id, r.round, list(r.chunks), r.priority, expected=r.expected)
        else:
            enqueue_finish(r.job_id, r.round, r.expected, r.priority)
    return [r.job_id for r in repairs]


def _send(signature) -> None:
    if not celery_app.conf.task_always_eager:
        signature.apply_async()
        return
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
