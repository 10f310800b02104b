"""run_trials (the workers' trials queue): one chunk of backtests, written idempotently."""
from __future__ import annotations

import json
import time

from sqlalchemy import update

from app.config import Settings
from app.db import training as repo
from app.db.models import TrainingJob
from app.db.session import session_scope
from app.metrics import CHUNK_SECONDS, CHUNKS, TRIAL_SECONDS, TRIALS
from app.optimize.objectives import get_objective
from app.optimize.rounds import ask_round
from app.schemas import TrainingRequest
from app.services.training.candle_cache import load_job_candles
from app.services.training.context import (
    Chunk,
    JobFailed,
    backtest_config,
    job_history,
    request_of,
)
from app.strategies.registry import get_strategy
from app.strategies.runner import score_batch


def run_chunk(settings: Settings, job_id: str, round_no: int, chunk: Chunk) -> dict:
    """Backtest a chunk and store its trials. Skips work for a job no longer running;
    rows already stored (a redelivered chunk) are not written or counted again."""
    with session_scope(settings.database_url) as session:
        job = session.get(TrainingJob, job_id)
        if job is None or job.status != "running" or job.cancel_requested:
            return {"job_id": job_id, "skipped": True, "inserted": 0}
        session.expunge(job)
    request = request_of(job)
    started = time.perf_counter()
    ask_s = None
    if chunk.ask is not None:
        t0 = time.perf_counter()
        chunk = asked_part(settings, job, request, round_no, chunk)
        ask_s = round(time.perf_counter() - t0, 4)
    candles, cache = load_job_candles(settings, job)
    strategy = get_strategy(request.strategy)
    config = backtest_config(request, job.bars_per_year)
    objective = get_objective(request.objective)
    trials = list(zip(chunk.numbers, chunk.params, chunk.system_attrs))

    def failed(index: int, exc: Exception) -> None:
        # The strategy's own bug: say which strategy, which parameters, what it raised.
        number, params, _ = trials[index]
        CHUNKS.labels(request.strategy, request.optimizer, "failed").inc()
        raise JobFailed(f"strategy {strategy.name} failed on trial {number} with params "
                        f"{json.dumps(params)}: {exc.__class__.__name__}: {exc}") from exc

    # Positions trial by trial (so a strategy's exception names its trial), the simulation
    # a block of trials per compiled call; a trial's duration is its block's time divided
    # evenly among the block's trials (one call ran them all).
    durations: list[float] = []
    scored = score_batch(strategy, candles, [params for _, params, _ in trials], config, cache,
                         on_error=failed, durations=durations)
    rows = []
    for (number, params, attrs), metrics, duration in zip(trials, scored, durations):
        value = objective(metrics)
        valid = metrics["num_trades"] >= request.min_trades
        rows.append({"number": number, "params": params, "state": "complete" if valid else "rejected",
                     "value": value, "metrics": metrics, "duration": duration,
                     "system_attrs": attrs})
    with session_scope(settings.database_url) as session:
        inserted = repo.insert_trials(session, job_id, round_no, rows)
        job = session.get(TrainingJob, job_id)
        repo.add_progress(session, job, "trials", f"round {round_no}: {inserted} trials stored")
        if job.parent_id and inserted:
            session.execute(update(TrainingJob).where(TrainingJob.id == job.parent_id).values(
                trials_done=TrainingJob.trials_done + inserted, updated_at=repo.utcnow()))
    _count(request, rows, inserted, time.perf_counter() - started)
    best = max((r["value"] for r in rows if r["state"] == "complete"), default=None)
    out = {"job_id": job_id, "round": round_no, "inserted": inserted, "best": best}
    if ask_s is not None:
        out["ask_s"] = ask_s  # this part's sampler time (history load included)
    return out


def _count(request: TrainingRequest, rows: list[dict], inserted: int, seconds: float) -> None:
    """The chunk in the metrics (its parts' asking time is counted by the round's finish,
    with the job's stats.sampler_s)."""
    labels = (request.strategy, request.optimizer)
    TRIALS.labels(*labels).inc(inserted)
    CHUNKS.labels(*labels, "ok").inc()
    CHUNK_SECONDS.labels(*labels).observe(seconds)
    if rows:
        # The chunk's mean: one observation a chunk, not a trial (a trial can take 10 us).
        TRIAL_SECONDS.labels(request.strategy).observe(sum(r["duration"] for r in rows) / len(rows))


def asked_part(settings: Settings, job: TrainingJob, request: TrainingRequest, round_no: int,
           chunk: Chunk) -> Chunk:
    """The chunk with its part of the round asked: from every trial numbered below the
    round's first (all stored before the round went out, so the same history, the same
    parameters, on whichever worker and however often the chunk runs)."""
    with session_scope(settings.database_url) as session:
        history = job_history(session, job.id, before=chunk.ask["first"])
    asked, _ = ask_round(request.space(), request.optimizer, job.seed, round_no,
                         len(chunk.numbers), history, job.sampler_state or {},
                         part=chunk.ask["part"], round_size=chunk.ask["batch"])
    return Chunk(chunk.numbers, [a.params for a in asked], [a.system_attrs for a in asked])
