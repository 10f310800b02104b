"""Faults of the servers under a running job, each on a server of the test's own: a
Postgres restart (every connection cut) and a Redis crash (SIGKILL, restarted on its
append-only file). The job ends ``succeeded`` with exactly n distinct trials; the time from
the fault to the next trial stored is printed (the recovery figure)."""
from __future__ import annotations

import secrets
import time

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from app.config import load_settings
from app.db import market_data as md
from app.db.migrate import upgrade
from app.db.models import Trial
from app.db.session import dispose_engines, session_scope
from app.services import jobs
from tests.conftest import random_candles
from tests.faults import OwnPostgres, OwnRedis, wait_until
from tests.processes import Beat, Gunicorn, Worker
from tests.steps import FIVE_MIN as STEP
from tests.steps import START
from workers import pipeline

BODY = {"strategy": "SMA_CROSS", "symbol": "BTC/USDT", "exchange": "binanceus",
        "timeframe": "5m", "optimizer": "bayesian", "batch_size": 64, "sampler_parts": 2,
        "lookback_days": 200, "n_iterations": 384, "min_trades": 1, "seed": 21}


def _stored(url: str, job_id: str) -> int | None:
    """Trials stored so far; None while the database is out of reach."""
    try:
        with session_scope(url) as s:
            return s.scalar(select(func.count()).select_from(Trial).where(Trial.job_id == job_id))
    except OperationalError:
        return None


def _finished(settings, job_id: str) -> dict | None:
    try:
        job = jobs.get_job(settings, job_id)
    except OperationalError:
        return None
    return job if job["status"] in ("succeeded", "failed", "cancelled") else None


def _numbers(url: str, job_id: str) -> list[int]:
    with session_scope(url) as s:
        return list(s.scalars(select(Trial.number).where(Trial.job_id == job_id)
                              .order_by(Trial.number)))


def _log(process) -> str:
    return process.log_path.read_text(errors="replace")


def _calm(worker) -> None:
    """The worker rode the fault out: it never died of it, and printed no warning."""
    log = _log(worker)
    assert "Unrecoverable error" not in log and "py.warnings" not in log, log[-3000:]


def _recovered_after(url: str, job_id: str, fault_at: float, count: int) -> float:
    """Seconds from the fault to the first trial stored after it."""
    wait_until(lambda: (_stored(url, job_id) or 0) > count, 120, "a trial stored after the fault")
    return time.monotonic() - fault_at


@pytest.fixture
def own_postgres():
    pg = OwnPostgres().start()
    yield pg
    dispose_engines()
    pg.remove()


@pytest.fixture
def own_redis():
    server = OwnRedis().start()
    yield server
    server.remove()


def test_postgres_restarted_mid_job_twice_the_job_ends_with_exactly_n_trials(own_postgres,
                                                                             redis_url, tmp_path):
    url = own_postgres.url
    upgrade(url)
    with session_scope(url) as s:
        md.upsert_candles(s, "binanceus", "BTC/USDT", "5m",
                          random_candles(60_000, seed=4, start_ms=START, step_ms=STEP))
    settings = load_settings({"DATABASE_URL": url, "TRAD_HOME": str(tmp_path)})
    worker = Worker(url, concurrency=2).wait_ready()
    figures = []
    try:
        job_id = jobs.submit(settings, BODY, pipeline.enqueue_start)["job_id"]
        # A blip in the first round (stop, start: the pool's pre-ping reconnects), then in a
        # later round an outage that lasts until a task has met it and scheduled a retry.
        for after, until_retried in ((1, False), (130, True)):
            count = wait_until(lambda: (n := _stored(url, job_id)) and n >= after and n, 120,
                               f"{after} trials stored")
            fault_at = time.monotonic()
            if until_retried:
                own_postgres.stop("fast")
                wait_until(lambda: "transient error, retrying" in _log(worker), 60,
                           "a task retries on the outage")
                own_postgres.start()
                outage = time.monotonic() - fault_at
            else:
                outage = own_postgres.restart()
            figures.append((outage, _recovered_after(url, job_id, fault_at, count)))
        done = wait_until(lambda: _finished(settings, job_id), 180, "the job ends")
    finally:
        worker.stop()
    retried = _log(worker).count("transient error, retrying")
    for outage, recovered in figures:
        print(f"postgres down {outage:.2f} s; trials flowing again {recovered:.2f} s after the "
              f"fault ({retried} task retries in all)")
    assert done["status"] == "succeeded", done["error"]
    assert _numbers(url, job_id) == list(range(BODY["n_iterations"]))
    assert done["trials_done"] == BODY["n_iterations"]
    _calm(worker)


def test_redis_crashed_mid_job_the_job_ends_with_exactly_n_trials(own_redis, pg_db, tmp_path):
    url = pg_db
    with session_scope(url) as s:
        md.upsert_candles(s, "binanceus", "BTC/USDT", "5m",
                          random_candles(60_000, seed=4, start_ms=START, step_ms=STEP))
    settings = load_settings({"DATABASE_URL": url, "TRAD_HOME": str(tmp_path)})
    secret = secrets.token_urlsafe(24)
    env = {"CELERY_BROKER_URL": own_redis.url, "TRAD_API_TOKENS": f"faults:{secret}",
           "TRAD_STALL_AFTER_S": "25", "TRAD_WATCHDOG_INTERVAL_S": "3"}
    web = Gunicorn(url, workers=1, extra_env=env)
    worker = Worker(url, concurrency=2, extra_env=env)
    beat = Beat(tmp_path, extra_env={**env, "DATABASE_URL": url})
    try:
        web.wait_ready()
        worker.wait_ready_on()
        job_id = web.post("/api/v2/training/start", BODY, secret)["job_id"]
        count = wait_until(lambda: (n := _stored(url, job_id)) and n, 120, "trials stored")
        fault_at = time.monotonic()
        outage = own_redis.restart()
        recovered = _recovered_after(url, job_id, fault_at, count)
        done = wait_until(lambda: _finished(settings, job_id), 240, "the job ends")
    finally:
        beat.stop()
        worker.stop()
        web.stop()
    print(f"redis down {outage:.2f} s; trials flowing again {recovered:.2f} s after the fault")
    assert done["status"] == "succeeded", done["error"]
    assert _numbers(url, job_id) == list(range(BODY["n_iterations"]))
    assert done["trials_done"] == BODY["n_iterations"]
    _calm(worker)
