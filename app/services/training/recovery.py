"""The watchdog (beat): jobs past their deadline end failed; stalled jobs get their lost
messages sent again."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select

from app.config import Settings
from app.db import training as repo
from app.db.models import (
    TrainingJob,
    Trial,
)
from app.db.session import session_scope
from app.services.training.context import (
    ChildJob,
    Chunk,
    JobFailed,
    count_recovery,
    fail_job,
    fold_jobs,
    is_walk_forward,
    request_of,
)
from app.services.training.plan import planned_chunks
from app.services.training.walk_forward import maybe_finish_walk_forward

log = logging.getLogger(__name__)


def expire_overdue_jobs(settings: Settings) -> list[str]:
    """The watchdog: fail every queued or running job past its deadline."""
    now = repo.utcnow()
    with session_scope(settings.database_url) as session:
        overdue = list(session.scalars(select(TrainingJob.id).where(
            TrainingJob.status.in_(("queued", "running")), TrainingJob.deadline_at < now)))
    failed = []
    for job_id in overdue:
        with session_scope(settings.database_url) as session:
            timeout = session.get(TrainingJob, job_id).timeout_s
        if fail_job(settings, job_id, f"timed out: not finished within timeout_s={timeout:g} s; "
                                      "raise timeout_s, ask for fewer trials or add workers"):
            failed.append(job_id)
    return failed


@dataclass(frozen=True)
class Repair:
    """What the watchdog sends again for a stalled job (see ``repair_stalled_jobs``)."""

    job_id: str
    round: int
    priority: int
    chunks: list = ()      # the round's trials not stored: a new chord
    expected: int = 0      # the round's size, for its finish_round
    finish: bool = False   # the round is complete and its finish was lost: run it again
    folds: list = ()       # a walk-forward's folds never started


def repair_stalled_jobs(settings: Settings, stall_after_s: float | None = None) -> list[Repair]:
    """The watchdog's second duty: a running job with no progress for ``stall_after_s``
    (default ``settings.stall_after_s``, past the broker's visibility timeout) has lost a
    message for good: a chunk, a chord's callback, a finish, a fold's start. Say what to
    send again; sending it twice is harmless (trials are idempotent, rounds and finishes
    claimed under the job's row lock). Each repair counts as a recovery (at most
    MAX_RECOVERIES, then the job fails)."""
    after = settings.stall_after_s if stall_after_s is None else stall_after_s
    cutoff = repo.utcnow() - timedelta(seconds=after)
    with session_scope(settings.database_url) as session:
        stalled = list(session.scalars(select(TrainingJob.id).where(
            TrainingJob.status == "running", TrainingJob.updated_at <= cutoff)
            .order_by(TrainingJob.updated_at)))
    repairs = []
    for job_id in stalled:
        try:
            repair = _repair(settings, job_id, cutoff)
        except JobFailed as exc:
            fail_job(settings, job_id, str(exc))
            continue
        except Exception:  # noqa: BLE001 - one job's fault must not stop the others' repair
            log.exception("repair failed job_id=%s", job_id)
            continue
        if repair is not None:
            repairs.append(repair)
    return repairs


def _repair(settings: Settings, job_id: str, cutoff) -> Repair | None:
    finish_folds = False
    with session_scope(settings.database_url) as session:
        job = repo.lock_job(session, job_id)
        if job is None or job.status != "running" or session.scalar(select(
                TrainingJob.updated_at > cutoff).where(TrainingJob.id == job_id)):
            return None
        request = request_of(job)
        if is_walk_forward(job, request):
            children = fold_jobs(session, job_id)
            queued = [ChildJob(c.id, c.priority) for c in children if c.status == "queued"]
            if queued:
                count_recovery(session, job, f"stalled: {len(queued)} folds sent again")
                return Repair(job_id, 0, job.priority, folds=queued)
            if not all(c.status == "succeeded" for c in children):
                return None  # the folds still running are repaired as jobs of their own
            count_recovery(session, job, "stalled: the walk-forward's finish runs again")
            job.round = 0  # release the lost claim
            finish_folds = True
        else:
            chunks = planned_chunks(job.round_plan, job.round, request, job.n_trials, job.seed)
            if not chunks:
                count_recovery(session, job, "stalled: the finish runs again")
                return Repair(job_id, job.round - 1, job.priority, finish=True)
            stored = set(session.scalars(select(Trial.number).where(
                Trial.job_id == job_id, Trial.round == job.round)))
            missing = [c for c in (without_stored(c, stored) for c in chunks) if c.numbers]
            n_missing = sum(len(c.numbers) for c in missing)
            count_recovery(session, job, f"stalled round {job.round}: {n_missing} trials sent again"
                            if missing else f"stalled round {job.round}: its finish sent again")
            return Repair(job_id, job.round, job.priority, chunks=missing,
                          expected=sum(len(c.numbers) for c in chunks))
    if finish_folds:
        maybe_finish_walk_forward(settings, job_id)
    return None


def without_stored(chunk: Chunk, stored: set[int]) -> Chunk:
    if chunk.ask is not None:
        # A part is stored whole or not at all (one transaction): send it again whole.
        return chunk if not stored.issuperset(chunk.numbers) else Chunk([], [], [])
    keep = [i for i, n in enumerate(chunk.numbers) if n not in stored]
    return Chunk([chunk.numbers[i] for i in keep], [chunk.params[i] for i in keep],
                 [chunk.system_attrs[i] for i in keep])
