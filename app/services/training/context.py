"""What every step of a job shares: its request and backtest config, its trials as the sampler
sees them, recovery accounting and the ways a job ends (failed, succeeded)."""
from __future__ import annotations

import hashlib
import json
import logging
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass

from sqlalchemy import select

from app.metrics import RECOVERIES, job_ended
from app.backtest.candles import periods_per_year, timeframe_ms
from app.backtest.engine import BacktestConfig
from app.config import Settings
from app.db import training as repo
from app.db.market_data import last_timestamp
from app.db.models import TrainingJob
from app.db.session import session_scope
from app.errors import TradError
from app.optimize.rounds import PastTrial
from app.schemas import TrainingRequest, stored_request

log = logging.getLogger(__name__)

FINISH_RETRIES = 30


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


@dataclass(frozen=True)
class ChildJob:
    """A walk-forward fold, started as a job of its own."""

    job_id: str
    priority: int


# What a step of a job asks the pipeline to do next (start_job, finish_round return one).


@dataclass(frozen=True)
class Round:
    """Send ``chunks`` as round ``number`` (a chord whose callback expects ``expected``
    trials: more than the chunks hold when they are only a round's missing part)."""

    job_id: str
    number: int
    chunks: tuple[Chunk, ...]
    priority: int
    expected: int


@dataclass(frozen=True)
class Folds:
    """Start each fold of a walk-forward as a job of its own."""

    job_id: str
    folds: tuple[ChildJob, ...]
    priority: int


@dataclass(frozen=True)
class Done:
    """Nothing to send: the job is ``status`` (succeeded, failed, cancelled, or running
    elsewhere: a duplicate message found the work done)."""

    job_id: str
    status: str


@dataclass(frozen=True)
class Wait:
    """The round's trials are not all stored yet (a redelivered chunk is on its way):
    call finish_round again in a moment."""

    job_id: str
    stored: int
    expected: int


def round_of(job_id: str, number: int, chunks, priority: int, expected: int | None = None) -> Round:
    chunks = tuple(chunks)
    return Round(job_id, number, chunks, priority,
                 sum(len(c.numbers) for c in chunks) if expected is None else expected)


def request_of(job: TrainingJob) -> TrainingRequest:
    """The job's request as stored, checked again by the request model."""
    return stored_request(job.request)


def backtest_config(request: TrainingRequest, bars_per_year: float | None) -> BacktestConfig:
    """The job's costs, annualised with the bars a year it resolved at start (a job from
    before calendars were measured: the timeframe's 24/7 count)."""
    return BacktestConfig(fee=request.fee, slippage_bps=request.slippage_bps,
                          periods_per_year=bars_per_year or periods_per_year(request.timeframe))


def default_params(request: TrainingRequest) -> dict:
    """The search space's defaults: the parameters the start-of-job lookahead check runs."""
    space = request.space()
    return space.complete({p.name: p.default for p in space.free})


def series_data(session, exchange: str, symbol: str, timeframe: str, candles,
                asked_bars_per_year: float | None) -> dict:
    """What a job's result says of its data: bars, calendar, bars a year and where that
    number came from, synthetic or not (``app.validation.calendars``)."""
    from app.db.market_data import series_meta
    from app.validation.calendars import calendar_for, resolve_bars_per_year

    from app.db.market_data import load_timestamps

    meta = series_meta(session, exchange, symbol, timeframe)
    # Measured over the whole stored series, as `trad data list` shows it, not the window.
    whole = load_timestamps(session, exchange, symbol, timeframe)
    calendar = calendar_for(exchange, whole, timeframe, meta.calendar)
    bpy = resolve_bars_per_year(whole, timeframe, request=asked_bars_per_year,
                                series=meta.bars_per_year, calendar=calendar)
    from app.data.timeutil import iso

    return {"bars": len(candles), "first": iso(int(candles.ts[0])), "last": iso(int(candles.ts[-1])),
            "calendar": calendar, "bars_per_year": bpy.value,
            "bars_per_year_source": bpy.source, "synthetic": meta.synthetic}


# What the sampler is told for a trial with fewer than min_trades trades. Samplers rank
# (TPE splits by quantile, CMA-ES and NSGA-II sort), so one very low constant sends the
# search away from such regions without bending the scale of the valid values.
REJECTED_VALUE = -1e9


# Per process, the histories last read (job id -> its trials 0..k-1): a stored trial never
# changes (written once, ON CONFLICT DO NOTHING), so a round reads only the trials stored
# since, not the whole job again (a 2,000-trial bayesian job spent a third of its time
# reading and decoding its history, every round).
_HISTORIES: OrderedDict[str, list[PastTrial]] = OrderedDict()
_HISTORIES_KEPT = 16
_histories_lock = threading.Lock()


def job_history(session, job_id: str, before: int | None = None) -> list[PastTrial]:
    """The job's stored trials as its sampler sees them, in number order (those below
    ``before`` if given)."""
    with _histories_lock:
        known = _HISTORIES.get(job_id, [])
    if before is not None and before <= len(known):
        return known[:before]
    new = [PastTrial(t.number, t.params,
                     t.value if t.state == "complete" else
                     REJECTED_VALUE if t.state == "rejected" else None,
                     t.system_attrs or {})
           for t in repo.finished_trials(session, job_id, before, since=len(known))]
    history = known + new
    # Only an unbroken run 0..k-1 is kept (a round whose trials are still arriving has gaps).
    kept = len(known)
    while kept < len(history) and history[kept].number == kept:
        kept += 1
    if kept > len(known):
        with _histories_lock:
            _HISTORIES[job_id] = history[:kept]
            _HISTORIES.move_to_end(job_id)
            while len(_HISTORIES) > _HISTORIES_KEPT:
                _HISTORIES.popitem(last=False)
    return history


# A control task (start_job, finish_round) redelivered after its worker died resumes the job
# at most this many times; a step that kills its worker every time fails the job instead.
MAX_RECOVERIES = 3


def count_recovery(session, job: TrainingJob, what: str) -> None:
    job.recoveries = (job.recoveries or 0) + 1
    RECOVERIES.labels("watchdog_repair" if what.startswith("stalled") else "resumed").inc()
    if job.recoveries > MAX_RECOVERIES:
        raise JobFailed(f"the worker running this job was lost {MAX_RECOVERIES} times in the middle "
                        f"of a step (killed, out of memory, or past TRAD_TASK_HARD_LIMIT_S); "
                        "resubmit it with fewer trials or a shorter range, or raise the limit")
    job.updated_at = repo.utcnow()
    repo.add_progress(session, job, "running", what)
    log.warning("job resumed job_id=%s step=%r recoveries=%d", job.id, what, job.recoveries)


def is_walk_forward(job: TrainingJob, request: TrainingRequest) -> bool:
    """A walk-forward's parent job (its folds are child jobs with their own rounds)."""
    return job.parent_id is None and request.plan.method == "walk_forward"


def fold_jobs(session, parent_id: str) -> list[TrainingJob]:
    return list(session.scalars(select(TrainingJob).where(TrainingJob.parent_id == parent_id)
                                .order_by(TrainingJob.fold)))


def params_key(params: dict) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:32]


def config_name(strategy: str, version: int) -> str:
    now = repo.utcnow()
    return f"{strategy}_V{version}_{now:%Y%m%d_%H%M%S}_{secrets.token_hex(3)}"


def mark_succeeded(job: TrainingJob, now, best_params: dict, best_value: float,
                    result: dict) -> None:
    job.status = "succeeded"
    job.finished_at = now
    job.updated_at = now
    job.best_params = best_params
    job.best_value = best_value
    job.result = {**(job.result or {}), **result}


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
        if parent_id is None:   # a fold's failure is counted as its parent's
            job_ended("failed", job.started_at, now, message)
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


def data_range(session, request: TrainingRequest) -> tuple[int, int]:
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
