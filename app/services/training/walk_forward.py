"""Walk-forward jobs: folds as child jobs, each fold's finish, and the stitched record."""
from __future__ import annotations

import json
import logging

import numpy as np
from sqlalchemy import select

from app.backtest.candles import Candles, timeframe_ms
from app.config import Settings
from app.data.timeutil import iso
from app.db import training as repo
from app.db.market_data import load_candles
from app.db.models import TrainingJob
from app.db.session import session_scope
from app.errors import TradError
from app.schemas import TrainingRequest
from app.services.jobs import new_job_id, planned_trials
from app.services.training.context import (
    ChildJob,
    Done,
    Folds,
    JobFailed,
    backtest_config,
    config_name,
    default_params,
    fail_job,
    mark_succeeded,
    params_key,
    request_of,
)
from app.strategies.registry import get_strategy
from app.strategies.runner import run_window
from app.validation.confidence import Thresholds
from app.validation.lookahead import check_lookahead
from app.metrics import job_ended
from app.services.charts import kept_candles, walk_forward_chart
from app.validation.trust import assess_walk_forward

log = logging.getLogger(__name__)


# The stitched out-of-sample equity curve is kept at most this many points.
EQUITY_POINTS = 500


def _fold_marks(folds) -> tuple[int, ...]:
    return tuple(sorted({k for f in folds for k in (f.train_start, f.test_start, f.test_end - 1)}))


def start_walk_forward(settings: Settings, job_id: str, request: TrainingRequest, plan,
                       candles: Candles, data: dict) -> Folds | Done:
    """Plan the folds over the job's bars and create one child job per fold, each
    optimizing on its training window; the folds run in parallel, annualised alike (the
    bars a year measured on the whole series)."""
    from app.validation.walk_forward import plan_folds

    folds = plan_folds(len(candles), plan.folds, plan.train_bars, plan.test_bars, plan.anchored)
    strategy = get_strategy(request.strategy)
    violation = check_lookahead(strategy, candles, default_params(request),
                                marks=_fold_marks(folds))
    if violation is not None:
        raise JobFailed(f"{violation}; fix the strategy before training it")
    step = timeframe_ms(request.timeframe)
    children = []
    with session_scope(settings.database_url) as session:
        parent = repo.lock_job(session, job_id)
        if parent.status != "queued":
            return Done(job_id, parent.status)
        now = repo.utcnow()
        per_fold = planned_trials(request) // len(folds)
        for i, fold in enumerate(folds):
            child_request = request.to_dict() | {
                "validation": None, "run_validation": False, "lookback_days": None,
                "start": int(candles.ts[fold.train_start]),
                "end": int(candles.ts[fold.train_end - 1]) + step,
                "bars_per_year": data["bars_per_year"],
                "seed": (request.seed + 7_919 * (i + 1)) % (2**63)}
            child = TrainingJob(
                id=new_job_id(), status="queued", request=child_request, parent_id=job_id, fold=i,
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
        parent.bars_per_year = data["bars_per_year"]
        parent.result = {"bars": len(candles), "data": data, "folds": [
            {"fold": i, "job_id": c.job_id, "train": [iso(int(candles.ts[f.train_start])),
                                                       iso(int(candles.ts[f.train_end - 1]) + step)],
             "test": [iso(int(candles.ts[f.test_start])), iso(int(candles.ts[f.test_end - 1]) + step)],
             "train_bars": f.train_bars, "test_bars": f.test_bars}
            for i, (c, f) in enumerate(zip(children, folds))]}
        repo.add_progress(session, parent, "running",
                          f"walk-forward: {len(folds)} folds of {folds[0].train_bars} training and "
                          f"{folds[0].test_bars} test bars")
    log.info("walk-forward started job_id=%s folds=%d", job_id, len(folds))
    return Folds(job_id, tuple(children), children[0].priority)


def finish_fold(settings: Settings, job: TrainingJob, request: TrainingRequest, winner,
                in_sample, trust: dict, reasons: list[str]) -> str:
    """A walk-forward fold is done: keep its winner and its search's trust statistics,
    then finish the walk-forward if it was the last fold."""
    now = repo.utcnow()
    with session_scope(settings.database_url) as session:
        child = repo.lock_job(session, job.id)
        if child.status != "running":
            return child.status
        mark_succeeded(child, now, winner.params, winner.value, {
            "best_trial": winner.number, "best_params": winner.params,
            "objective": request.objective, "best_value": winner.value,
            "in_sample": in_sample.metrics, "trust": trust, "reasons": reasons})
        repo.add_progress(session, child, "succeeded",
                          f"fold {child.fold}: best {request.objective}={winner.value or 0.0:.4f}",
                          child.n_trials)
    log.info("fold finished job_id=%s parent=%s fold=%s", job.id, job.parent_id, job.fold)
    maybe_finish_walk_forward(settings, job.parent_id)
    return "succeeded"


def maybe_finish_walk_forward(settings: Settings, parent_id: str) -> None:
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
    except Exception as exc:  # noqa: BLE001 - whatever it is, the job ends failed, not running
        # The claim (round 1) stays: nothing will run this finish again by itself.
        message = str(exc) if isinstance(exc, TradError) else (
            f"the walk-forward's finish failed: {exc.__class__.__name__}: {exc}")
        fail_job(settings, parent_id, message)
        if not isinstance(exc, TradError):
            log.exception("walk-forward finish failed job_id=%s", parent_id)


def _record_metrics(returns: np.ndarray, pnls: list[float], exposed: int, config) -> dict:
    from app.backtest.metrics import compute_metrics

    equity = config.initial_capital * np.cumprod(1.0 + returns)
    return compute_metrics(equity, np.asarray(pnls, dtype=np.float64), exposed,
                           config.initial_capital, config.periods_per_year)


def _finish_walk_forward(settings: Settings, parent_id: str) -> None:
    """Test each fold's winner on the bars after its training window (indicators warm
    from the bars before it), stitch the test windows into one out-of-sample record and
    the fold winners' training runs into one in-sample record, judge them over all folds
    (``assess_walk_forward``), store the latest fold's parameters."""
    from app.validation.walk_forward import plan_folds, stitch

    with session_scope(settings.database_url) as session:
        parent = session.get(TrainingJob, parent_id)
        children = list(session.scalars(select(TrainingJob).where(TrainingJob.parent_id == parent_id)
                                        .order_by(TrainingJob.fold)))
        for c in children:
            session.expunge(c)
        session.expunge(parent)
        candles = load_candles(session, parent.exchange, parent.symbol, parent.timeframe,
                               parent.data_start, parent.data_end)
    if candles.fingerprint != parent.data_fingerprint:
        raise JobFailed("the job's candles changed in the database while it ran (fingerprint "
                        f"{candles.fingerprint[:12]} != {parent.data_fingerprint[:12]}), so its "
                        "folds no longer match its data; resubmit the job")
    request = request_of(parent)
    plan = request.plan
    folds = plan_folds(len(candles), plan.folds, plan.train_bars, plan.test_bars, plan.anchored)
    if len(folds) != len(children):
        raise JobFailed(f"the walk-forward planned {len(children)} folds and its data now gives "
                        f"{len(folds)}; resubmit the job")
    strategy = get_strategy(request.strategy)
    config = backtest_config(request, parent.bars_per_year)
    per_fold, is_parts, oos_parts, times, windows = [], [], [], [], []
    oos_pnls, oos_exposed = [], 0
    violations: dict[str, dict | None] = {}
    for child, fold in zip(children, folds):
        # Both records by the same rule: indicators warm from the bars before the window
        # (where there are any), positions and returns from its first bar.
        trained = run_window(strategy, candles.slice(0, fold.train_end), fold.train_start,
                             child.best_params, config)
        tested = run_window(strategy, candles.slice(0, fold.test_end), fold.test_start,
                            child.best_params, config)
        is_parts.append(trained.returns)
        oos_parts.append(tested.returns)
        times.append(candles.ts[fold.test_start:fold.test_end])
        windows.append((child.fold, candles.ts[fold.test_start:fold.test_end], tested))
        oos_pnls.extend(t.pnl for t in tested.trades)
        oos_exposed += int(np.count_nonzero(tested.position))
        key = json.dumps(child.best_params, sort_keys=True)
        if key not in violations:   # each distinct winner checked once, over every bar
            found = check_lookahead(strategy, candles, child.best_params, marks=_fold_marks(folds))
            violations[key] = None if found is None else {**found.to_dict(), "fold": child.fold}
        per_fold.append({"fold": child.fold, "job_id": child.id, "params": child.best_params,
                         "in_sample": trained.metrics, "out_of_sample": tested.metrics,
                         "trust": child.result["trust"], "reasons": child.result.get("reasons", [])})
    violation = next((v for v in violations.values() if v is not None), None)
    is_returns, oos_returns = stitch(is_parts), stitch(oos_parts)
    # Rolling training windows overlap: the in-sample figures are the folds' average (a
    # record compounded over them would count the same bars again), its trades the
    # fewest a fold's winner made, so each choice had min_trades to stand on.
    is_metrics = {k: float(np.mean([f["in_sample"][k] for f in per_fold]))
                  for k in per_fold[0]["in_sample"]}
    is_metrics["num_trades"] = int(min(f["in_sample"]["num_trades"] for f in per_fold))
    oos = _record_metrics(oos_returns, oos_pnls, oos_exposed, config)
    verdict = assess_walk_forward(
        fold_reports=[f["trust"] for f in per_fold], is_returns=is_returns,
        oos_returns=oos_returns, is_metrics=is_metrics, oos_metrics=oos,
        min_trades=request.min_trades, bars_per_year=config.periods_per_year,
        thresholds=settings.thresholds or Thresholds(), lookahead=violation)
    trust = verdict.report()
    wfe, stage, confidence, reasons = trust["wfe"], verdict.stage, verdict.confidence, verdict.reasons
    thin = [f"fold {f['fold']}: {r}" for f in per_fold for r in f["reasons"]
            if r.startswith("no trial of")]
    if thin:   # a fold whose winner was too thin to trust: the walk-forward is not to be trusted
        rejected = reasons if stage == "REJECTED" else []
        stage, confidence, reasons = "REJECTED", 0.0, thin + rejected
    now = repo.utcnow()
    # The stitched out-of-sample equity curve, at most EQUITY_POINTS points (bar open times).
    equity = config.initial_capital * np.cumprod(1.0 + oos_returns)
    ts = np.concatenate(times)
    keep = np.unique(np.linspace(0, len(ts) - 1, min(EQUITY_POINTS, len(ts))).astype(int))
    curve = [[iso(int(ts[i])), round(float(equity[i]), 6)] for i in keep]
    for f in per_fold:
        f.pop("trust")
        f.pop("reasons")
    last = children[-1]
    walk_forward = {**plan.to_dict(), "wfe": wfe, "folds": per_fold, "reasons": reasons,
                    "stitched_bars": int(oos_returns.size), "equity_curve": curve, **trust,
                    "data": (parent.result or {}).get("data"),
                    "last_fold_in_sample": last.result["in_sample"]}
    with session_scope(settings.database_url) as session:
        config_row = repo.upsert_configuration(session, {
            "name": config_name(strategy.name, strategy.version),
            "strategy_name": strategy.name, "strategy_version": strategy.version,
            "exchange": parent.exchange, "pair": parent.symbol, "timeframe": parent.timeframe,
            "params": last.best_params, "params_key": params_key(last.best_params),
            "objective": request.objective, "in_sample_metrics": is_metrics,
            "out_of_sample_metrics": oos, "validation": walk_forward,
            "net_profit": is_metrics["net_profit"], "sharpe_ratio": is_metrics["sharpe_ratio"],
            "sample_size": is_metrics["num_trades"], "confidence": confidence,
            "lifecycle_stage": stage, "job_id": parent_id,
            "data_fingerprint": parent.data_fingerprint, "created_at": now, "updated_at": now,
        })
        job = repo.lock_job(session, parent_id)
        if job.status != "running":
            return
        repo.save_chart(session, parent_id, {**walk_forward_chart(windows, config.initial_capital),
                                              "candles": kept_candles(candles)})
        job_ended("succeeded", job.started_at, now)
        mark_succeeded(job, now, last.best_params, last.best_value, {
            "configuration": config_row.name, "best_params": last.best_params,
            "objective": request.objective, "best_value": last.best_value,
            "in_sample": is_metrics, "out_of_sample": oos,
            "walk_forward": {"wfe": wfe, "folds": per_fold, "equity_curve": curve},
            "confidence": confidence, "lifecycle_stage": stage, "reasons": reasons,
            "trust": trust})
        repo.add_progress(session, job, "succeeded",
                          f"walk-forward over {len(folds)} folds: OOS Sharpe "
                          f"{oos['sharpe_ratio']:.3f}, WFE {wfe:.2f} -> {config_row.name} ({stage})",
                          job.n_trials)
    log.info("walk-forward succeeded job_id=%s configuration=%s wfe=%.3f stage=%s",
             parent_id, config_row.name, wfe, stage)
