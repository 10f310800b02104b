"""What the research pages read: a job's winner chart, trades, candles, and its trials as
the search plots draw them, each cut down on the server (``app.services.charts``)."""
from __future__ import annotations

import numpy as np
from sqlalchemy import func, select

from app.config import Settings
from app.db.models import MarketData, TrainedConfiguration, TrainingChart, TrainingJob, Trial
from app.db.session import session_scope
from app.errors import InputError
from app.services import charts
from app.services.jobs import NotFound, job_or_404, page_args

__all__ = ["job_chart", "job_trades", "job_candles", "job_trials_plot", "job_importance",
           "configuration_job", "MAX_POINTS", "MAX_PLOT_TRIALS"]

MAX_POINTS = charts.KEEP_POINTS
# The trials the search plots read (the best tenth and the rest evenly over the numbers).
MAX_PLOT_TRIALS = 5000
# A sample of this many trials is plenty for a ranking and answers in well under a second.
IMPORTANCE_TRIALS = 2000


def points_arg(points, default: int, most: int) -> int:
    try:
        points = default if points is None else int(points)
    except (TypeError, ValueError):
        raise InputError("points must be a whole number", field="points") from None
    if not 16 <= points <= most:
        raise InputError(f"points is 16 to {most:,}", field="points")
    return points


def configuration_job(settings: Settings, name: str) -> str:
    """The job that trained a configuration last (its charts are that job's)."""
    with session_scope(settings.database_url) as session:
        job_id = session.scalar(select(TrainedConfiguration.job_id)
                                .where(TrainedConfiguration.name == name))
        if job_id is None:
            raise NotFound(f"no configuration {name!r}", field="name")
        return job_id


def _chart_body(session, job_id: str) -> dict:
    job = job_or_404(session, job_id)
    row = session.get(TrainingChart, job_id)
    if row is None:
        raise NotFound(f"job {job_id!r} has no chart: it is {job.status}"
                       + ("" if job.status == "succeeded" else "; a chart comes with its finish")
                       + (" (it finished before charts were kept: run it again)"
                          if job.status == "succeeded" else ""), field="job_id")
    return row.body


def job_chart(settings: Settings, job_id: str, points=None) -> dict:
    """The winner's equity and drawdown, in and out of sample (or a walk-forward's folds),
    at most ``points`` points, with where each segment starts."""
    points = points_arg(points, 1500, MAX_POINTS)
    with session_scope(settings.database_url) as session:
        return {"job_id": job_id, **charts.reduce_chart(_chart_body(session, job_id), points)}


def job_trades(settings: Settings, job_id: str, page=1, per_page=500) -> dict:
    page, per_page = page_args(page, per_page)
    with session_scope(settings.database_url) as session:
        body = _chart_body(session, job_id)
    trades = body.get("trades") or []
    start = (page - 1) * per_page
    return {"job_id": job_id, "trades": trades[start:start + per_page], "page": page,
            "per_page": per_page, "total": len(trades),
            "trades_total": body.get("trades_total", len(trades))}


def job_candles(settings: Settings, job_id: str, points=None) -> dict:
    """The job's candles, merged into at most ``points`` bars of ``k`` times its timeframe
    (the database merges them: a million candles answer with ``points`` rows)."""
    from app.backtest.candles import timeframe_ms

    points = points_arg(points, 2000, 20_000)
    with session_scope(settings.database_url) as session:
        job = job_or_404(session, job_id)
        m = MarketData
        cond = [m.exchange == job.exchange, m.symbol == job.symbol, m.timeframe == job.timeframe]
        if job.data_start is not None:
            cond.append(m.ts >= job.data_start)
        if job.data_end is not None:
            cond.append(m.ts <= job.data_end)
        meta = {"job_id": job_id, "exchange": job.exchange, "symbol": job.symbol,
                "timeframe": job.timeframe}
        chart = session.get(TrainingChart, job_id)
        kept = (chart.body or {}).get("candles") if chart is not None else None
        if kept and (kept["bars_per_point"] == 1 or len(kept["t"]) >= points):
            return {**meta, **charts.merge_kept(kept, points)}
        n, first, last = session.execute(select(func.count(), func.min(m.ts), func.max(m.ts))
                                          .where(*cond)).one()
        if not n:
            return {**meta, **charts.bucket_candles([], [], [], [], [], [], points)}
        step = timeframe_ms(job.timeframe)
        k = max(1, -(-int(n) // points))
        # Buckets by time, k bars wide (a gap leaves a bucket short, never merges across
        # more time than k bars span); widened until they fit.
        while (int(last) - int(first)) // (k * step) + 1 > points:
            k += max(1, k // 8)
        if k == 1:
            rows = session.execute(select(m.ts, m.open, m.high, m.low, m.close, m.volume)
                                   .where(*cond).order_by(m.ts)).all()
            cols = np.array(rows, dtype=np.float64).T
            return {**meta, **charts.bucket_candles(cols[0].astype(np.int64), *cols[1:], points)}
        bucket = ((m.ts - int(first)) // (k * step)).label("b")
        agg = session.execute(
            select(func.min(m.ts), func.max(m.ts), func.max(m.high), func.min(m.low),
                   func.sum(m.volume)).where(*cond).group_by(bucket).order_by(func.min(m.ts))).all()
        # Each bucket's open and close by the primary key (a join back plans badly).
        firsts = [int(r[0]) for r in agg]
        lasts = [int(r[1]) for r in agg]
        opens = dict(session.execute(select(m.ts, m.open).where(*cond, m.ts.in_(firsts))).all())
        closes = dict(session.execute(select(m.ts, m.close).where(*cond, m.ts.in_(lasts))).all())
        rows = [(t0, opens[t0], r[2], r[3], closes[t1], r[4])
                for t0, t1, r in zip(firsts, lasts, agg)]
    cols = np.array(rows, dtype=np.float64).T
    return {**meta, "t": cols[0].astype(np.int64).tolist(), "open": cols[1].tolist(),
            "high": cols[2].tolist(), "low": cols[3].tolist(), "close": cols[4].tolist(),
            "volume": cols[5].tolist(), "bars_per_point": int(k), "bars": int(n)}


def _trial_arrays(session, job_id: str, limit: int | None = None):
    query = select(Trial.number, Trial.value, Trial.params).where(Trial.job_id == job_id)
    total = int(session.scalar(select(func.count()).select_from(Trial)
                               .where(Trial.job_id == job_id)) or 0)
    if limit is not None and total > limit:
        # Every k-th trial by number, read by the database, not here.
        query = query.where(Trial.number % (-(-total // limit)) == 0)
    rows = session.execute(query.order_by(Trial.number)).all()
    numbers = np.array([r[0] for r in rows], dtype=np.int64)
    values = np.array([np.nan if r[1] is None else r[1] for r in rows], dtype=np.float64)
    return numbers, values, [r[2] for r in rows], total


def _maximize(job: TrainingJob) -> bool:
    return True  # every objective is larger-is-better (app.optimize.objectives)


def job_trials_plot(settings: Settings, job_id: str, points=None) -> dict:
    """The best value so far over the trials (every change of it), and a sample of at most
    ``points`` trials (numbers, values, params) for the scatter, slice and heatmap plots."""
    points = points_arg(points, 2000, MAX_PLOT_TRIALS)
    with session_scope(settings.database_url) as session:
        job = job_or_404(session, job_id)
        maximize = _maximize(job)
        best = _best_so_far(session, job_id, maximize)
        numbers, values, params, total = _trial_arrays(session, job_id, limit=points)
        top = session.execute(
            select(Trial.number, Trial.value, Trial.params)
            .where(Trial.job_id == job_id, Trial.value.is_not(None))
            .order_by(Trial.value.desc() if maximize else Trial.value.asc(), Trial.number)
            .limit(max(1, points // 10))).all()
        objective = job.objective
    seen = set(numbers.tolist())
    extra = [r for r in top if r[0] not in seen]
    if extra:
        numbers = np.concatenate([numbers, np.array([r[0] for r in extra], dtype=np.int64)])
        values = np.concatenate([values, np.array([r[1] for r in extra], dtype=np.float64)])
        params = params + [r[2] for r in extra]
    plot = charts.trials_plot(numbers, values, params, maximize, points)
    plot["best_so_far"] = best
    plot["trials"] = total
    return {"job_id": job_id, "objective": objective, "maximize": maximize, **plot}


def _best_so_far(session, job_id: str, maximize: bool) -> dict:
    """Every trial where the best value so far changed, found by the database (a window
    over the trials by number), so 100,000 trials answer with a few dozen rows."""
    value = func.coalesce(Trial.value, -1e308 if maximize else 1e308)
    running = (func.max(value) if maximize else func.min(value)).over(order_by=Trial.number)
    inner = select(Trial.number.label("number"), value.label("value"),
                   running.label("best")).where(Trial.job_id == job_id).subquery()
    rows = session.execute(select(inner.c.number, inner.c.best)
                           .where(inner.c.value == inner.c.best)
                           .order_by(inner.c.number)).all()
    last = session.scalar(select(func.max(Trial.number)).where(Trial.job_id == job_id))
    out = {"number": [], "value": []}
    current = None
    for number, best in rows:
        if best in (1e308, -1e308) or best == current:
            continue
        current = best
        out["number"].append(int(number))
        out["value"].append(float(best))
    if last is not None and out["number"] and out["number"][-1] != last:
        out["number"].append(int(last))
        out["value"].append(out["value"][-1])
    return out


def job_importance(settings: Settings, job_id: str) -> dict:
    """Each parameter's importance to the objective, largest first: optuna's PED-ANOVA
    evaluator (Watanabe et al. 2023: how much each parameter's distribution among the best
    trials differs from all of them; numpy and scipy only, no scikit-learn) over a sample
    of the job's trials."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    with session_scope(settings.database_url) as session:
        job = job_or_404(session, job_id)
        maximize = _maximize(job)
        numbers, values, params, total = _trial_arrays(session, job_id, limit=IMPORTANCE_TRIALS)
        strategy_name = job.strategy
    from app.strategies.registry import get_strategy

    keep = [i for i in range(len(numbers)) if np.isfinite(values[i]) and params[i]]
    base = {"job_id": job_id, "trials": total, "used": len(keep)}
    if len(keep) < 8:
        return {**base, "importance": {}, "note": "too few finished trials to rank parameters"}
    distributions = _distributions(get_strategy(strategy_name), [params[i] for i in keep],
                                   CategoricalDistribution, FloatDistribution, IntDistribution)
    if not distributions:
        return {**base, "importance": {}, "note": "no parameter varies across the trials"}
    from app.optimize.rounds import _quiet_optuna

    optuna = _quiet_optuna()
    study = optuna.create_study(direction="maximize" if maximize else "minimize")
    study.add_trials([optuna.trial.create_trial(
        params={k: params[i][k] for k in distributions},
        distributions=distributions, value=float(values[i])) for i in keep])
    importance = optuna.importance.get_param_importances(
        study, evaluator=optuna.importance.PedAnovaImportanceEvaluator())
    return {**base, "importance": {k: float(v) for k, v in importance.items()}}


def _distributions(strategy, params: list[dict], categorical, floating, integer) -> dict:
    """optuna distributions of the parameters that vary across these trials, their bounds
    what the trials span (a fixed parameter has no importance to rank)."""
    out = {}
    for name in params[0]:
        seen = [p.get(name) for p in params if name in p]
        if len({repr(v) for v in seen}) < 2:
            continue
        if all(isinstance(v, bool) or isinstance(v, str) for v in seen):
            out[name] = categorical(sorted({v for v in seen}, key=repr))
        elif all(isinstance(v, int) and not isinstance(v, bool) for v in seen):
            out[name] = integer(min(seen), max(seen))
        elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in seen):
            out[name] = floating(float(min(seen)), float(max(seen)))
    return out


def require_job(settings: Settings, job_id: str) -> None:
    with session_scope(settings.database_url) as session:
        job_or_404(session, job_id)


class EventFeed:
    """What changed since the last look: jobs and configurations by ``updated_at`` (the
    first look sends the newest ``SNAPSHOT`` of each, so a page needs no other call), or,
    for one job, its view and its new progress rows."""

    SNAPSHOT = 50

    def __init__(self, settings: Settings, job_id: str | None = None):
        self.settings, self.job_id = settings, job_id
        self.seen_jobs: dict[str, object] = {}
        self.seen_configs: dict[str, object] = {}
        self.since = None
        self.progress_after = 0

    def poll(self) -> list[tuple[str, dict]]:
        from app.services.configurations import _config_view
        from app.services.jobs import _job_view

        out = []
        with session_scope(self.settings.database_url) as session:
            if self.job_id is not None:
                job = job_or_404(session, self.job_id)
                if self.seen_jobs.get(job.id) != job.updated_at:
                    self.seen_jobs[job.id] = job.updated_at
                    out.append(("job", _job_view(job)))
                from app.services.jobs import list_progress_rows

                rows = list_progress_rows(session, self.job_id, self.progress_after)
                if rows:
                    self.progress_after = rows[-1]["id"]
                    out.append(("progress", {"job_id": self.job_id, "progress": rows}))
                return out
            jobs_q = select(TrainingJob).where(TrainingJob.parent_id.is_(None))
            configs_q = select(TrainedConfiguration)
            if self.since is None:
                jobs = list(session.scalars(jobs_q.order_by(TrainingJob.created_at.desc())
                                            .limit(self.SNAPSHOT)))
                configs = list(session.scalars(configs_q.order_by(
                    TrainedConfiguration.updated_at.desc()).limit(self.SNAPSHOT)))
            else:
                # ">=": rows written in the same instant as the last look are read again
                # and dropped below by their (id, updated_at), never missed.
                jobs = list(session.scalars(jobs_q.where(TrainingJob.updated_at >= self.since)))
                configs = list(session.scalars(configs_q.where(
                    TrainedConfiguration.updated_at >= self.since)))
            first = self.since is None
            changed_jobs = [j for j in jobs if self.seen_jobs.get(j.id) != j.updated_at]
            changed_configs = [c for c in configs if self.seen_configs.get(c.name) != c.updated_at]
            for j in changed_jobs:
                self.seen_jobs[j.id] = j.updated_at
            for c in changed_configs:
                self.seen_configs[c.name] = c.updated_at
            stamps = [j.updated_at for j in jobs] + [c.updated_at for c in configs]
            if stamps:
                self.since = max([s for s in stamps if s is not None] + (
                    [self.since] if self.since is not None else []))
            elif first:
                from app.db.training import utcnow

                self.since = utcnow()
            if changed_jobs or first:
                out.append(("jobs", {"snapshot": first,
                                     "jobs": [_job_view(j, brief=True) for j in changed_jobs]}))
            if changed_configs or first:
                out.append(("configurations", {"snapshot": first, "configurations": [
                    _config_view(c) for c in changed_configs]}))
        return out
