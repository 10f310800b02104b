"""finish_round and the job's finish (the chord callback): the next round, or the best trial,
its validation, its verdict and the configuration it becomes."""
from __future__ import annotations

import json
import logging
import time

import numpy as np
from sqlalchemy import func, select

from app.backtest.candles import Candles
from app.backtest.engine import BacktestConfig
from app.config import Settings
from app.db import training as repo
from app.db.market_data import load_candles
from app.db.models import (
    TrainingJob,
    Trial,
)
from app.db.session import session_scope
from app.optimize.rounds import SEQUENTIAL_OPTIMIZERS
from app.services.training.context import (
    JobFailed,
    backtest_config,
    config_name,
    count_recovery,
    job_history,
    mark_succeeded,
    params_key,
    request_of,
)
from app.services.training.plan import plan_round, planned_chunks
from app.services.training.walk_forward import finish_fold
from app.strategies.cache import IndicatorCache
from app.strategies.registry import get_strategy
from app.strategies.runner import run_strategy, strategy_returns
from app.validation.confidence import Thresholds, confidence_and_stage
from app.validation.lookahead import check_lookahead
from app.validation.pbo import probability_of_backtest_overfitting
from app.validation.sharpe_stats import deflated_sharpe_ratio
from app.validation.split import holdout_split, parse_validation

log = logging.getLogger(__name__)


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
            chunks = planned_chunks(job, request_of(job))
            count_recovery(session, job, "resuming after a lost worker: "
                            + (f"round {job.round}" if chunks else "finish"))
            if chunks:
                return {"next": chunks, "round": job.round}
        else:
            outcome = _finish_round_locked(settings, session, job, round_no, expected, asked_s)
            if outcome is not None:
                return outcome
    return {"done": finish_job(settings, job_id)}


def _finish_round_locked(settings: Settings, session, job: TrainingJob, round_no: int,
                         expected: int, asked_s: float = 0.0) -> dict | None:
    """finish_round with the job locked; None when the job is to be finished."""
    job_id = job.id
    stored = repo.round_trials(session, job_id, round_no)
    if stored < expected:
        return {"retry": True, "stored": stored, "expected": expected}
    request = request_of(job)
    if asked_s:
        _add_sampler_time(job, asked_s)
    if job.optimizer in SEQUENTIAL_OPTIMIZERS and job.trials_done < job.n_trials:
        # Asked in parts, the round's history is read by the parts, not here.
        history = job_history(session, job_id) if request.parts == 1 else []
        first = len(history) if request.parts == 1 else job.trials_done
        est = (job.result or {}).get("est_trial_ms", 1.0) / 1e3
        t0 = time.perf_counter()
        chunks, state = plan_round(settings, job, request, round_no + 1, first, history, est)
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


def finish_job(settings: Settings, job_id: str) -> str:
    with session_scope(settings.database_url) as session:
        job = session.get(TrainingJob, job_id)
        best = repo.best_trial(session, job_id)
        request = request_of(job)
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
    config = backtest_config(request)
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
        return finish_fold(settings, job, request, best_params, best_value, best_number,
                            in_sample, trust, len(train))
    with session_scope(settings.database_url) as session:
        config_row = repo.upsert_configuration(session, {
            "name": config_name(strategy.name, strategy.version),
            "strategy_name": strategy.name, "strategy_version": strategy.version,
            "exchange": job.exchange, "pair": job.symbol, "timeframe": job.timeframe,
            "params": best_params, "params_key": params_key(best_params),
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
        mark_succeeded(job, now, best_params, best_value, {
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
