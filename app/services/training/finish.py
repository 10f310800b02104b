"""finish_round and the job's finish (the chord callback): the next round, or the best trial,
its validation, its verdict and the configuration it becomes."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass

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
from app.metrics import SAMPLER_SECONDS, job_ended
from app.services.charts import kept_candles, winner_chart
from app.services.training.context import (
    Done,
    JobFailed,
    Round,
    Wait,
    backtest_config,
    config_name,
    count_recovery,
    job_history,
    mark_succeeded,
    params_key,
    request_of,
    round_of,
)
from app.services.training.plan import draft_round, planned_chunks
from app.services.training.walk_forward import finish_fold
from app.strategies.cache import IndicatorCache
from app.strategies.registry import get_strategy
from app.strategies.runner import run_strategy, run_window, strategy_returns
from app.validation.confidence import Thresholds
from app.validation.lookahead import check_lookahead
from app.validation.pbo import representative_trials
from app.validation.split import holdout_split
from app.validation.trust import aggregate_returns, assess_search

log = logging.getLogger(__name__)


def finish_round(settings: Settings, job_id: str, round_no: int, expected: int,
                 resume: bool = False, asked_s: float = 0.0) -> Round | Wait | Done:
    """After a round's chunks: check every trial is stored, then plan the next round or
    finish the job. Returns the next round to send, ``Wait`` (trials still missing: a
    redelivered chunk is on its way), or ``Done`` with the job's status.

    The next round is asked outside any lock or session (a TPE batch costs 10-40 ms a
    trial) and committed with a compare-and-set on the job's round: a duplicate callback
    asks in vain and sends nothing.

    ``resume``: a redelivery of a finish_round whose worker died after it moved the job on
    (committed round + 1) but before it sent the next round or finished the job: it does
    that step again. Without ``resume`` such a call is a duplicate and does nothing.

    ``asked_s``: what the round's chunks spent asking their parts (core-seconds), added to
    the job's ``stats.sampler_s`` with the callback's own asking time."""
    with session_scope(settings.database_url) as session:
        job = repo.lock_job(session, job_id)
        if job is None or job.status != "running":
            return Done(job_id, job.status if job else "missing")
        request = request_of(job)
        if job.round != round_no:
            if not (resume and job.round == round_no + 1):
                return Done(job_id, job.status)
            if job.dispatched_round is not None and job.dispatched_round >= job.round:
                return Done(job_id, job.status)  # the next round went out before the worker died
            chunks = planned_chunks(job.round_plan, job.round, request, job.n_trials, job.seed)
            count_recovery(session, job, "resuming after a lost worker: "
                           + (f"round {job.round}" if chunks else "finish"))
            if chunks:
                return round_of(job_id, job.round, chunks, job.priority)
            next_round = None
        else:
            stored = repo.round_trials(session, job_id, round_no)
            if stored < expected:
                return Wait(job_id, stored, expected)
            if asked_s:
                _add_sampler_time(job, asked_s)
            next_round = job.optimizer in SEQUENTIAL_OPTIMIZERS and job.trials_done < job.n_trials
            if next_round:
                # Asked in parts, the round's history is read by the parts, not here.
                history = job_history(session, job_id) if request.parts == 1 else []
                first = len(history) if request.parts == 1 else job.trials_done
                state = dict(job.sampler_state or {})
                est = (job.stats or {}).get("est_trial_ms", 1.0) / 1e3
                n_trials, seed, priority = job.n_trials, job.seed, job.priority
            else:
                job.round = round_no + 1  # claims the finish: a duplicate now stops above
                job.updated_at = repo.utcnow()
                repo.add_progress(session, job, "finishing", "validating the best trial")
    if next_round:
        draft = draft_round(request, n_trials, seed, state, round_no + 1, first, history, est)
        with session_scope(settings.database_url) as session:
            job = repo.lock_job(session, job_id)
            if job.status != "running" or job.round != round_no:   # the compare-and-set
                return Done(job_id, job.status)
            job.round = round_no + 1
            job.round_plan = draft.round_plan
            job.sampler_state = draft.sampler_state
            _add_sampler_time(job, draft.sampler_s)
            job.updated_at = repo.utcnow()
            repo.add_progress(session, job, "running",
                              f"round {round_no + 1}: {len(draft.chunks)} chunks")
        return round_of(job_id, round_no + 1, draft.chunks, priority)
    return Done(job_id, finish_job(settings, job_id))


def _add_sampler_time(job: TrainingJob, seconds: float) -> None:
    """``stats.sampler_s``: core-seconds the job spent asking its sampler (the callback's
    asks, and the workers' when a round is asked in parts), kept for the benchmarks."""
    stats = dict(job.stats or {})
    stats["sampler_s"] = round(stats.get("sampler_s", 0.0) + seconds, 6)
    job.stats = stats
    if seconds:
        SAMPLER_SECONDS.labels(job.optimizer).inc(seconds)


PBO_SPLITS = 16


@dataclass(frozen=True)
class Winner:
    """The trial a job ends with: the best valid one, or, when no trial made
    ``min_trades`` trades, the best of all (the job still ran: its configuration is
    stored ``REJECTED`` with that reason)."""

    number: int
    params: dict
    value: float | None
    valid: bool


def _winner(session, job_id: str) -> Winner | None:
    best = repo.best_trial(session, job_id)
    if best is not None:
        return Winner(best.number, dict(best.params), best.value, True)
    top = session.scalars(select(Trial).where(Trial.job_id == job_id)
                          .order_by(Trial.value.desc().nulls_last(), Trial.number).limit(1)).first()
    return None if top is None else Winner(top.number, dict(top.params), top.value, False)


def _tried(session, job_id: str) -> tuple[list[tuple[dict, bool]], int]:
    """The job's distinct parameter sets (a set tried twice, which samplers do in small
    spaces, is one try) and a representative sample of them (``representative_trials``:
    best first, spanning every value the search found, those short of min_trades
    included: they were tried too), as ``((params, made min_trades), ...)``."""
    best: dict[str, tuple[float, dict, bool]] = {}
    for params, value, state in session.execute(
            select(Trial.params, Trial.value, Trial.state).where(Trial.job_id == job_id)):
        key = json.dumps(params, sort_keys=True)
        value = -np.inf if value is None else float(value)
        if key not in best or value > best[key][0]:
            best[key] = (value, dict(params), state == "complete")
    distinct = list(best.values())
    values = np.array([v for v, _, _ in distinct], dtype=np.float64)
    chosen = representative_trials(values) if len(distinct) else []
    return [(distinct[i][1], distinct[i][2]) for i in chosen], len(distinct)


def assess_winner(strategy, candles: Candles, split: int | None, winner: Winner,
                  sample: list[tuple[dict, bool]], n_trials: int, config: BacktestConfig,
                  min_trades: int, thresholds: Thresholds, marks=()) -> tuple:
    """Backtest the winner in sample (bars ``[0, split)``) and out of sample (``[split, n)``
    with its indicators warm from the bars before), check it for lookahead over every
    bar, run the sample of trials for PBO and the effective trials, and judge.
    Returns ``(in_sample, out_of_sample or None, Verdict)``."""
    train = candles if split is None else candles.slice(0, split)
    in_sample = run_strategy(strategy, train, winner.params, config)
    out_of_sample = run_window(strategy, candles, split, winner.params, config) \
        if split is not None else None
    violation = check_lookahead(strategy, candles, winner.params, marks=marks)
    cache = IndicatorCache(train)
    columns = [aggregate_returns(strategy_returns(strategy, train, p, config, cache))
               for p, _ in sample]
    verdict = assess_search(
        best_returns=in_sample.returns, sample_returns=np.column_stack(columns) if columns
        else in_sample.returns[:, None], n_trials=n_trials, is_metrics=in_sample.metrics,
        oos_returns=None if out_of_sample is None else out_of_sample.returns,
        oos_metrics=None if out_of_sample is None else out_of_sample.metrics,
        min_trades=min_trades, thresholds=thresholds,
        lookahead=None if violation is None else violation.to_dict(), pbo_splits=PBO_SPLITS,
        choosable=[valid for _, valid in sample] if columns else None)
    return in_sample, out_of_sample, verdict


def _thin_reason(session, job_id: str, min_trades: int, n_trials: int) -> str:
    most = session.scalar(select(func.max(Trial.metrics["num_trades"].as_float()))
                          .where(Trial.job_id == job_id))
    return (f"no trial of {n_trials} made min_trades={min_trades} trades (the most was "
            f"{int(most or 0)}): lower min_trades, widen the data range or the search space")


def finish_job(settings: Settings, job_id: str) -> str:
    """The best trial becomes a configuration with its verdict (``app.validation.trust``);
    a job that ran always ends ``succeeded`` with one, ``REJECTED`` when too thin to trust."""
    with session_scope(settings.database_url) as session:
        job = session.get(TrainingJob, job_id)
        request = request_of(job)
        winner = _winner(session, job_id)
        if winner is None:
            raise JobFailed("the job has no trials to choose from")
        n_runs = int(session.scalar(select(func.count()).select_from(Trial)
                                    .where(Trial.job_id == job_id)))
        sample, n_trials = _tried(session, job_id)
        thin = None if winner.valid else _thin_reason(session, job_id, request.min_trades, n_runs)
        session.expunge(job)
    with session_scope(settings.database_url) as session:
        candles = load_candles(session, job.exchange, job.symbol, job.timeframe,
                               job.data_start, job.data_end)
    strategy = get_strategy(request.strategy)
    config = backtest_config(request, job.bars_per_year)
    plan = request.plan
    split = holdout_split(len(candles), plan.test_fraction) if plan.method == "holdout" else None
    trained_on = candles if split is None else candles.slice(0, split)
    if trained_on.fingerprint != job.data_fingerprint:
        # A refresh filled a hole inside the job's range: the split moved, the trials' bars
        # are not these. Judging them on other bars would be wrong.
        raise JobFailed("the job's candles changed in the database while it ran (fingerprint "
                        f"{trained_on.fingerprint[:12]} != {job.data_fingerprint[:12]}); "
                        "resubmit the job")
    in_sample, out_of_sample, verdict = assess_winner(
        strategy, candles, split, winner, sample, n_trials, config, request.min_trades,
        settings.thresholds or Thresholds(), marks=() if split is None else (split,))
    reasons = ([thin] if thin else []) + verdict.reasons
    trust = {**verdict.report(), "runs": n_runs}
    if job.parent_id:
        return finish_fold(settings, job, request, winner, in_sample, trust, reasons)
    now = repo.utcnow()
    oos_metrics = out_of_sample.metrics if out_of_sample else None
    data = (job.result or {}).get("data")
    with session_scope(settings.database_url) as session:
        config_row = repo.upsert_configuration(session, {
            "name": config_name(strategy.name, strategy.version),
            "strategy_name": strategy.name, "strategy_version": strategy.version,
            "exchange": job.exchange, "pair": job.symbol, "timeframe": job.timeframe,
            "params": winner.params, "params_key": params_key(winner.params),
            "objective": request.objective,
            "in_sample_metrics": in_sample.metrics,
            "out_of_sample_metrics": oos_metrics,
            "validation": {**plan.to_dict(), "reasons": reasons, **trust, "data": data,
                           "train_bars": len(in_sample.returns),
                           "test_bars": len(out_of_sample.returns) if out_of_sample else 0},
            "net_profit": in_sample.metrics["net_profit"],
            "sharpe_ratio": in_sample.metrics["sharpe_ratio"],
            "sample_size": in_sample.metrics["num_trades"],
            "confidence": verdict.confidence, "lifecycle_stage": verdict.stage, "job_id": job_id,
            "data_fingerprint": job.data_fingerprint, "created_at": now, "updated_at": now,
        })
        job = repo.lock_job(session, job_id)
        if job.status != "running":
            return job.status
        repo.save_chart(session, job_id, {**winner_chart(
            trained_on.ts, in_sample, None if split is None else candles.ts[split:],
            out_of_sample, config.initial_capital), "candles": kept_candles(candles)})
        job_ended("succeeded", job.started_at, now)
        mark_succeeded(job, now, winner.params, winner.value, {
            "configuration": config_row.name, "best_trial": winner.number,
            "best_params": winner.params, "objective": request.objective,
            "best_value": winner.value, "in_sample": in_sample.metrics,
            "out_of_sample": oos_metrics, "confidence": verdict.confidence,
            "lifecycle_stage": verdict.stage, "reasons": reasons, "trust": trust})
        repo.add_progress(session, job, "succeeded",
                          f"best {request.objective}={winner.value or 0.0:.4f} -> "
                          f"{config_row.name} ({verdict.stage})", job.n_trials)
    log.info("job succeeded job_id=%s configuration=%s value=%.4f stage=%s confidence=%.3f",
             job_id, config_row.name, winner.value or 0.0, verdict.stage, verdict.confidence)
    return "succeeded"
