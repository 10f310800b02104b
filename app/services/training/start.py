"""start_job (a worker's control queue): candles, fingerprint, lookahead gate, the first round."""
from __future__ import annotations

import logging

from sqlalchemy import update

from app.metrics import SAMPLER_SECONDS
from app.backtest.candles import timeframe_ms
from app.config import Settings
from app.db import training as repo
from app.db.market_data import load_candles
from app.db.models import TrainingJob
from app.db.session import session_scope
from app.services.training.candle_cache import candles_cache
from app.services.training.context import (
    ChildJob,
    Done,
    Folds,
    JobFailed,
    Round,
    backtest_config,
    count_recovery,
    data_range,
    default_params,
    fold_jobs,
    is_walk_forward,
    request_of,
    round_of,
    series_data,
)
from app.services.training.plan import draft_round, per_trial_seconds, planned_chunks
from app.services.training.walk_forward import start_walk_forward
from app.strategies.cache import IndicatorCache
from app.strategies.registry import get_strategy
from app.validation.lookahead import check_lookahead
from app.validation.split import holdout_split

log = logging.getLogger(__name__)


def mark_dispatched(settings: Settings, job_id: str, round_no: int) -> None:
    """Record that round ``round_no``'s chord (or a walk-forward's folds) went to the broker."""
    with session_scope(settings.database_url) as session:
        session.execute(update(TrainingJob).where(
            TrainingJob.id == job_id,
            (TrainingJob.dispatched_round.is_(None)) | (TrainingJob.dispatched_round < round_no))
            .values(dispatched_round=round_no))


def _resumed(session, job: TrainingJob) -> Round | Folds:
    """A redelivered start of a job whose round 0 never went out: the same round again."""
    count_recovery(session, job, "resuming after a lost worker: start")
    request = request_of(job)
    if is_walk_forward(job, request):
        return Folds(job.id, tuple(ChildJob(c.id, c.priority) for c in fold_jobs(session, job.id)
                                   if c.status == "queued"), job.priority)
    return round_of(job.id, 0, planned_chunks(job.round_plan, job.round, request, job.n_trials,
                                              job.seed), job.priority)


def start_job(settings: Settings, job_id: str, resume: bool = False) -> Round | Folds | Done:
    """Load and fingerprint the candles, check the strategy for lookahead, draft round 0,
    then mark the job running with it. Returns the round to send, the folds to start (a
    walk-forward), or ``Done`` (nothing to send: the job was started, or ended, already).

    No lock or session is held while the candles are checked and round 0 is drafted (a
    grid can be a million points): the job is claimed at the end with a compare-and-set on
    its status, so a duplicate start drafts in vain and sends nothing.

    ``resume``: this is a redelivery (the worker that ran it died). A running job whose
    round 0 never went out gets its planned chunks (or its folds still queued) again;
    sending them twice is harmless, trials being idempotent on (job_id, number)."""
    with session_scope(settings.database_url) as session:
        job = repo.lock_job(session, job_id)
        if job is None:
            raise JobFailed(f"no training job {job_id}")
        if job.status != "queued":
            if resume and job.status == "running" and job.dispatched_round is None:
                return _resumed(session, job)
            log.info("start skipped job_id=%s status=%s", job_id, job.status)
            return Done(job_id, job.status)
        request = request_of(job)
        n_trials, seed, priority = job.n_trials, job.seed, job.priority
    with session_scope(settings.database_url) as session:
        start, end = data_range(session, request)
        candles = load_candles(session, request.exchange, request.symbol, request.timeframe,
                               start, end)
        data = series_data(session, request.exchange, request.symbol, request.timeframe, candles,
                           request.bars_per_year)
    plan = request.plan
    if plan.method == "walk_forward":
        return start_walk_forward(settings, job_id, request, plan, candles, data)
    train = candles
    marks = ()
    if plan.method == "holdout":
        split = holdout_split(len(candles), plan.test_fraction)
        train, marks = candles.slice(0, split), (split,)
    strategy = get_strategy(request.strategy)
    # Every bar the job loaded, the held-out ones included: a strategy that peeks only
    # there would pass a check of the training bars and shine out of sample.
    violation = check_lookahead(strategy, candles, default_params(request), marks=marks)
    if violation is not None:
        raise JobFailed(f"{violation}; fix the strategy before training it")
    cache = IndicatorCache(train)
    per_trial = per_trial_seconds(strategy, train, cache,
                                  backtest_config(request, data["bars_per_year"]), request.space())
    candles_cache[train.fingerprint] = (train, cache)
    draft = draft_round(request, n_trials, seed, None, 0, 0, [], per_trial)
    with session_scope(settings.database_url) as session:
        job = repo.lock_job(session, job_id)
        if job.status != "queued":           # the compare-and-set: started meanwhile
            return Done(job_id, job.status)
        now = repo.utcnow()
        job.status = "running"
        job.started_at = now
        job.updated_at = now
        job.data_start, job.data_end = int(candles.ts[0]), int(candles.ts[-1]) + timeframe_ms(job.timeframe)
        job.data_fingerprint = train.fingerprint
        job.bars_per_year = data["bars_per_year"]
        job.round_plan = draft.round_plan
        job.sampler_state = draft.sampler_state
        job.result = {"bars": len(candles), "train_bars": len(train), "data": data}
        job.stats = {"est_trial_ms": round(per_trial * 1e3, 4),
                     "sampler_s": round(draft.sampler_s, 6)}
        if draft.sampler_s:
            SAMPLER_SECONDS.labels(job.optimizer).inc(draft.sampler_s)
        repo.add_progress(session, job, "running",
                          f"{len(train)} bars, {job.n_trials} trials, round 0: "
                          f"{len(draft.chunks)} chunks")
    log.info("job started job_id=%s bars=%d bars_per_year=%g trials=%d chunks=%d est_trial_ms=%.3f",
             job_id, len(candles), data["bars_per_year"], n_trials, len(draft.chunks), per_trial * 1e3)
    return round_of(job_id, 0, draft.chunks, priority)
