"""A worker killed with SIGKILL mid-job loses no trial and counts none twice."""
from __future__ import annotations

import os
import re
import time

import pytest
from sqlalchemy import func, select

from app.config import load_settings
from app.db import market_data as md
from app.db.models import TrainingJob, Trial
from app.db.session import session_scope
from app.services import configurations, jobs
from tests.conftest import random_candles
from tests.processes import Beat, Worker
from tests.steps import FIVE_MIN as STEP
from tests.steps import START, wait_for
from workers import pipeline


def stored(url, job_id):
    with session_scope(url) as s:
        return s.scalar(select(func.count()).select_from(Trial).where(Trial.job_id == job_id))


@pytest.mark.parametrize("message_lost", [False, True], ids=["held", "lost"])
def test_sigkill_mid_job_then_a_new_worker_finishes_with_exactly_n_trials(pg_db, redis_url, tmp_path,
                                                                        message_lost):
    settings = load_settings({"DATABASE_URL": pg_db, "TRAD_HOME": str(tmp_path)})
    with session_scope(pg_db) as s:
        md.upsert_candles(s, "binanceus", "BTC/USDT", "5m",
                          random_candles(60_000, seed=4, start_ms=START, step_ms=STEP))
    first = Worker(pg_db, concurrency=1).wait_ready()
    try:
        n = 6000
        job = jobs.submit(settings, {
            "strategy": "SMA_CROSS", "symbol": "BTC/USDT", "exchange": "binanceus",
            "timeframe": "5m", "optimizer": "random", "lookback_days": 200,
            "n_iterations": n, "min_trades": 1, "seed": 9}, pipeline.enqueue_start)
        deadline = time.monotonic() + 60
        while stored(pg_db, job["job_id"]) == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        before = stored(pg_db, job["job_id"])
        assert 0 < before < n, "the job must be mid-way when the worker dies"
    finally:
        first.kill()
    assert jobs.get_job(settings, job["job_id"])["status"] == "running"
    if message_lost:
        # As if the worker died in that window: the broker has no record of what it held.
        import redis

        prefix = os.environ["TRAD_REDIS_PREFIX"]
        client = redis.Redis.from_url(redis_url)
        lost = client.hlen(f"{prefix}unacked")   # what the dead worker held, now gone
        client.delete(f"{prefix}unacked", f"{prefix}unacked_index")
    killed_at = time.monotonic()
    # The chunk the dead worker held comes back when the broker's visibility timeout
    # (15 s here) passes. One it had popped from Redis but not yet recorded as unacked
    # (kombu's Redis transport is not atomic there: a window of a few ms, right where this
    # test kills) is gone for good: then beat's watchdog sends it again once the job has
    # made no progress for TRAD_STALL_AFTER_S. The whole system runs here, beat included.
    stall = {"TRAD_STALL_AFTER_S": "25", "TRAD_WATCHDOG_INTERVAL_S": "3"}
    second = Worker(pg_db, concurrency=2, extra_env=stall).wait_ready()
    beat = Beat(tmp_path, extra_env=stall)
    try:
        done = wait_for(settings, job["job_id"], timeout=180)
    finally:
        beat.stop()
        second.stop()
    how = [p["message"] for p in jobs.list_progress(settings, job["job_id"])["progress"]
           if p["message"].startswith("stalled")]
    print(f"before kill {before}/{n}; recovered in {time.monotonic() - killed_at:.1f} s "
          f"({'by the watchdog' if how else 'by redelivery'})")
    if message_lost and lost:
        # (A kill between two messages loses none: then nothing needs the watchdog.)
        assert how, "only the watchdog could have sent the lost chunk again"
    assert done["status"] == "succeeded", done["error"]
    with session_scope(pg_db) as s:
        numbers = list(s.scalars(select(Trial.number).where(Trial.job_id == job["job_id"])
                                 .order_by(Trial.number)))
    assert numbers == list(range(n))
    assert done["trials_done"] == n


def test_sigkill_while_finishing_then_a_new_worker_finishes_the_job_once(pg_db, redis_url, tmp_path,
                                                                         plugin_dir):
    """The finish (validation, statistics, the configuration) is the longest step of a job's
    control tasks; its worker killed there, the redelivered finish_round runs it again."""
    import sys

    settings = load_settings({"DATABASE_URL": pg_db, "TRAD_HOME": str(tmp_path)})
    with session_scope(pg_db) as s:
        md.upsert_candles(s, "binanceus", "BTC/USDT", "5m",
                          random_candles(2000, seed=4, start_ms=START, step_ms=STEP))
    env = {"PYTHONPATH": str(plugin_dir)}
    first = Worker(pg_db, concurrency=1, extra_env=env).wait_ready()
    sys.path.insert(0, str(plugin_dir))  # SLOW is a plugin; the API side checks the name too
    try:
        job_id = jobs.submit(settings, {
            "strategy": "SLOW", "symbol": "BTC/USDT", "exchange": "binanceus", "timeframe": "5m",
            "optimizer": "random", "lookback_days": 5, "n_iterations": 12, "min_trades": 1,
            "seed": 2}, pipeline.enqueue_start)["job_id"]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(
                p["stage"] == "finishing" for p in jobs.list_progress(settings, job_id)["progress"]):
            time.sleep(0.05)
    finally:
        first.kill()
        sys.path.remove(str(plugin_dir))
    assert jobs.get_job(settings, job_id)["status"] == "running", "killed before the finish ended"
    second = Worker(pg_db, concurrency=1, extra_env=env).wait_ready()
    try:
        done = wait_for(settings, job_id, timeout=120)
    finally:
        second.stop()
    assert done["status"] == "succeeded", done["error"]
    assert done["trials_done"] == 12
    messages = [p["message"] for p in jobs.list_progress(settings, job_id)["progress"]]
    assert "resuming after a lost worker: finish" in messages
    assert done["recoveries"] == 1
    configs = configurations.list_configurations(settings)["configurations"]
    assert [c["name"] for c in configs] == [done["result"]["configuration"]]


def test_chunks_lost_by_the_broker_are_sent_again_by_the_watchdog(pg_db, redis_url, tmp_path):
    """Every trials message of a round vanishes from Redis (purged): nothing would ever
    finish the job; the watchdog's repair sends the missing chunks as a new chord."""
    from workers.celery_app import TRIALS_QUEUE, celery_app
    from workers.tasks import watchdog

    settings = load_settings({"DATABASE_URL": pg_db, "TRAD_HOME": str(tmp_path)})
    with session_scope(pg_db) as s:
        md.upsert_candles(s, "binanceus", "BTC/USDT", "5m",
                          random_candles(5000, seed=6, start_ms=START, step_ms=STEP))
    control = Worker(pg_db, concurrency=1, queues="trad.control").wait_ready()
    trials = None
    try:
        job_id = jobs.submit(settings, {
            "strategy": "SMA_CROSS", "symbol": "BTC/USDT", "exchange": "binanceus",
            "timeframe": "5m", "optimizer": "random", "lookback_days": 15, "n_iterations": 400,
            "min_trades": 1, "seed": 5}, pipeline.enqueue_start)["job_id"]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with session_scope(pg_db) as s:
                if s.get(TrainingJob, job_id).dispatched_round == 0:
                    break
            time.sleep(0.05)
        with celery_app.connection_for_write() as conn:
            purged = conn.default_channel.queue_purge(TRIALS_QUEUE)
        assert purged >= 1, "round 0's chunks should have been waiting in the queue"
        trials = Worker(pg_db, concurrency=2, queues="trad.trials").wait_ready()
        assert stored(pg_db, job_id) == 0
        # The beat task itself, with a threshold of zero for the test.
        settings_now = celery_app.conf.trad_settings
        celery_app.conf.trad_settings = settings.replace(stall_after_s=0.0)
        try:
            result = watchdog()
        finally:
            celery_app.conf.trad_settings = settings_now
        assert result["repaired"] == [job_id]
        done = wait_for(settings, job_id, timeout=120)
    finally:
        control.stop()
        if trials is not None:
            trials.stop()
    assert done["status"] == "succeeded", done["error"]
    with session_scope(pg_db) as s:
        numbers = list(s.scalars(select(Trial.number).where(Trial.job_id == job_id)
                                 .order_by(Trial.number)))
    assert numbers == list(range(400))
    messages = [p["message"] for p in jobs.list_progress(settings, job_id)["progress"]]
    assert "stalled round 0: 400 trials sent again" in messages


@pytest.mark.parametrize("message_lost", [False, True], ids=["held", "lost"])
def test_a_bayesian_job_killed_mid_round_asks_and_ends_as_one_never_killed(pg_db, redis_url,
                                                                           tmp_path, message_lost):
    """Rounds asked in parts by the workers: the part whose worker died is asked again by
    another from the same history, so the job's trials are those of an undisturbed run,
    whether the broker redelivers the part or the watchdog sends it again."""
    settings = load_settings({"DATABASE_URL": pg_db, "TRAD_HOME": str(tmp_path)})
    with session_scope(pg_db) as s:
        md.upsert_candles(s, "binanceus", "BTC/USDT", "5m",
                          random_candles(60_000, seed=4, start_ms=START, step_ms=STEP))
    n = 384
    body = {"strategy": "SMA_CROSS", "symbol": "BTC/USDT", "exchange": "binanceus",
            "timeframe": "5m", "optimizer": "bayesian", "batch_size": 64, "sampler_parts": 2,
            "lookback_days": 200, "n_iterations": n, "min_trades": 1, "seed": 21}
    first = Worker(pg_db, concurrency=1).wait_ready()
    try:
        killed = jobs.submit(settings, body, pipeline.enqueue_start)["job_id"]
        deadline = time.monotonic() + 60
        while stored(pg_db, killed) == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        before = stored(pg_db, killed)
        assert 0 < before < n, "the job must be mid-way when the worker dies"
    finally:
        first.kill()
    if message_lost:
        import redis

        prefix = os.environ["TRAD_REDIS_PREFIX"]
        client = redis.Redis.from_url(redis_url)
        lost = client.hlen(f"{prefix}unacked")   # what the dead worker held, now gone
        client.delete(f"{prefix}unacked", f"{prefix}unacked_index")
    # This test kills right after a part's trials are stored: where the worker pops its next
    # message, so that message is sometimes gone with it (see the test above); the watchdog
    # is part of the system that recovers it.
    stall = {"TRAD_STALL_AFTER_S": "25", "TRAD_WATCHDOG_INTERVAL_S": "3"}
    second = Worker(pg_db, concurrency=2, extra_env=stall).wait_ready()
    beat = Beat(tmp_path, extra_env=stall)
    try:
        done = wait_for(settings, killed, timeout=180)
        assert done["status"] == "succeeded", done["error"]
        calm = wait_for(settings, jobs.submit(settings, body, pipeline.enqueue_start)["job_id"],
                        timeout=120)
    finally:
        beat.stop()
        second.stop()
    how = [p["message"] for p in jobs.list_progress(settings, killed)["progress"]
           if p["message"].startswith("stalled")]
    if message_lost and lost:
        assert how, "only the watchdog could have sent the lost part again"

    def trials(job_id):
        with session_scope(pg_db) as s:
            return [(t.number, t.params) for t in s.execute(
                select(Trial.number, Trial.params).where(Trial.job_id == job_id)
                .order_by(Trial.number))]

    assert [t[0] for t in trials(killed)] == list(range(n))
    assert trials(killed) == trials(calm.get("job_id"))
    assert done["result"]["best_params"] == calm["result"]["best_params"]


def slow_market(url, home, plugin_dir, monkeypatch):
    """Settings over 2,000 stored candles, with the SLOW plugin importable here (the API
    side checks the strategy exists)."""
    with session_scope(url) as s:
        md.upsert_candles(s, "binanceus", "BTC/USDT", "5m",
                          random_candles(2000, seed=4, start_ms=START, step_ms=STEP))
    monkeypatch.syspath_prepend(str(plugin_dir))
    return load_settings({"DATABASE_URL": url, "TRAD_HOME": str(home)})


def submit_slow(settings, n: int) -> str:
    return jobs.submit(settings, {
        "strategy": "SLOW", "symbol": "BTC/USDT", "exchange": "binanceus", "timeframe": "5m",
        "optimizer": "random", "lookback_days": 5, "n_iterations": n, "min_trades": 0,
        "seed": 2}, pipeline.enqueue_start)["job_id"]


def test_a_dead_workers_messages_come_back_in_seconds_at_the_default_visibility_timeout(
        pg_db, redis_url, tmp_path, plugin_dir, monkeypatch):
    """The default limits (visibility 960 s) and no watchdog: only the live workers'
    liveness step (workers/liveness.py) can bring back what the killed one held."""
    defaults = {"TRAD_TASK_SOFT_LIMIT_S": "600", "TRAD_TASK_HARD_LIMIT_S": "660",
                "TRAD_VISIBILITY_TIMEOUT_S": "960", "PYTHONPATH": str(plugin_dir)}
    settings = slow_market(pg_db, tmp_path, plugin_dir, monkeypatch)
    n = 39  # SLOW's whole space, 0.15 s a trial
    first = Worker(pg_db, concurrency=1, extra_env=defaults).wait_ready()
    try:
        job_id = submit_slow(settings, n)
        # Killed once it has taken a second chunk: that message is in Redis' unacked set
        # (the worker logs "received" after recording it), held by nobody once it is dead.
        def taken() -> int:
            return len(re.findall(r"Task trad\.run_trials\[[^]]+\] received", first.output()))

        deadline = time.monotonic() + 60
        while taken() < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert taken() >= 2, first.output()
    finally:
        first.kill()
    killed_at = time.monotonic()
    before = stored(pg_db, job_id)
    second = Worker(pg_db, concurrency=2, extra_env=defaults).wait_ready()
    try:
        done = wait_for(settings, job_id, timeout=120)
    finally:
        second.stop()
    print(f"before kill {before}/{n}; done {time.monotonic() - killed_at:.1f} s after the kill "
          "(visibility timeout 960 s)")
    assert done["status"] == "succeeded", done["error"]
    with session_scope(pg_db) as s:
        numbers = list(s.scalars(select(Trial.number).where(Trial.job_id == job_id)
                                 .order_by(Trial.number)))
    assert numbers == list(range(n))
    assert "restored messages of a dead worker" in second.log_path.read_text(errors="replace")


def test_a_live_worker_holding_messages_longer_than_the_dead_after_time_keeps_them(
        pg_db, redis_url, tmp_path, plugin_dir, monkeypatch):
    """Chunks that run (and wait) longer than TRAD_WORKER_DEAD_AFTER_S on a worker that is
    alive are never taken for a dead worker's: nothing is restored, every chunk runs once."""
    env = {"TRAD_WORKER_DEAD_AFTER_S": "3", "TRAD_TEST_SLOW_TRIAL_S": "4.5",
           "PYTHONPATH": str(plugin_dir)}
    settings = slow_market(pg_db, tmp_path, plugin_dir, monkeypatch)
    n = 4  # one trial a chunk (0.15 s as estimated here), 4.5 s each on the worker
    worker = Worker(pg_db, concurrency=1, extra_env=env).wait_ready()
    try:
        job_id = submit_slow(settings, n)
        done = wait_for(settings, job_id, timeout=120)
    finally:
        worker.stop()
    log = worker.log_path.read_text(errors="replace")
    assert done["status"] == "succeeded", done["error"]
    received = re.findall(r"Task trad\.run_trials\[([^]]+)\] received", log)
    assert len(received) == n and len(set(received)) == n, log
    assert "restored messages of a dead worker" not in log
