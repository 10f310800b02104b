"""The API's side of a training job (runs in the web process): submit, read, list, cancel."""
from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import func, select, text

from app.metrics import job_ended
from app.config import Settings
from app.data.timeutil import iso
from app.db import training as repo
from app.db.market_data import last_timestamp
from app.db.migrate import require_schema
from app.db.models import (
    TrainingJob,
    TrainingProgress,
    Trial,
)
from app.db.session import session_scope
from app.errors import InputError
from app.schemas import TrainingRequest, Unprocessable, parse_request

log = logging.getLogger(__name__)


class NotFound(InputError):
    code = "not_found"
    status = 404


class Conflict(InputError):
    code = "conflict"
    status = 409


def _no_candles(session, request: TrainingRequest) -> Unprocessable:
    """No candles for the series asked: say which stored series come closest."""
    from app.db.market_data import series_keys
    from app.errors import did_you_mean

    stored = series_keys(session)
    labels = {e for e, _, _, _ in stored}
    message = f"no {request.timeframe} candles for {request.symbol} on {request.exchange}"
    import ccxt

    fetch = (f"fetch them first: trad data fetch --exchange {request.exchange} --symbol "
             f"{request.symbol} --timeframe {request.timeframe}" if request.exchange in ccxt.exchanges
             else f"import them first: trad data import FILE --exchange {request.exchange} "
                  f"--symbol {request.symbol} --timeframe {request.timeframe}")
    if labels and request.exchange not in labels:
        return Unprocessable(message, field="exchange",
                             hint=did_you_mean(request.exchange, labels) + f"; or {fetch}")
    same = [f"{s} {t}" for e, s, t, _ in stored if e == request.exchange]
    if same:
        return Unprocessable(message, field="symbol",
                             hint=f"stored on {request.exchange}: {', '.join(same[:8])}; or {fetch}")
    return Unprocessable(message, field="symbol", hint=fetch)


def new_job_id() -> str:
    return secrets.token_hex(16)


def submit(settings: Settings, body, enqueue: Callable[[str, int], None]) -> dict:
    """Validate, insert the job ``queued``, hand it to ``enqueue(job_id, priority)``."""
    request = parse_request(body, max_trials=settings.max_trials, sampler_parts=settings.sampler_parts)
    require_schema(settings.database_url)
    with session_scope(settings.database_url) as session:
        if last_timestamp(session, request.exchange, request.symbol, request.timeframe) is None:
            raise _no_candles(session, request)
        _check_data(session, settings, request)
        now = repo.utcnow()
        job = TrainingJob(
            id=new_job_id(), status="queued", request=request.to_dict(),
            strategy=request.strategy, exchange=request.exchange, symbol=request.symbol,
            timeframe=request.timeframe, optimizer=request.optimizer, objective=request.objective,
            priority=request.priority, seed=request.seed, n_trials=planned_trials(request),
            round=0, trials_done=0, cancel_requested=False, timeout_s=request.timeout_s,
            deadline_at=now + timedelta(seconds=request.timeout_s), created_at=now,
            updated_at=now)
        session.add(job)
        session.flush()
        repo.add_progress(session, job, "queued", "waiting for a worker", 0)
        job_id = job.id
    log.info("job submitted job_id=%s strategy=%s symbol=%s timeframe=%s optimizer=%s trials=%d",
             job_id, request.strategy, request.symbol, request.timeframe, request.optimizer,
             planned_trials(request))
    enqueue(job_id, request.priority)
    return get_job(settings, job_id)


# The old system's request: what a web worker's warm-up checks as a POST would.
_WARM_BODY = {"strategy": "LIQUIDITY_SWEEP", "symbol": "BTC/USDT", "exchange": "binanceus",
              "timeframe": "5m", "optimizer": "random", "lookback_days": 30, "n_iterations": 10}


def warm_submit(settings: Settings) -> None:
    """The reading part of ``submit`` for a typical body, writing nothing: the request's
    validation and the candle checks' statements (compiled once a process), so a web
    worker's first POST costs what its next ones do."""
    request = parse_request(dict(_WARM_BODY), max_trials=settings.max_trials,
                            sampler_parts=settings.sampler_parts)
    with session_scope(settings.database_url) as session:
        if last_timestamp(session, request.exchange, request.symbol, request.timeframe) is not None:
            try:
                _check_data(session, settings, request)
            except InputError:   # too few bars stored here: checked all the same
                pass
        session.get(TrainingJob, "0" * 32)


# Fewest bars a job trains on: below this no statistic of a verdict means anything.
MIN_BARS = 60


def _check_data(session, settings: Settings, request: TrainingRequest) -> None:
    """The range asked holds enough bars for the job, and trials times bars stay within
    this server's cap: refused with what is stored, before any work."""
    from app.data.timeutil import iso
    from app.db.market_data import count_between
    from app.services.training.context import data_range
    from app.validation.split import MIN_TEST_BARS

    start, end = data_range(session, request)
    bars = count_between(session, request.exchange, request.symbol, request.timeframe, start, end)
    stored = session.execute(text(
        "SELECT MIN(ts), MAX(ts), COUNT(*) FROM market_data WHERE exchange = :e AND symbol = :s "
        "AND timeframe = :t"), {"e": request.exchange, "s": request.symbol,
                                 "t": request.timeframe}).one()
    have = f"{stored[2]:,} bars are stored, {iso(stored[0])} to {iso(stored[1])}"
    window = ("lookback_days" if request.start is None else "start")
    plan = request.plan
    need = MIN_BARS
    if plan.method == "holdout":
        need = max(MIN_BARS, int(MIN_TEST_BARS / min(plan.test_fraction, 1 - plan.test_fraction)) + 1)
    if bars < need:
        raise Unprocessable(
            f"{bars:,} {request.timeframe} bars from {iso(start)} to {iso(end)}, fewer than the "
            f"{need} this job needs ({have})", field=window,
            hint="widen the range: a longer lookback_days (it counts days back from the newest "
                 "stored candle), or start and end")
    trials = planned_trials(request)
    if trials * bars > settings.max_cost:
        raise Unprocessable(
            f"{trials:,} trials over {bars:,} bars is {trials * bars:,.0f} bar-steps, above this "
            f"server's cap of {settings.max_cost:,} (TRAD_MAX_COST)", field="n_iterations",
            hint="ask for fewer trials or a shorter range, or raise TRAD_MAX_COST")


def planned_trials(request: TrainingRequest) -> int:
    per_run = request.space().feasible_grid_size() if request.optimizer == "grid" else request.n_iterations
    plan = request.plan
    # A walk-forward runs the search once per fold.
    return per_run * plan.folds if plan.method == "walk_forward" else per_run


def job_or_404(session, job_id: str) -> TrainingJob:
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
        "verdict": _verdict(job.result),
    }
    if not brief:
        view.update({
            "request": job.request,
            "seed": job.seed,
            "round": job.round,
            # Steps resumed or repaired after a lost worker or message (see count_recovery).
            "recoveries": job.recoveries or 0,
            "data_fingerprint": job.data_fingerprint,
            "data_start": iso(job.data_start),
            "data_end": iso(job.data_end),
            "best_params": job.best_params,
            "deadline_at": job.deadline_at.isoformat() if job.deadline_at else None,
            "result": job.result,
            # how the job went about it: estimated trial time, seconds in the sampler
            "stats": job.stats,
        })
    return view


def _verdict(result: dict | None) -> dict | None:
    """A finished job's stage with its in-sample and out-of-sample Sharpe and trades, named
    as such (None until it finished)."""
    if not result or "lifecycle_stage" not in result:
        return None

    def side(metrics):
        return None if not metrics else {"sharpe_ratio": metrics.get("sharpe_ratio"),
                                         "num_trades": metrics.get("num_trades")}

    return {"stage": result["lifecycle_stage"], "confidence": result.get("confidence"),
            "configuration": result.get("configuration"),
            "in_sample": side(result.get("in_sample")),
            "out_of_sample": side(result.get("out_of_sample"))}


def get_job(settings: Settings, job_id: str) -> dict:
    with session_scope(settings.database_url) as session:
        return _job_view(job_or_404(session, job_id))


MAX_PAGE = 10**9


def page_args(page, per_page) -> tuple[int, int]:
    try:
        page = 1 if page is None else int(page)
        per_page = 50 if per_page is None else int(per_page)
    except (TypeError, ValueError):
        raise InputError("page and per_page must be integers", field="page") from None
    if not 1 <= page <= MAX_PAGE:
        raise InputError(f"page is 1 to {MAX_PAGE:,}", field="page")
    if not 1 <= per_page <= 1000:
        raise InputError("per_page is 1 to 1000", field="per_page")
    return page, per_page


def list_jobs(settings: Settings, status: str | None = None, page=1, per_page=50) -> dict:
    page, per_page = page_args(page, per_page)
    statuses = ("queued", "running", "succeeded", "failed", "cancelled")
    if status is not None and status not in statuses:
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
    page, per_page = page_args(page, per_page)
    if order not in ("number", "value"):
        raise InputError("order is number or value", field="order")
    with session_scope(settings.database_url) as session:
        job_or_404(session, job_id)
        query = select(Trial).where(Trial.job_id == job_id)
        query = query.order_by(Trial.value.desc().nulls_last(), Trial.number) if order == "value" \
            else query.order_by(Trial.number)
        total = session.scalar(select(func.count()).select_from(Trial).where(Trial.job_id == job_id))
        trials = session.scalars(query.offset((page - 1) * per_page).limit(per_page))
        return {"trials": [{"number": t.number, "round": t.round, "params": t.params,
                            "state": t.state, "value": t.value, "metrics": t.metrics,
                            "duration_s": t.duration} for t in trials],
                "page": page, "per_page": per_page, "total": total}


def list_progress_rows(session, job_id: str, after_id: int = 0, limit: int = 500) -> list[dict]:
    rows = session.scalars(select(TrainingProgress).where(
        TrainingProgress.job_id == job_id, TrainingProgress.id > int(after_id or 0))
        .order_by(TrainingProgress.id).limit(max(1, min(int(limit), 5000))))
    return [{"id": p.id, "ts": p.ts.isoformat(), "percentage": p.percentage,
             "step_number": p.step_number, "total_steps": p.total_steps, "stage": p.stage,
             "message": p.message, "best_value": p.best_value} for p in rows]


def list_progress(settings: Settings, job_id: str, after_id: int = 0, limit: int = 500) -> dict:
    with session_scope(settings.database_url) as session:
        job = job_or_404(session, job_id)
        return {"job_id": job_id, "status": job.status,
                "progress": list_progress_rows(session, job_id, after_id, limit)}


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
        job_ended("cancelled", job.started_at, now)
    log.info("job cancelled job_id=%s", job_id)
    return get_job(settings, job_id)
