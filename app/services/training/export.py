"""The optuna study copy of a finished sequential job, for optuna-dashboard."""
from __future__ import annotations

import logging
import time
from dataclasses import replace

from sqlalchemy import select

from app.config import Settings
from app.db.models import TrainingJob, Trial
from app.db.session import session_scope
from app.optimize.rounds import SEQUENTIAL_OPTIMIZERS
from app.services.training.context import REJECTED_VALUE, job_history, request_of

log = logging.getLogger(__name__)


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
        request = request_of(job)
        # Constraint-failing trials are FAIL in the copy, with why (the sampler was told a
        # very low value instead, which would flatten the dashboard's plots).
        history = [t if t.value != REJECTED_VALUE else replace(t, value=None)
                   for t in job_history(session, job_id)]
        trades = dict(session.execute(select(Trial.number, Trial.metrics["num_trades"].as_float())
                                      .where(Trial.job_id == job_id, Trial.state == "rejected")).all())
    reasons = {n: f"{int(k or 0)} trades, fewer than min_trades={request.min_trades}"
               for n, k in trades.items()}
    if not url:
        return None
    name = f"trad-{job_id}"
    t0 = time.perf_counter()
    _export(url, name, request.space(), history, reasons)
    log.info("optuna study exported job_id=%s study=%s trials=%d seconds=%.2f",
             job_id, name, len(history), time.perf_counter() - t0)
    return name
