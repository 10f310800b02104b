"""Training-job use cases: submit, read, list, cancel; and the pipeline's steps (start a
job, run a chunk of trials, finish a round, fail, time out). Each step owns short
transactions and never holds a session while backtesting.

The Celery tasks in ``workers/`` are thin adapters over the pipeline steps here; the
steps return plans (which chunks to run next) and never import Celery, so the same
code runs in-process on the embedded default.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
from sqlalchemy import func, select, update

from app.backtest.candles import Candles, periods_per_year, timeframe_ms
from app.backtest.engine import BacktestConfig
from app.config import Settings
from app.data.timeutil import iso
from app.db import training as repo
from app.db.market_data import last_timestamp, load_candles
from app.db.migrate import require_schema
from app.db.models import (
    ConfigurationStageChange,
    TrainedConfiguration,
    TrainingJob,
    TrainingProgress,
    Trial,
)
from app.db.session import session_scope
from app.errors import InputError, TradError
from app.optimize.objectives import get_objective
from app.optimize.rounds import SEQUENTIAL_OPTIMIZERS, PastTrial, ask_round, part_bounds
from app.services.job_request import TrainingRequest, Unprocessable, parse_request
from app.strategies.cache import IndicatorCache
from app.strategies.registry import get_strategy
from app.strategies.runner import run_strategy, score_params, strategy_returns
from app.validation.confidence import Thresholds, confidence_and_stage
from app.validation.lookahead import check_lookahead
from app.validation.pbo import probability_of_backtest_overfitting
from app.validation.sharpe_stats import deflated_sharpe_ratio
from app.validation.split import holdout_split, parse_validation

__all__ = [
    "NotFound",
    "Conflict",
    "Chunk",
    "submit",
    "get_job",
    "list_jobs",
    "list_trials",
    "list_progress",
    "cancel",
    "start_job",
    "mark_dispatched",
    "run_chunk",
    "finish_round",
    "fail_job",
    "expire_overdue_jobs",
    "repair_stalled_jobs",
    "Repair",
    "list_configurations",
    "get_configuration",
    "change_stage",
    "export_study",
]

log = logging.getLogger(__name__)

# A chunk should carry at least this much work (a Celery task costs ~3 ms however small)
# and at most this much (so progress moves and a lost worker loses little).
CHUNK_MIN_S = 0.05
CHUNK_TARGET_S = 1.0
MIN_CHUNKS = 8
MAX_CHUNK = 5_000
FINISH_RETRIES = 30


class NotFound(InputError):
    code = "not_found"
    status = 404


class Conflict(InputError):
    code = "conflict"
    status = 409


class JobFailed(TradError):
    """The job cannot go on; the message is what the trader reads."""

    code = "job_failed"


@dataclass(frozen=True)
class Chunk:
    """A batch of trials for one task: numbers, parameters and sampler state; or, for a
    round asked in parts, the numbers and ``ask`` (the task asks their parameters itself:
    ``{"part": k, "first": the round's first number, "batch": the round's size}``, the
    history being every trial numbered below ``first``)."""

    numbers: list[int]
    params: list[dict]
    system_attrs: list[dict]
    ask: dict | None = None

    def to_message(self) -> dict:
        message = {"numbers": self.numbers, "params": self.params, "system_attrs": self.system_attrs}
        if self.ask is not None:
            message["ask"] = self.ask
        return message

    @classmethod
    def from_message(cls, message: dict) -> Chunk:
        return cls(message["numbers"], message["params"],
                   message.get("system_attrs") or [{}] * len(message["params"]), message.get("ask"))


# -- submit and read ----------------------------------------------------------------------


def _new_job_id() -> str:
    return secrets.token_hex(16)


def submit(settings: Settings, body, enqueue: Callable[[str, int], None]) -> dict:
    """Validate, insert the job ``queued``, hand it to ``enqueue(job_id, priority)``."""
    request = parse_request(body, max_trials=settings.max_trials, sampler_parts=settings.sampler_parts)
    require_schema(settings.database_url)
    with session_scope(settings.database_url) as session:
        if last_timestamp(session, request.exchange, request.symbol, request.timeframe) is None:
            raise Unprocessable(
                f"no {request.timeframe} candles for {request.symbol} on {request.exchange}",
                field="symbol",
                hint=f"import or fetch them first: trad data fetch --exchange {request.exchange} "
                     f"--symbol {request.symbol} --timeframe {request.timeframe}")
        now = repo.utcnow()
        job = TrainingJob(
            id=_new_job_id(), status="queued", request=request.to_dict(),
            strategy=request.strategy, exchange=request.exchange, symbol=request.symbol,
            timeframe=request.timeframe, optimizer=request.optimizer, objective=request.objective,
            priority=request.priority, seed=request.seed, n_trials=_planned_trials(request),
            round=0, trials_done=0, cancel_requested=False, timeout_s=request.timeout_s,
            deadline_at=now + timedelta(seconds=request.timeout_s), created_at=now,
            updated_at=now)
        session.add(job)
        session.flush()
        repo.add_progress(session, job, "queued", "waiting for a worker", 0)
        job_id = job.id
    log.info("job submitted job_id=%s strategy=%s symbol=%s timeframe=%s optimizer=%s trials=%d",
             job_id, request.strategy, request.symbol, request.timeframe, request.optimizer,
             _planned_trials(request))
    enqueue(job_id, request.priority)
    return get_job(settings, job_id)


def _planned_trials(request: TrainingRequest) -> int:
    per_run = len(request.space().grid()) if request.optimizer == "grid" else request.n_iterations
    plan = parse_validation(request.validation, request.run_validation)
    # A walk-forward runs the search once per fold.
    return per_run * plan.folds if plan.method == "walk_forward" else per_run


def _job_or_404(session, job_id: str) -> TrainingJob:
    job = session.get(TrainingJob, job_id) if isinstance(job_id, str) and len(job_id) <= 64 else None
    if job is None:
        raise NotFound(f"no training job {job_id!r}", field="job_id")
    return job


def _job_view(job: TrainingJob, brief: bool = False) -> dict:
    view = {
        "job_id": job.id,
        "status": job.status,
        "strategy": job.strategy,
        "exchange": job.exchange,
        "symbol": job.symbol,
        "timeframe": job.timeframe,
        "optimizer": job.optimizer,
        "objective": job.objective,
        "priority": job.priority,
        "percentage": round(100.0 * min(job.trials_done, job.n_trials) / max(job.n_trials, 1), 2),
        "trials_done": job.trials_done,
        "trials_total": job.n_trials,
        "best_value": job.best_value,
        "created_at": job.created_at.isoformat() if job.created_at else None,
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "error": job.error,
    }
    if not brief:
        view.update({
            "request": job.request,
            "seed": job.seed,
            "round": job.round,
            # Steps resumed or repaired after a lost worker or message (see _count_recovery).
            "recoveries": job.recoveries or 0,
            "data_fingerprint": job.data_fingerprint,
            "data_start": iso(job.data_start),
            "data_end": iso(job.data_end),
            "best_params": job.best_params,
            "deadline_at": job.deadline_at.isoformat() if job.deadline_at else None,
            "result": job.result,
        })
    return view


def get_job(settings: Settings, job_id: str) -> dict:
    with session_scope(settings.database_url) as session:
        return _job_view(_job_or_404(session, job_id))


def _page(page, per_page) -> tuple[int, int]:
    try:
        page, per_page = int(page or 1), int(per_page or 50)
    except (TypeError, ValueError):
        raise InputError("page and per_page must be integers", field="page") from None
    if page < 1 or not 1 <= per_page <= 1000:
        raise InputError("page starts at 1; per_page is 1 to 1000", field="per_page")
    return page, per_page


def list_jobs(settings: Settings, status: str | None = None, page=1, per_page=50) -> dict:
    page, per_page = _page(page, per_page)
    statuses = ("queued", "running", "succeeded", "failed", "cancelled")
    if status and status not in statuses:
        raise InputError(f"unknown status {status!r}", field="status", hint="known: " + ", ".join(statuses))
    with session_scope(settings.database_url) as session:
        query = select(TrainingJob).where(TrainingJob.parent_id.is_(None))
        count = select(func.count()).select_from(TrainingJob).where(TrainingJob.parent_id.is_(None))
        if status:
            query = query.where(TrainingJob.status == status)
            count = count.where(TrainingJob.status == status)
        total = session.scalar(count)
        jobs = session.scalars(query.order_by(TrainingJob.created_at.desc(), TrainingJob.id)
                               .offset((page - 1) * per_page).limit(per_page))
        return {"jobs": [_job_view(j, brief=True) for j in jobs], "page": page,
                "per_page": per_page, "total": total}


def list_trials(settings: Settings, job_id: str, page=1, per_page=100, order: str = "number") -> dict:
    page, per_page = _page(page, per_page)
    if order not in ("number", "value"):
        raise InputError("order is number or value", field="order")
    with session_scope(settings.database_url) as session:
        _job_or_404(session, job_id)
        query = select(Trial).where(Trial.job_id == job_id)
        query = query.order_by(Trial.value.desc().nulls_last(), Trial.number) if order == "value" \
            else query.order_by(Trial.number)
        total = session.scalar(select(func.count()).select_from(Trial).where(Trial.job_id == job_id))
        trials = session.scalars(query.offset((page - 1) * per_page).limit(per_page))
        return {"trials": [{"number": t.number, "round": t.round, "params": t.params,
                            "state": t.state, "value": t.value, "metrics": t.metrics,
                            "duration_s": t.duration} for t in trials],
                "page": page, "per_page": per_page, "total": total}


def list_progress(settings: Settings, job_id: str, after_id: int = 0, limit: int = 500) -> dict:
    with session_scope(settings.database_url) as session:
        job = _job_or_404(session, job_id)
        rows = session.scalars(select(TrainingProgress).where(
            TrainingProgress.job_id == job_id, TrainingProgress.id > int(after_id or 0))
            .order_by(TrainingProgress.id).limit(max(1, min(int(limit), 5000))))
        return {"job_id": job_id, "status": job.status, "progress": [
            {"id": p.id, "ts": p.ts.isoformat(), "percentage": p.percentage,
             "step_number": p.step_number, "total_steps": p.total_steps, "stage": p.stage,
             "message": p.message, "best_value": p.best_value} for p in rows]}


def cancel(settings: Settings, job_id: str) -> dict:
    """Cancel a queued or running job: it ends ``cancelled`` now; chunks already
    dispatched see the flag and skip their work."""
    with session_scope(settings.database_url) as session:
        job = repo.lock_job(session, job_id)
        if job is None:
            raise NotFound(f"no training job {job_id!r}", field="job_id")
        if job.status in repo.TERMINAL:
            raise Conflict(f"job {job_id} already {job.status}", field="job_id")
        now = repo.utcnow()
        for row in [job, *session.scalars(select(TrainingJob).where(
                TrainingJob.parent_id == job_id, TrainingJob.status.in_(("queued", "running"))))]:
            row.cancel_requested = True
            row.status = "cancelled"
            row.finished_at = now
            row.updated_at = now
            repo.add_progress(session, row, "cancelled", "cancelled on request")
    log.info("job cancelled job_id=%s", job_id)
    return get_job(settings, job_id)


# -- the pipeline ----------------------------------------------------------------------------

_candles_cache: dict[str, tuple[Candles, IndicatorCache]] = {}
_CANDLES_CACHE_SIZE = 4


def _request_of(job: TrainingJob) -> TrainingRequest:
    data = dict(job.request)
    return TrainingRequest(**data)


def _config(request: TrainingRequest) -> BacktestConfig:
    return BacktestConfig(fee=request.fee, slippage_bps=request.slippage_bps,
                          periods_per_year=periods_per_year(request.timeframe))


def _data_range(session, request: TrainingRequest) -> tuple[int, int]:
    """[start, end) of the job's data. ``lookback_days`` counts back from the newest
    stored candle, not from the wall clock, so a job over imported history works."""
    step = timeframe_ms(request.timeframe)
    if request.start is not None:
        end = request.end if request.end is not None else (
            last_timestamp(session, request.exchange, request.symbol, request.timeframe) + step)
        return request.start, end
    last = last_timestamp(session, request.exchange, request.symbol, request.timeframe)
    if last is None:
        raise JobFailed(f"no {request.timeframe} candles for {request.symbol} on {request.exchange}")
    end = request.end if request.end is not None else last + step
    return end - int(request.lookback_days * 86_400_000), end


def _load_job_candles(settings: Settings, job: TrainingJob) -> tuple[Candles, IndicatorCache]:
    """The train part of the job's series, from this process's cache when the
    fingerprint matches (candles never travel through the broker)."""
    key = job.data_fingerprint
    hit = _candles_cache.get(key)
    if hit is not None:
        return hit
    with session_scope(settings.database_url) as session:
        candles = load_candles(session, job.exchange, job.symbol, job.timeframe,
                               job.data_start, job.data_end)
    request = _request_of(job)
    plan = parse_validation(request.validation, request.run_validation)
    if plan.method == "holdout":
        candles = candles.slice(0, holdout_split(len(candles), plan.test_fraction))
    if candles.fingerprint != key:
        raise JobFailed("the job's candles changed in the database since it started "
                        f"(fingerprint {candles.fingerprint[:12]} != {key[:12]}); resubmit the job")
    while len(_candles_cache) >= _CANDLES_CACHE_SIZE:
        _candles_cache.pop(next(iter(_candles_cache)))
    entry = (candles, IndicatorCache(candles))
    _candles_cache[key] = entry
    return entry


def _chunk_size(n: int, per_trial_s: float) -> int:
    by_time = max(1, int(CHUNK_TARGET_S / max(per_trial_s, 1e-7)))
    floor = max(1, int(math.ceil(CHUNK_MIN_S / max(per_trial_s, 1e-7))))
    size = max(floor, min(by_time, int(math.ceil(n / MIN_CHUNKS))))
    return max(1, min(size, MAX_CHUNK))


def _chunk_bounds(n: int, size: int) -> list[tuple[int, int]]:
    """Chunks of ``size``, shrinking to a quarter of it over the last few (guided
    scheduling): the round's last chunks are short, so no worker waits long on one that
    is still running at the end."""
    bounds, start, smallest = [], 0, max(1, size // 4)
    while start < n:
        step = min(size, max(smallest, -(-(n - start) // 4)))
        bounds.append((start, min(n, start + step)))
        start += step
    return bounds


def _ask_chunks(plan: dict) -> list[Chunk]:
    """A round asked in parts: part k asks and runs the trials of its share of the batch."""
    first, batch = plan["first"], plan["batch"]
    return [Chunk(list(range(first + a, first + b)), [], [],
                  {"part": k, "first": first, "batch": batch})
            for k, (a, b) in enumerate(part_bounds(batch, plan["parts"]))]


def _split(numbers: list[int], params: list[dict], attrs: list[dict], size: int) -> list[Chunk]:
    return [Chunk(numbers[a:b], params[a:b], attrs[a:b]) for a, b in _chunk_bounds(len(numbers), size)]


def _per_trial_seconds(strategy, candles, cache, config, space) -> float:
    params = space.complete({p.name: p.default for p in space.free})
    if not strategy.feasible(params):
        params = space.sample(1, 0)[0]
    score_params(strategy, candles, params, config, cache)  # compile and warm the cache
    t0 = time.perf_counter()
    for _ in range(3):
        score_params(strategy, candles, params, config, cache)
    return (time.perf_counter() - t0) / 3


# What the sampler is told for a trial with fewer than min_trades trades. Samplers rank
# (TPE splits by quantile, CMA-ES and NSGA-II sort), so one very low constant sends the
# search away from such regions without bending the scale of the valid values.
REJECTED_VALUE = -1e9


def _history(session, job_id: str, before: int | None = None) -> list[PastTrial]:
    return [PastTrial(t.number, t.params,
                      t.value if t.state == "complete" else
                      REJECTED_VALUE if t.state == "rejected" else None,
                      t.system_attrs or {})
            for t in repo.finished_trials(session, job_id, before)]


def _plan_round(settings: Settings, job: TrainingJob, request: TrainingRequest, round_no: int,
                first_number: int, history: list[PastTrial], per_trial_s: float
                ) -> tuple[list[Chunk], dict | None]:
    space = request.space()
    remaining = job.n_trials - first_number
    if request.optimizer == "grid":
        params = space.grid()
        attrs = [{}] * len(params)
        state = None
    elif request.optimizer == "random":
        params = space.sample(job.n_trials, job.seed)
        attrs = [{}] * len(params)
        state = None
    elif request.parts > 1:
        # Asked in parts by the workers (see app.optimize.rounds); one chunk per part.
        job.round_plan = {"round": round_no, "first": first_number,
                          "batch": min(request.rounds_batch, remaining), "parts": request.parts}
        return _ask_chunks(job.round_plan), None
    else:
        batch = min(request.rounds_batch, remaining)
        asked, state = ask_round(space, request.optimizer, job.seed, round_no, batch, history,
                                 job.sampler_state or {})
        params = [a.params for a in asked]
        attrs = [a.system_attrs for a in asked]
    numbers = list(range(first_number, first_number + len(params)))
    size = _chunk_size(len(numbers), per_trial_s)
    # Enough to send this round again, the same trials in the same chunks, if the worker
    # dies between this commit and the chord (see _planned_chunks). Grid and random params are
    # derived again from the seed; a sequential round's asked params are kept (a batch).
    job.round_plan = {"round": round_no, "size": size}
    if request.optimizer in SEQUENTIAL_OPTIMIZERS:
        job.round_plan |= {"first": first_number, "params": params, "attrs": attrs}
    return _split(numbers, params, attrs, size), state


def _planned_chunks(job: TrainingJob, request: TrainingRequest) -> list[Chunk]:
    """The chunks of the job's current round as planned, or [] if it has none (finishing)."""
    plan = job.round_plan or {}
    if plan.get("round") != job.round:
        return []
    if "parts" in plan:
        return _ask_chunks(plan)
    if "params" in plan:
        first, params, attrs = plan["first"], plan["params"], plan["attrs"]
    else:
        space = request.space()
        params = space.grid() if job.optimizer == "grid" else space.sample(job.n_trials, job.seed)
        first, attrs = 0, [{}] * len(params)
    return _split(list(range(first, first + len(params))), params, attrs, plan["size"])


# A control task (start_job, finish_round) redelivered after its worker died resumes the job
# at most this many times; a step that kills its worker every time fails the job instead.
MAX_RECOVERIES = 3


def _count_recovery(session, job: TrainingJob, what: str) -> None:
    job.recoveries = (job.recoveries or 0) + 1
    if job.recoveries > MAX_RECOVERIES:
        raise JobFailed(f"the worker running this job was lost {MAX_RECOVERIES} times in the middle "
                        f"of a step (killed, out of memory, or past TRAD_TASK_HARD_LIMIT_S); "
                        "resubmit it with fewer trials or a shorter range, or raise the limit")
    job.updated_at = repo.utcnow()
    repo.add_progress(session, job, "running", what)
    log.warning("job resumed job_id=%s step=%r recoveries=%d", job.id, what, job.recoveries)


def _is_walk_forward(job: TrainingJob, request: TrainingRequest) -> bool:
    """A walk-forward's parent job (its folds are child jobs with their own rounds)."""
    return job.parent_id is None and parse_validation(
        request.validation, request.run_validation).method == "walk_forward"


def _folds(session, parent_id: str) -> list[TrainingJob]:
    return list(session.scalars(select(TrainingJob).where(TrainingJob.parent_id == parent_id)
                                .order_by(TrainingJob.fold)))


def mark_dispatched(settings: Settings, job_id: str, round_no: int) -> None:
    """Record that round ``round_no``'s chord (or a walk-forward's folds) went to the broker."""
    with session_scope(settings.database_url) as session:
        session.execute(update(TrainingJob).where(
            TrainingJob.id == job_id,
            (TrainingJob.dispatched_round.is_(None)) | (TrainingJob.dispatched_round < round_no))
            .values(dispatched_round=round_no))


def start_job(settings: Settings, job_id: str, resume: bool = False) -> list:
    """Load and fingerprint the candles, mark the job running, plan round 0. Returns the
    round's chunks, or, for a walk-forward, the fold jobs to start (``ChildJob``s).

    ``resume``: this is a redelivery (the worker that ran it died). A running job whose
    round 0 never went out gets its planned chunks (or its folds still queued) again;
    sending them twice is harmless, trials being idempotent on (job_id, number)."""
    with session_scope(settings.database_url) as session:
        job = repo.lock_job(session, job_id)
        if job is None:
            raise JobFailed(f"no training job {job_id}")
        if job.status != "queued":
            if resume and job.status == "running" and job.dispatched_round is None:
                _count_recovery(session, job, "resuming after a lost worker: start")
                request = _request_of(job)
                if _is_walk_forward(job, request):
                    return [ChildJob(c.id, c.priority) for c in _folds(session, job_id)
                            if c.status == "queued"]
                return _planned_chunks(job, request)
            log.info("start skipped job_id=%s status=%s", job_id, job.status)
            return []
        request = _request_of(job)
        start, end = _data_range(session, request)
        candles = load_candles(session, job.exchange, job.symbol, job.timeframe, start, end)
    plan = parse_validation(request.validation, request.run_validation)
    if plan.method == "walk_forward":
        return _start_walk_forward(settings, job_id, request, plan, candles)
    train = candles
    if plan.method == "holdout":
        train = candles.slice(0, holdout_split(len(candles), plan.test_fraction))
    strategy = get_strategy(request.strategy)
    violation = check_lookahead(strategy, train, request.space().complete(
        {p.name: p.default for p in request.space().free}))
    if violation is not None:
        raise JobFailed(f"{violation}; fix the strategy before training it")
    cache = IndicatorCache(train)
    per_trial = _per_trial_seconds(strategy, train, cache, _config(request), request.space())
    _candles_cache[train.fingerprint] = (train, cache)
    with session_scope(settings.database_url) as session:
        job = repo.lock_job(session, job_id)
        if job.status != "queued":
            return []
        now = repo.utcnow()
        job.status = "running"
        job.started_at = now
        job.updated_at = now
        job.data_start, job.data_end = int(candles.ts[0]), int(candles.ts[-1]) + timeframe_ms(job.timeframe)
        job.data_fingerprint = train.fingerprint
        job.result = {"bars": len(candles), "train_bars": len(train),
                      "est_trial_ms": round(per_trial * 1e3, 4)}
        t0 = time.perf_counter()
        chunks, state = _plan_round(settings, job, request, 0, 0, [], per_trial)
        job.sampler_state = state
        job.result = {**job.result, "sampler_s": round(time.perf_counter() - t0, 6)}
        repo.add_progress(session, job, "running",
                          f"{len(train)} bars, {job.n_trials} trials, round 0: {len(chunks)} chunks")
    log.info("job started job_id=%s bars=%d trials=%d chunks=%d est_trial_ms=%.3f",
             job_id, len(candles), job.n_trials, len(chunks), per_trial * 1e3)
    return chunks


@dataclass(frozen=True)
class ChildJob:
    """A walk-forward fold, started as a job of its own."""

    job_id: str
    priority: int


def _start_walk_forward(settings: Settings, job_id: str, request: TrainingRequest, plan,
                        candles: Candles) -> list[ChildJob]:
    """Plan the folds over the job's bars and create one child job per fold, each
    optimizing on its training window; the folds run in parallel."""
    from app.validation.walk_forward import plan_folds

    folds = plan_folds(len(candles), plan.folds, plan.train_bars, plan.test_bars, plan.anchored)
    strategy = get_strategy(request.strategy)
    violation = check_lookahead(strategy, candles, request.space().complete(
        {p.name: p.default for p in request.space().free}))
    if violation is not None:
        raise JobFailed(f"{violation}; fix the strategy before training it")
    step = timeframe_ms(request.timeframe)
    children = []
    with session_scope(settings.database_url) as session:
        parent = repo.lock_job(session, job_id)
        if parent.status != "queued":
            return []
        now = repo.utcnow()
        per_fold = _planned_trials(request) // len(folds)
        for i, fold in enumerate(folds):
            child_request = request.to_dict() | {
                "validation": None, "run_validation": False, "lookback_days": None,
                "start": int(candles.ts[fold.train_start]),
                "end": int(candles.ts[fold.train_end - 1]) + step,
                "seed": (request.seed + 7_919 * (i + 1)) % (2**63)}
            child = TrainingJob(
                id=_new_job_id(), status="queued", request=child_request, parent_id=job_id, fold=i,
                strategy=parent.strategy, exchange=parent.exchange, symbol=parent.symbol,
                timeframe=parent.timeframe, optimizer=parent.optimizer, objective=parent.objective,
                priority=parent.priority, seed=child_request["seed"], n_trials=per_fold, round=0,
                trials_done=0, cancel_requested=False, timeout_s=parent.timeout_s,
                deadline_at=parent.deadline_at, created_at=now, updated_at=now)
            session.add(child)
            children.append(ChildJob(child.id, parent.priority))
        parent.status = "running"
        parent.started_at = now
        parent.updated_at = now
        parent.data_start, parent.data_end = int(candles.ts[0]), int(candles.ts[-1]) + step
        parent.data_fingerprint = candles.fingerprint
        parent.result = {"bars": len(candles), "folds": [
            {"fold": i, "job_id": c.job_id, "train": [iso(int(candles.ts[f.train_start])),
                                                       iso(int(candles.ts[f.train_end - 1]) + step)],
             "test": [iso(int(candles.ts[f.test_start])), iso(int(candles.ts[f.test_end - 1]) + step)],
             "train_bars": f.train_bars, "test_bars": f.test_bars}
            for i, (c, f) in enumerate(zip(children, folds))]}
        repo.add_progress(session, parent, "running",
                          f"walk-forward: {len(folds)} folds of {folds[0].train_bars} training and "
                          f"{folds[0].test_bars} test bars")
    log.info("walk-forward started job_id=%s folds=%d", job_id, len(folds))
    return children


def run_chunk(settings: Settings, job_id: str, round_no: int, chunk: Chunk) -> dict:
    """Backtest a chunk and store its trials. Skips work for a job no longer running;
    rows already stored (a redelivered chunk) are not written or counted again."""
    with session_scope(settings.database_url) as session:
        job = session.get(TrainingJob, job_id)
        if job is None or job.status != "running" or job.cancel_requested:
            return {"job_id": job_id, "skipped": True, "inserted": 0}
        session.expunge(job)
    request = _request_of(job)
    ask_s = None
    if chunk.ask is not None:
        t0 = time.perf_counter()
        chunk = _asked(settings, job, request, round_no, chunk)
        ask_s = round(time.perf_counter() - t0, 4)
    candles, cache = _load_job_candles(settings, job)
    strategy = get_strategy(request.strategy)
    config = _config(request)
    objective = get_objective(request.objective)
    rows = []
    for number, params, attrs in zip(chunk.numbers, chunk.params, chunk.system_attrs):
        t0 = time.perf_counter()
        try:
            metrics = score_params(strategy, candles, params, config, cache)
        except Exception as exc:
            # The strategy's own bug: say which strategy, which parameters, what it raised.
            raise JobFailed(f"strategy {strategy.name} failed on trial {number} with params "
                            f"{json.dumps(params)}: {exc.__class__.__name__}: {exc}") from exc
        value = objective(metrics)
        valid = metrics["num_trades"] >= request.min_trades
        rows.append({"number": number, "params": params, "state": "complete" if valid else "rejected",
                     "value": value, "metrics": metrics, "duration": time.perf_counter() - t0,
                     "system_attrs": attrs})
    with session_scope(settings.database_url) as session:
        inserted = repo.insert_trials(session, job_id, round_no, rows)
        job = session.get(TrainingJob, job_id)
        repo.add_progress(session, job, "trials", f"round {round_no}: {inserted} trials stored")
        if job.parent_id and inserted:
            session.execute(update(TrainingJob).where(TrainingJob.id == job.parent_id).values(
                trials_done=TrainingJob.trials_done + inserted, updated_at=repo.utcnow()))
    best = max((r["value"] for r in rows if r["state"] == "complete"), default=None)
    out = {"job_id": job_id, "round": round_no, "inserted": inserted, "best": best}
    if ask_s is not None:
        out["ask_s"] = ask_s  # this part's sampler time (history load included)
    return out


def _asked(settings: Settings, job: TrainingJob, request: TrainingRequest, round_no: int,
           chunk: Chunk) -> Chunk:
    """The chunk with its part of the round asked: from every trial numbered below the
    round's first (all stored before the round went out, so the same history, the same
    parameters, on whichever worker and however often the chunk runs)."""
    with session_scope(settings.database_url) as session:
        history = _history(session, job.id, before=chunk.ask["first"])
    asked, _ = ask_round(request.space(), request.optimizer, job.seed, round_no,
                         len(chunk.numbers), history, job.sampler_state or {},
                         part=chunk.ask["part"], round_size=chunk.ask["batch"])
    return Chunk(chunk.numbers, [a.params for a in asked], [a.system_attrs for a in asked])


def finish_round(settings: Settings, job_id: str, round_no: int, expected: int,
                 resume: bool = False, asked_s: float = 0.0) -> dict:
    """After a round's chunks: check every trial is stored, then plan the next round or
    finish the job. Returns ``{"next": [chunks...]}``, ``{"retry": True}`` (trials still
    missing: a redelivered chunk is on its way), or ``{"done": status}``.

    ``resume``: a redelivery of a finish_round whose worker died after it moved the job on
    (committed round + 1) but before it sent the next round or finished the job: it does
    that step again. Without ``resume`` such a call is a duplicate and does nothing.

    ``asked_s``: what the round's chunks spent asking their parts (core-seconds), added to
    the job's ``result.sampler_s`` with the callback's own asking time."""
    with session_scope(settings.database_url) as session:
        job = repo.lock_job(session, job_id)
        if job is None or job.status != "running":
            return {"done": job.status if job else "missing"}
        if job.round != round_no:
            if not (resume and job.round == round_no + 1):
                return {"done": job.status}
            if job.dispatched_round is not None and job.dispatched_round >= job.round:
                return {"done": job.status}  # the next round went out before the worker died
            chunks = _planned_chunks(job, _request_of(job))
            _count_recovery(session, job, "resuming after a lost worker: "
                            + (f"round {job.round}" if chunks else "finish"))
            if chunks:
                return {"next": chunks, "round": job.round}
        else:
            outcome = _finish_round_locked(settings, session, job, round_no, expected, asked_s)
            if outcome is not None:
                return outcome
    return {"done": _finish_job(settings, job_id)}


def _finish_round_locked(settings: Settings, session, job: TrainingJob, round_no: int,
                         expected: int, asked_s: float = 0.0) -> dict | None:
    """finish_round with the job locked; None when the job is to be finished."""
    job_id = job.id
    stored = repo.round_trials(session, job_id, round_no)
    if stored < expected:
        return {"retry": True, "stored": stored, "expected": expected}
    request = _request_of(job)
    if asked_s:
        _add_sampler_time(job, asked_s)
    if job.optimizer in SEQUENTIAL_OPTIMIZERS and job.trials_done < job.n_trials:
        # Asked in parts, the round's history is read by the parts, not here.
        history = _history(session, job_id) if request.parts == 1 else []
        first = len(history) if request.parts == 1 else job.trials_done
        est = (job.result or {}).get("est_trial_ms", 1.0) / 1e3
        t0 = time.perf_counter()
        chunks, state = _plan_round(settings, job, request, round_no + 1, first, history, est)
        job.round = round_no + 1
        job.sampler_state = state
        _add_sampler_time(job, time.perf_counter() - t0)  # history load excluded
        job.updated_at = repo.utcnow()
        repo.add_progress(session, job, "running", f"round {round_no + 1}: {len(chunks)} chunks")
        return {"next": chunks, "round": round_no + 1}
    job.round = round_no + 1  # claims the finish: a duplicate finish_round now stops above
    job.updated_at = repo.utcnow()
    repo.add_progress(session, job, "finishing", "validating the best trial")
    return None


def _add_sampler_time(job: TrainingJob, seconds: float) -> None:
    """``result.sampler_s``: core-seconds the job spent asking its sampler (the callback's
    asks, and the workers' when a round is asked in parts), kept for the benchmarks."""
    result = dict(job.result or {})
    result["sampler_s"] = round(result.get("sampler_s", 0.0) + seconds, 6)
    job.result = result


# The top trials whose per-bar returns feed the PBO (a job may have 100,000 trials; the
# overfitting that matters is in choosing among the best ones).
PBO_TOP_TRIALS = 64
EQUITY_POINTS = 500
PBO_SPLITS = 16


def _trust(settings: Settings, job: TrainingJob, strategy, train: Candles, config: BacktestConfig,
           in_sample, best_params: dict) -> dict:
    """Deflated Sharpe over every trial, PBO over the top trials, lookahead of the winner."""
    from app.backtest.candles import periods_per_year as ppy_of

    ppy = ppy_of(job.timeframe)
    sharpe = Trial.metrics["sharpe_ratio"].as_float()
    with session_scope(settings.database_url) as session:
        n, s1, s2 = session.execute(select(func.count(), func.sum(sharpe), func.sum(sharpe * sharpe))
                                    .where(Trial.job_id == job.id)).one()
        top = [dict(p) for p in session.scalars(
            select(Trial.params).where(Trial.job_id == job.id, Trial.state == "complete")
            .order_by(Trial.value.desc(), Trial.number).limit(PBO_TOP_TRIALS))]
    n = int(n or 0)
    var_annual = max((float(s2 or 0) - float(s1 or 0) ** 2 / n) / (n - 1), 0.0) if n > 1 else 0.0
    dsr = deflated_sharpe_ratio(in_sample.returns, max(n, 1), var_annual / ppy)
    pbo = None
    unique = {json.dumps(p, sort_keys=True): p for p in top}
    if len(unique) >= 2 and len(train) >= PBO_SPLITS * 4:
        cache = IndicatorCache(train)
        by_trial = np.empty((len(unique), len(train)))  # rows filled contiguously
        for i, p in enumerate(unique.values()):
            by_trial[i] = strategy_returns(strategy, train, p, config, cache)
        pbo = probability_of_backtest_overfitting(by_trial.T, n_splits=PBO_SPLITS)
    violation = check_lookahead(strategy, train, best_params)
    report = {
        "n_trials": n,
        "deflated_sharpe": dsr.to_dict(),
        "pbo": pbo.to_dict() if pbo is not None else None,
        "pbo_trials": len(unique) if pbo is not None else 0,
        "lookahead": violation.to_dict() if violation is not None else None,
    }
    return {"dsr": dsr, "pbo": pbo, "_violation": violation, "report": report}


def _params_key(params: dict) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:32]


def _config_name(strategy: str, version: int) -> str:
    now = repo.utcnow()
    return f"{strategy}_V{version}_{now:%Y%m%d_%H%M%S}_{secrets.token_hex(3)}"


def _finish_job(settings: Settings, job_id: str) -> str:
    with session_scope(settings.database_url) as session:
        job = session.get(TrainingJob, job_id)
        best = repo.best_trial(session, job_id)
        request = _request_of(job)
        if best is None:
            top = session.scalars(select(Trial).where(Trial.job_id == job_id)
                                  .order_by(Trial.value.desc().nulls_last()).limit(1)).first()
            most = session.scalar(select(func.max(Trial.metrics["num_trades"].as_float()))
                                  .where(Trial.job_id == job_id)) if top is not None else 0
            raise JobFailed(
                f"no trial made min_trades={request.min_trades} trades (the most was "
                f"{int(most or 0)}); lower min_trades, widen the data range or the search space")
        best_params, best_value, best_number = dict(best.params), best.value, best.number
        session.expunge(job)
    with session_scope(settings.database_url) as session:
        candles = load_candles(session, job.exchange, job.symbol, job.timeframe,
                               job.data_start, job.data_end)
    strategy = get_strategy(request.strategy)
    config = _config(request)
    plan = parse_validation(request.validation, request.run_validation)
    train, test = candles, None
    if plan.method == "holdout":
        k = holdout_split(len(candles), plan.test_fraction)
        train, test = candles.slice(0, k), candles.slice(k)
    in_sample = run_strategy(strategy, train, best_params, config)
    out_of_sample = run_strategy(strategy, test, best_params, config) if test is not None else None
    trust = _trust(settings, job, strategy, train, config, in_sample, best_params)
    confidence, stage, reasons = confidence_and_stage(
        trust["dsr"], trust["pbo"], in_sample.metrics,
        out_of_sample.metrics if out_of_sample else None, request.min_trades,
        settings.thresholds or Thresholds(), lookahead=trust.pop("_violation"))
    now = repo.utcnow()
    if job.parent_id:
        return _finish_fold(settings, job, request, best_params, best_value, best_number,
                            in_sample, trust, len(train))
    with session_scope(settings.database_url) as session:
        config_row = repo.upsert_configuration(session, {
            "name": _config_name(strategy.name, strategy.version),
            "strategy_name": strategy.name, "strategy_version": strategy.version,
            "exchange": job.exchange, "pair": job.symbol, "timeframe": job.timeframe,
            "params": best_params, "params_key": _params_key(best_params),
            "objective": request.objective,
            "in_sample_metrics": in_sample.metrics,
            "out_of_sample_metrics": out_of_sample.metrics if out_of_sample else None,
            "validation": {**plan.to_dict(), "reasons": reasons, **trust["report"],
                           "train_bars": len(train), "test_bars": len(test) if test is not None else 0},
            "net_profit": in_sample.metrics["net_profit"],
            "sharpe_ratio": in_sample.metrics["sharpe_ratio"],
            "sample_size": in_sample.metrics["num_trades"],
            "confidence": confidence, "lifecycle_stage": stage, "job_id": job_id,
            "data_fingerprint": job.data_fingerprint, "created_at": now, "updated_at": now,
        })
        job = repo.lock_job(session, job_id)
        if job.status != "running":
            return job.status
        _mark_succeeded(job, now, best_params, best_value, {
            "configuration": config_row.name, "best_trial": best_number,
            "best_params": best_params, "objective": request.objective, "best_value": best_value,
            "in_sample": in_sample.metrics,
            "out_of_sample": out_of_sample.metrics if out_of_sample else None,
            "confidence": confidence, "lifecycle_stage": stage, "reasons": reasons,
            "trust": trust["report"]})
        repo.add_progress(session, job, "succeeded",
                          f"best {request.objective}={best_value:.4f} -> {config_row.name} ({stage})",
                          job.n_trials)
    log.info("job succeeded job_id=%s configuration=%s value=%.4f stage=%s",
             job_id, config_row.name, best_value, stage)
    return "succeeded"


def _mark_succeeded(job: TrainingJob, now, best_params: dict, best_value: float,
                    result: dict) -> None:
    job.status = "succeeded"
    job.finished_at = now
    job.updated_at = now
    job.best_params = best_params
    job.best_value = best_value
    job.result = {**(job.result or {}), **result}


def _finish_fold(settings: Settings, job: TrainingJob, request: TrainingRequest, best_params: dict,
                 best_value: float, best_number: int, in_sample, trust: dict, bars: int) -> str:
    """A walk-forward fold is done: keep its winner, then finish the walk-forward if it
    was the last fold."""
    now = repo.utcnow()
    with session_scope(settings.database_url) as session:
        child = repo.lock_job(session, job.id)
        if child.status != "running":
            return child.status
        _mark_succeeded(child, now, best_params, best_value, {
            "best_trial": best_number, "best_params": best_params, "objective": request.objective,
            "best_value": best_value, "in_sample": in_sample.metrics, "trust": trust["report"]})
        repo.add_progress(session, child, "succeeded",
                          f"fold {child.fold}: best {request.objective}={best_value:.4f}", child.n_trials)
    log.info("fold finished job_id=%s parent=%s fold=%s", job.id, job.parent_id, job.fold)
    _maybe_finish_walk_forward(settings, job.parent_id)
    return "succeeded"


def _maybe_finish_walk_forward(settings: Settings, parent_id: str) -> None:
    """Finish the walk-forward once every fold has; exactly one caller gets to."""
    with session_scope(settings.database_url) as session:
        parent = repo.lock_job(session, parent_id)
        if parent is None or parent.status != "running" or parent.round != 0:
            return
        children = list(session.scalars(select(TrainingJob).where(TrainingJob.parent_id == parent_id)
                                        .order_by(TrainingJob.fold)))
        if any(c.status != "succeeded" for c in children):
            return
        parent.round = 1  # the claim: a concurrent last fold stops at the check above
    try:
        _finish_walk_forward(settings, parent_id)
    except TradError as exc:
        fail_job(settings, parent_id, str(exc))


def _finish_walk_forward(settings: Settings, parent_id: str) -> None:
    """Test each fold's winner on the bars after its training window, stitch the test
    windows into one out-of-sample record, score it, store the latest fold's parameters."""
    from app.backtest.metrics import compute_metrics
    from app.validation.walk_forward import plan_folds, stitch, walk_forward_efficiency

    with session_scope(settings.database_url) as session:
        parent = session.get(TrainingJob, parent_id)
        children = list(session.scalars(select(TrainingJob).where(TrainingJob.parent_id == parent_id)
                                        .order_by(TrainingJob.fold)))
        for c in children:
            session.expunge(c)
        session.expunge(parent)
        candles = load_candles(session, parent.exchange, parent.symbol, parent.timeframe,
                               parent.data_start, parent.data_end)
    request = _request_of(parent)
    plan = parse_validation(request.validation, request.run_validation)
    folds = plan_folds(len(candles), plan.folds, plan.train_bars, plan.test_bars, plan.anchored)
    strategy = get_strategy(request.strategy)
    config = _config(request)
    per_fold, returns, pnls, exposed, times = [], [], [], 0, []
    for child, fold in zip(children, folds):
        test = candles.slice(fold.test_start, fold.test_end)
        times.append(test.ts)
        result = run_strategy(strategy, test, child.best_params, config)
        returns.append(result.returns)
        pnls.extend(t.pnl for t in result.trades)
        exposed += int(round(result.metrics["exposure"] * len(test)))
        per_fold.append({"fold": child.fold, "job_id": child.id, "params": child.best_params,
                         "in_sample": child.result["in_sample"], "out_of_sample": result.metrics})
    stitched = stitch(returns)
    equity = config.initial_capital * np.cumprod(1.0 + stitched)
    oos = compute_metrics(equity, np.asarray(pnls), exposed, config.initial_capital,
                          config.periods_per_year)
    wfe = walk_forward_efficiency([f["in_sample"]["cagr"] for f in per_fold],
                                  [f["out_of_sample"]["cagr"] for f in per_fold])
    last = children[-1]
    trust = last.result["trust"]
    pbo = (trust.get("pbo") or {}).get("pbo")
    confidence, stage, reasons = confidence_and_stage(
        trust["deflated_sharpe"]["dsr"], pbo, last.result["in_sample"], oos, request.min_trades,
        settings.thresholds or Thresholds())
    if wfe < 0.5 and stage != "REJECTED":
        reasons.append(f"walk-forward efficiency {wfe:.2f} is below 0.5")
    now = repo.utcnow()
    # The stitched out-of-sample equity curve, at most EQUITY_POINTS points (bar close times).
    ts = np.concatenate(times)
    keep = np.unique(np.linspace(0, len(ts) - 1, min(EQUITY_POINTS, len(ts))).astype(int))
    curve = [[iso(int(ts[i])), round(float(equity[i]), 6)] for i in keep]
    walk_forward = {**plan.to_dict(), "wfe": wfe, "folds": per_fold, "reasons": reasons,
                    "stitched_bars": int(stitched.size), "equity_curve": curve, **trust}
    with session_scope(settings.database_url) as session:
        config_row = repo.upsert_configuration(session, {
            "name": _config_name(strategy.name, strategy.version),
            "strategy_name": strategy.name, "strategy_version": strategy.version,
            "exchange": parent.exchange, "pair": parent.symbol, "timeframe": parent.timeframe,
            "params": last.best_params, "params_key": _params_key(last.best_params),
            "objective": request.objective, "in_sample_metrics": last.result["in_sample"],
            "out_of_sample_metrics": oos, "validation": walk_forward,
            "net_profit": oos["net_profit"], "sharpe_ratio": oos["sharpe_ratio"],
            "sample_size": oos["num_trades"], "confidence": confidence, "lifecycle_stage": stage,
            "job_id": parent_id, "data_fingerprint": parent.data_fingerprint,
            "created_at": now, "updated_at": now,
        })
        job = repo.lock_job(session, parent_id)
        if job.status != "running":
            return
        _mark_succeeded(job, now, last.best_params, last.best_value, {
            "configuration": config_row.name, "best_params": last.best_params,
            "objective": request.objective, "best_value": last.best_value,
            "in_sample": last.result["in_sample"], "out_of_sample": oos,
            "walk_forward": {"wfe": wfe, "folds": per_fold, "equity_curve": curve},
            "confidence": confidence, "lifecycle_stage": stage, "reasons": reasons,
            "trust": trust})
        repo.add_progress(session, job, "succeeded",
                          f"walk-forward over {len(folds)} folds: OOS Sharpe "
                          f"{oos['sharpe_ratio']:.3f}, WFE {wfe:.2f} -> {config_row.name} ({stage})",
                          job.n_trials)
    log.info("walk-forward succeeded job_id=%s configuration=%s wfe=%.3f stage=%s",
             parent_id, config_row.name, wfe, stage)


def export_study(settings: Settings, job_id: str) -> str | None:
    """Copy a finished sequential job's study to optuna's storage for optuna-dashboard
    (study ``trad-<job_id>``). Runs after the job succeeded, off its critical path (a
    bulk write: 5,000 trials in about a second, see app.optimize.rounds)."""
    from app.optimize.rounds import export_study as _export

    url = settings.optuna_storage_url
    with session_scope(settings.database_url) as session:
        job = session.get(TrainingJob, job_id)
        if job is None or job.optimizer not in SEQUENTIAL_OPTIMIZERS or job.status != "succeeded":
            return None
        request = _request_of(job)
        history = _history(session, job_id)
    if not url:
        return None
    name = f"trad-{job_id}"
    t0 = time.perf_counter()
    _export(url, name, request.space(), history)
    log.info("optuna study exported job_id=%s study=%s trials=%d seconds=%.2f",
             job_id, name, len(history), time.perf_counter() - t0)
    return name


def fail_job(settings: Settings, job_id: str, message: str) -> bool:
    """End a job ``failed`` with a message a person can act on (no-op when it already
    ended). Returns whether it changed the job."""
    with session_scope(settings.database_url) as session:
        job = repo.lock_job(session, job_id)
        if job is None or job.status in repo.TERMINAL:
            return False
        now = repo.utcnow()
        job.status = "failed"
        job.error = message[:2000]
        job.finished_at = now
        job.updated_at = now
        repo.add_progress(session, job, "failed", message[:2000])
        parent_id, fold = job.parent_id, job.fold
        for child in session.scalars(select(TrainingJob).where(
                TrainingJob.parent_id == job_id, TrainingJob.status.in_(("queued", "running")))):
            child.cancel_requested = True
            child.status = "cancelled"
            child.finished_at = now
            child.updated_at = now
    log.warning("job failed job_id=%s error=%s", job_id, message)
    if parent_id:
        fail_job(settings, parent_id, f"fold {fold} failed: {message}")
    return True


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
        request = _request_of(job)
        if _is_walk_forward(job, request):
            children = _folds(session, job_id)
            queued = [ChildJob(c.id, c.priority) for c in children if c.status == "queued"]
            if queued:
                _count_recovery(session, job, f"stalled: {len(queued)} folds sent again")
                return Repair(job_id, 0, job.priority, folds=queued)
            if not all(c.status == "succeeded" for c in children):
                return None  # the folds still running are repaired as jobs of their own
            _count_recovery(session, job, "stalled: the walk-forward's finish runs again")
            job.round = 0  # release the lost claim
            finish_folds = True
        else:
            chunks = _planned_chunks(job, request)
            if not chunks:
                _count_recovery(session, job, "stalled: the finish runs again")
                return Repair(job_id, job.round - 1, job.priority, finish=True)
            stored = set(session.scalars(select(Trial.number).where(
                Trial.job_id == job_id, Trial.round == job.round)))
            missing = [c for c in (_without(c, stored) for c in chunks) if c.numbers]
            n_missing = sum(len(c.numbers) for c in missing)
            _count_recovery(session, job, f"stalled round {job.round}: {n_missing} trials sent again"
                            if missing else f"stalled round {job.round}: its finish sent again")
            return Repair(job_id, job.round, job.priority, chunks=missing,
                          expected=sum(len(c.numbers) for c in chunks))
    if finish_folds:
        _maybe_finish_walk_forward(settings, job_id)
    return None


def _without(chunk: Chunk, stored: set[int]) -> Chunk:
    if chunk.ask is not None:
        # A part is stored whole or not at all (one transaction): send it again whole.
        return chunk if not stored.issuperset(chunk.numbers) else Chunk([], [], [])
    keep = [i for i, n in enumerate(chunk.numbers) if n not in stored]
    return Chunk([chunk.numbers[i] for i in keep], [chunk.params[i] for i in keep],
                 [chunk.system_attrs[i] for i in keep])


# -- configurations ----------------------------------------------------------------------


def _config_view(row: TrainedConfiguration) -> dict:
    return {
        "name": row.name, "strategy_name": row.strategy_name,
        "strategy_version": row.strategy_version, "exchange": row.exchange, "pair": row.pair,
        "timeframe": row.timeframe, "params": row.params, "objective": row.objective,
        "in_sample_metrics": row.in_sample_metrics,
        "out_of_sample_metrics": row.out_of_sample_metrics, "validation": row.validation,
        "net_profit": row.net_profit, "sharpe_ratio": row.sharpe_ratio,
        "sample_size": row.sample_size, "confidence": row.confidence,
        "lifecycle_stage": row.lifecycle_stage, "job_id": row.job_id,
        "data_fingerprint": row.data_fingerprint,
        "created_at": row.created_at.isoformat(), "updated_at": row.updated_at.isoformat(),
    }


def list_configurations(settings: Settings, strategy=None, pair=None, timeframe=None,
                        stage=None, page=1, per_page=50) -> dict:
    page, per_page = _page(page, per_page)
    with session_scope(settings.database_url) as session:
        query = select(TrainedConfiguration)
        count = select(func.count()).select_from(TrainedConfiguration)
        for column, value in ((TrainedConfiguration.strategy_name, strategy and strategy.upper()),
                              (TrainedConfiguration.pair, pair and pair.upper()),
                              (TrainedConfiguration.timeframe, timeframe),
                              (TrainedConfiguration.lifecycle_stage, stage and stage.upper())):
            if value:
                query = query.where(column == value)
                count = count.where(column == value)
        total = session.scalar(count)
        rows = session.scalars(query.order_by(TrainedConfiguration.updated_at.desc())
                               .offset((page - 1) * per_page).limit(per_page))
        return {"configurations": [_config_view(r) for r in rows], "page": page,
                "per_page": per_page, "total": total}


def get_configuration(settings: Settings, name: str) -> dict:
    with session_scope(settings.database_url) as session:
        row = session.scalars(select(TrainedConfiguration).where(TrainedConfiguration.name == name)).first()
        if row is None:
            raise NotFound(f"no configuration {name!r}", field="name")
        return {**_config_view(row), "stage_history": _history_view(session, row.id)}


def _history_view(session, config_id: int) -> list[dict]:
    rows = session.scalars(select(ConfigurationStageChange).where(
        ConfigurationStageChange.configuration_id == config_id).order_by(ConfigurationStageChange.id))
    return [{"from": r.from_stage, "to": r.to_stage, "reason": r.reason, "actor": r.actor,
             "forced": r.forced, "ts": r.ts.isoformat()} for r in rows]


def change_stage(settings: Settings, name: str, body, actor: str = "api") -> dict:
    """A person moves a configuration to a stage, with a reason kept in the audit trail.

    ``LIVE`` is only ever reached this way. A ``REJECTED`` configuration goes anywhere but
    ``RETIRED`` only with ``force: true`` (and the audit row says it was forced).
    """
    from app.validation.lifecycle import STAGES

    if not isinstance(body, dict):
        raise InputError("the body must be a JSON object")
    unknown = set(body) - {"stage", "reason", "force"}
    if unknown:
        key = sorted(unknown)[0]
        raise InputError(f"unknown field {key!r}", field=key, hint="fields: stage, reason, force")
    stage = body.get("stage")
    if not isinstance(stage, str) or stage.upper() not in STAGES:
        from app.errors import did_you_mean

        raise InputError(f"unknown stage {stage!r}", field="stage",
                         hint=did_you_mean(str(stage).upper(), STAGES))
    stage = stage.upper()
    reason = body.get("reason")
    if not isinstance(reason, str) or len(reason.strip()) < 3:
        raise InputError("a reason is required (a few words: why this stage)", field="reason")
    force = body.get("force", False)
    if not isinstance(force, bool):
        raise InputError("force must be true or false", field="force")
    with session_scope(settings.database_url) as session:
        stmt = select(TrainedConfiguration).where(TrainedConfiguration.name == name)
        if session.get_bind().dialect.name == "postgresql":
            stmt = stmt.with_for_update()
        row = session.scalars(stmt).first()
        if row is None:
            raise NotFound(f"no configuration {name!r}", field="name")
        if row.lifecycle_stage == stage:
            raise Conflict(f"{name} is already {stage}", field="stage")
        if row.lifecycle_stage == "REJECTED" and stage != "RETIRED" and not force:
            reasons = "; ".join((row.validation or {}).get("reasons", [])) or "failed its checks"
            raise Conflict(f"{name} was REJECTED ({reasons}); promoting it needs force: true",
                           field="force")
        now = repo.utcnow()
        previous = row.lifecycle_stage
        session.add(ConfigurationStageChange(
            configuration_id=row.id, from_stage=previous, to_stage=stage,
            reason=reason.strip(), actor=actor[:128], forced=force, ts=now))
        row.lifecycle_stage = stage
        row.updated_at = now
        log.info("stage changed configuration=%s from=%s to=%s actor=%s forced=%s",
                 name, previous, stage, actor, force)
    return get_configuration(settings, name)

