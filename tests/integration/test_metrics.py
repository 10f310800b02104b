"""Metrics from every process, read as Prometheus would: a worker's pool summed by its main
process (and kept when a pool child is SIGKILLed), beat's sends, gunicorn's workers summed
on /metrics, and what the web reads from the database and broker at scrape time."""
from __future__ import annotations

import os
import re
import signal
import urllib.request

import pytest

from app.config import load_settings
from app.db import market_data as md
from app.db.session import session_scope
from app.metrics import exported_names, failure_reason
from app.services import jobs
from tests.conftest import random_candles
from tests.faults import wait_until
from tests.processes import Beat, Gunicorn, Worker, free_port
from tests.steps import FIVE_MIN as STEP
from tests.steps import START, wait_for
from workers import pipeline

SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$")


def scrape(url: str, token: str | None = None) -> dict[tuple[str, frozenset], float]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if match and not line.startswith("#"):
            name, labels, value = match.groups()
            pairs = frozenset(re.findall(r'(\w+)="([^"]*)"', labels or ""))
            out[(name, pairs)] = float(value)
    return out


def children(pid: int) -> list[int]:
    """The worker's pool processes (the main process's children)."""
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


def value(samples, name: str, **labels) -> float:
    want = set(labels.items())
    return sum(v for (n, pairs), v in samples.items() if n == name and want <= set(pairs))


def submit(settings, n: int, seed: int) -> str:
    return jobs.submit(settings, {
        "strategy": "SMA_CROSS", "symbol": "BTC/USDT", "exchange": "binanceus",
        "timeframe": "5m", "optimizer": "random", "lookback_days": 5, "n_iterations": n,
        "min_trades": 0, "seed": seed}, pipeline.enqueue_start)["job_id"]


@pytest.fixture
def market(pg_db, tmp_path):
    with session_scope(pg_db) as s:
        md.upsert_candles(s, "binanceus", "BTC/USDT", "5m",
                          random_candles(2000, seed=4, start_ms=START, step_ms=STEP))
    return load_settings({"DATABASE_URL": pg_db, "TRAD_HOME": str(tmp_path)})


def test_a_workers_pool_is_counted_once_and_a_killed_child_loses_no_count(pg_db, redis_url,
                                                                          market):
    port = free_port()
    worker = Worker(pg_db, concurrency=2, extra_env={"TRAD_WORKER_METRICS_PORT": str(port)})
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        worker.wait_ready()
        first = wait_for(market, submit(market, 300, 1))
        assert first["status"] == "succeeded", first["error"]
        samples = scrape(url)
        labels = {"strategy": "SMA_CROSS", "optimizer": "random"}
        assert value(samples, "trad_trials_total", **labels) == 300
        chunks = value(samples, "trad_chunks_total", outcome="ok", **labels)
        ran = len(re.findall(r"Task trad\.run_trials\[[^]]+\] succeeded",
                             worker.log_path.read_text(errors="replace")))
        assert chunks == ran >= 1
        assert value(samples, "trad_chunk_duration_seconds_count", **labels) == chunks
        assert value(samples, "trad_trial_duration_seconds_count", strategy="SMA_CROSS") == chunks
        assert value(samples, "trad_job_duration_seconds_count", outcome="succeeded") == 1
        # A pool child SIGKILLed: its counts stay (its files do), the pool replaces it.
        pool = children(worker.proc.pid)
        assert len(pool) == 2, pool
        os.kill(pool[0], signal.SIGKILL)
        wait_until(lambda: len(children(worker.proc.pid)) == 2
                   and pool[0] not in children(worker.proc.pid), 30, "a new pool child")
        second = wait_for(market, submit(market, 200, 2))
        assert second["status"] == "succeeded", second["error"]
        samples = scrape(url)
        assert value(samples, "trad_trials_total", **labels) == 500
        assert value(samples, "trad_job_duration_seconds_count", outcome="succeeded") == 2
        assert set(n for n, _ in samples if n.startswith("trad_")) <= exported_names()
    finally:
        worker.stop()


def test_the_web_sums_its_workers_and_reads_the_database_and_broker(pg_db, redis_url,
                                                                    market, tmp_path):
    token = "metrics-test-token-0123456789"
    web = Gunicorn(pg_db, workers=2, extra_env={"TRAD_API_TOKENS": f"prometheus:{token}"})
    worker = Worker(pg_db, concurrency=1)
    try:
        web.wait_ready()
        worker.wait_ready()
        done = wait_for(market, submit(market, 40, 3))
        assert done["status"] == "succeeded"
        asks = 30
        for _ in range(asks):
            with urllib.request.urlopen(urllib.request.Request(
                    web.url + "/api/v2/training/jobs",
                    headers={"Authorization": f"Bearer {token}"}), timeout=10):
                pass
        # Whichever of the two gunicorn workers answers the scrape, it shows all of them.
        for _ in range(4):
            samples = scrape(web.url + "/metrics", token)
            assert value(samples, "trad_http_requests_total", route="/api/v2/training/jobs",
                         method="GET", status="200") == asks
        assert value(samples, "trad_jobs", status="succeeded") == 1
        assert value(samples, "trad_trials_done") == 40
        assert value(samples, "trad_workers_online") == 1
        assert value(samples, "trad_queue_depth", queue="trad.trials") == 0
        assert value(samples, "trad_queue_oldest_age_seconds", queue="trad.trials") == 0
        assert set(n for n, _ in samples if n.startswith("trad_")) <= exported_names()
    finally:
        web.stop()
        worker.stop()


def test_a_waiting_messages_age_and_beats_sends_are_measured(pg_db, redis_url, market,
                                                             tmp_path):
    """No worker: the job's start waits on the control queue, its age grows; beat sends
    the watchdog and counts it."""
    token = "metrics-test-token-0123456789"
    port = free_port()
    web = Gunicorn(pg_db, workers=1, extra_env={"TRAD_API_TOKENS": f"prometheus:{token}"})
    beat = Beat(tmp_path, extra_env={"DATABASE_URL": pg_db, "TRAD_WATCHDOG_INTERVAL_S": "1",
                                     "TRAD_BEAT_METRICS_PORT": str(port)})
    try:
        web.wait_ready()
        submit(market, 10, 4)
        wait_until(lambda: value(scrape(web.url + "/metrics", token),
                                 "trad_queue_oldest_age_seconds", queue="trad.control") > 1.0,
                   30, "the waiting start_job's age")
        beat_url = f"http://127.0.0.1:{port}/metrics"

        def sent() -> float:
            try:
                return value(scrape(beat_url), "trad_beat_sent_total", task="trad.watchdog")
            except OSError:
                return 0.0

        wait_until(lambda: sent() >= 2, 60, "beat to send the watchdog twice")
        assert value(scrape(beat_url), "trad_beat_last_sent_timestamp_seconds") > 0
    finally:
        web.stop()
        beat.stop()


@pytest.mark.parametrize("message, reason", [
    ("strategy EXPLODES failed on trial 0 with params {}: ValueError: x", "strategy_error"),
    ("gave up after 8 retries over about two minutes: ...", "gave_up_on_outage"),
    ("timed out: ran past timeout_s=10", "timeout"),
    ("the job's candles changed in the database while it ran", "data_changed"),
    ("KeyError: period", "other")])
def test_a_failures_reason_label(message, reason):
    assert failure_reason(message) == reason


def test_a_worker_is_warm_before_its_first_job(redis_url):
    """The main process ran every strategy and a finish before forking, and its pool
    process connected to the database once forked, before any task (workers/warmup.py)."""
    from sqlalchemy import text

    from app.db.migrate import upgrade
    from app.db.session import dispose_engines
    from tests.services import create_pg_database, drop_pg_database

    url, name = create_pg_database()  # its own: no other process connected to it
    worker = None
    try:
        upgrade(url)
        dispose_engines()

        def others() -> int:
            with session_scope(url) as session:
                return session.scalar(text("SELECT count(*) FROM pg_stat_activity WHERE datname "
                                           "= current_database() AND pid <> pg_backend_pid()"))

        assert others() == 0
        worker = Worker(url, concurrency=1)
        worker.wait_ready()
        wait_until(lambda: "warmed strategies=" in worker.output(), 10, "the warm-up line")
        wait_until(lambda: others() >= 1, 10, "the pool process's database connection")
        assert "warm-up failed" not in worker.output()
        assert "warm-up could not connect" not in worker.output()
    finally:
        if worker is not None:
            worker.stop()
        dispose_engines()
        drop_pg_database(name)
