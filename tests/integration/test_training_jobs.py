"""Training jobs end to end: real Postgres, Redis and a real Celery worker."""
from __future__ import annotations

import time

import pytest
from sqlalchemy import func, select

from app.config import load_settings
from app.db import market_data as md
from app.db.models import TrainedConfiguration, Trial
from app.db.session import session_scope
from app.schemas import Unprocessable
from app.services import jobs
from tests.conftest import random_candles
from tests.steps import FIVE_MIN as STEP
from tests.steps import START, wait_for
from workers import pipeline



@pytest.fixture
def settings(pg_db, worker, tmp_path):
    pg_url = pg_db
    s = load_settings({"DATABASE_URL": pg_url, "TRAD_HOME": str(tmp_path)})
    with session_scope(pg_url) as session:
        md.upsert_candles(session, "binanceus", "BTC/USDT", "5m",
                          random_candles(3000, seed=11, start_ms=START, step_ms=STEP, vol=0.004))
    return s


def body(**changes):
    return {"strategy": "SMA_CROSS", "symbol": "BTC/USDT", "exchange": "binanceus",
            "timeframe": "5m", "optimizer": "random", "lookback_days": 10, "n_iterations": 40,
            "min_trades": 2, "seed": 3, **changes}


@pytest.mark.parametrize("optimizer,extra", [
    ("random", {}),
    ("grid", {"n_iterations": 100, "search_space": {"fast": {"low": 5, "high": 45, "step": 10},
                                                    "slow": {"low": 50, "high": 200, "step": 50},
                                                    "allow_short": [False, True]}}),
    ("bayesian", {"batch_size": 10}),
    ("cmaes", {"batch_size": 8, "params": {"allow_short": False}}),
    ("genetic", {"batch_size": 10}),
])
def test_a_job_ends_with_exactly_its_trials_and_a_stored_configuration(settings, optimizer, extra):
    job = jobs.submit(settings, body(optimizer=optimizer, **extra), pipeline.enqueue_start)
    done = wait_for(settings, job["job_id"])
    assert done["status"] == "succeeded", done["error"]
    with session_scope(settings.database_url) as s:
        numbers = list(s.scalars(select(Trial.number).where(Trial.job_id == job["job_id"])
                                 .order_by(Trial.number)))
        config = s.scalars(select(TrainedConfiguration).where(
            TrainedConfiguration.name == done["result"]["configuration"])).one()
    assert numbers == list(range(done["trials_total"]))
    assert done["trials_done"] == done["trials_total"]
    assert config.params == done["result"]["best_params"]
    assert config.lifecycle_stage in ("PAPER", "REJECTED")
    assert config.name.startswith("SMA_CROSS_V1_")
    progress = jobs.list_progress(settings, job["job_id"])["progress"]
    assert progress[-1]["stage"] == "succeeded" and progress[-1]["percentage"] == 100.0
    assert all(p["percentage"] is not None and p["step_number"] is not None for p in progress)


def test_the_same_request_gives_the_same_result(settings):
    first = wait_for(settings, jobs.submit(settings, body(optimizer="bayesian", batch_size=8,
                                                              n_iterations=24), pipeline.enqueue_start)["job_id"])
    second = wait_for(settings, jobs.submit(settings, body(optimizer="bayesian", batch_size=8,
                                                               n_iterations=24), pipeline.enqueue_start)["job_id"])
    assert first["result"]["best_params"] == second["result"]["best_params"]
    assert first["result"]["in_sample"] == second["result"]["in_sample"]


def test_a_series_too_short_to_hold_out_is_refused_before_anything_is_queued(settings):
    # Checked at submit against the stored candles: the job is never created.
    before = jobs.list_jobs(settings)["total"]
    with pytest.raises(Unprocessable, match="fewer than the 101 this job needs") as refused:
        jobs.submit(settings, body(lookback_days=0.1, run_validation=True), pipeline.enqueue_start)
    assert refused.value.field == "lookback_days"
    assert "3,000 bars are stored" in refused.value.message
    assert jobs.list_jobs(settings)["total"] == before


def _workers_idle(timeout: float = 60.0) -> None:
    """Until the trials queue is empty and no worker runs a task: every chunk sent is done."""
    import redis

    from workers.celery_app import TRIALS_QUEUE, celery_app

    settings = celery_app.conf.trad_settings
    client = redis.Redis.from_url(settings.broker_url)
    keys = [f"{settings.redis_prefix}{TRIALS_QUEUE}"] + [
        f"{settings.redis_prefix}{TRIALS_QUEUE}:{p}" for p in range(1, 10)]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        active = celery_app.control.inspect(timeout=0.5).active() or {}
        if not sum(client.llen(k) for k in keys) and not any(active.values()):
            return
        time.sleep(0.1)
    raise AssertionError("the workers were still busy")


def test_cancel_stops_a_running_job(settings, plugin_dir, monkeypatch):
    # SLOW takes 0.15 s a trial: its 39 trials (period 2..40) take seconds on two processes,
    # so the cancel lands mid-job however fast the machine (an SMA job of 20,000 trials
    # could finish before the cancel arrived).
    monkeypatch.syspath_prepend(str(plugin_dir))  # the API side checks the name too
    job = jobs.submit(settings, body(strategy="SLOW", n_iterations=39, min_trades=0),
                      pipeline.enqueue_start)
    wait_for(settings, job["job_id"], until=("running", "succeeded"))
    cancelled = jobs.cancel(settings, job["job_id"])
    assert cancelled["status"] == "cancelled"
    # The chunks already sent see the flag and skip their work; once every one has been
    # taken, fewer than the 39 trials are stored and the finish never ran.
    _workers_idle()
    with session_scope(settings.database_url) as s:
        stored = s.scalar(select(func.count()).select_from(Trial).where(Trial.job_id == job["job_id"]))
        finished = s.scalar(select(func.count()).select_from(TrainedConfiguration)
                            .where(TrainedConfiguration.job_id == job["job_id"]))
    assert stored < 39 and finished == 0
    assert jobs.get_job(settings, job["job_id"])["status"] == "cancelled"


def test_the_watchdog_fails_a_job_past_its_deadline(settings):
    from workers.tasks import watchdog

    job = jobs.submit(settings, body(timeout_s=0.05), lambda job_id, priority: None)
    time.sleep(0.1)
    result = watchdog.apply_async(queue="trad.control").get(timeout=30)
    assert result == {"expired": [job["job_id"]], "repaired": []}
    done = jobs.get_job(settings, job["job_id"])
    assert done["status"] == "failed" and "timed out" in done["error"]
    assert jobs.list_progress(settings, job["job_id"])["progress"][-1]["stage"] == "failed"


def test_a_bayesian_study_is_copied_for_optuna_dashboard(settings):
    import optuna

    done = wait_for(settings, jobs.submit(settings, body(optimizer="bayesian", batch_size=8,
                                                             n_iterations=16), pipeline.enqueue_start)["job_id"])
    assert done["status"] == "succeeded"
    deadline = time.monotonic() + 30
    trials = []
    while len(trials) < 16 and time.monotonic() < deadline:
        try:  # the export writes trial by trial: wait for the last one
            study = optuna.load_study(study_name=f"trad-{done['job_id']}",
                                      storage=settings.optuna_storage_url)
            trials = study.trials
        except KeyError:
            pass
        time.sleep(0.2)
    assert len(trials) == 16
    assert study.best_value == pytest.approx(done["result"]["best_value"])


def test_a_strategy_that_raises_ends_the_job_failed_with_its_message(settings, plugin_dir):
    """EXPLODES (tests/integration/conftest.py) is installed for the workers as a plugin."""
    import sys

    sys.path.insert(0, str(plugin_dir))  # the API side checks the strategy name too
    try:
        job = jobs.submit(settings, body(strategy="EXPLODES", min_trades=0, n_iterations=30,
                                             lookback_days=1), pipeline.enqueue_start)
    finally:
        sys.path.remove(str(plugin_dir))
    done = wait_for(settings, job["job_id"])
    assert done["status"] == "failed"
    assert "strategy EXPLODES failed on trial" in done["error"]
    assert "ValueError: threshold" in done["error"] and "is too big" in done["error"]
