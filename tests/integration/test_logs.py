"""A real worker's log while it runs a job: ``job_id`` on every line the job's tasks write
(libraries' lines and Celery's own "succeeded" line too), every line once and on one line,
JSON throughout with TRAD_LOG_FORMAT=json; and the Celery result keys the job leaves in
Redis all expire within the configured ``result_expires``."""
from __future__ import annotations

import json
import os
import re
import time
from datetime import datetime
from itertools import pairwise

import pytest

from app.config import load_settings
from app.db import market_data as md
from app.db.session import session_scope
from app.services import jobs
from tests.conftest import random_candles
from tests.processes import Worker
from tests.steps import FIVE_MIN, START, wait_for
from workers import pipeline

# A trader's strategy that logs through a library's logger of its own on every run, and
# once per process a caught exception with its traceback.
CHATTY = '''
import itertools
import logging
import os

import numpy as np
from app.strategies.base import IntParam, Strategy

log = logging.getLogger("chatty_lib")
_told = []
_runs = itertools.count()


class Chatty(Strategy):
    name = "CHATTY"
    space = (IntParam("period", 2, 40, default=5),)

    def positions(self, candles, params, cache):
        log.info("computing period=%d run=%d pid=%d", params["period"], next(_runs), os.getpid())
        if not _told:
            _told.append(1)
            try:
                raise ValueError("first line\\nsecond line")
            except ValueError:
                log.exception("caught on purpose")
        return (np.arange(len(candles)) // params["period"] % 2).astype(float)
'''

TEXT_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} level=(?P<level>[A-Z]+) "
                       r"logger=(?P<logger>\S+)(?: job_id=(?P<job_id>\S+))? (?P<message>.*)$")
# Celery's own format ("[2026-01-01 12:00:00,000: INFO/MainProcess] ..."): a handler of
# Celery's beside ours would write every line a second time in it.
CELERY_LINE = re.compile(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+: [A-Z]+/")
TASK_EVENT = re.compile(r"Task (trad\.\w+)\[([0-9a-f-]+)\] (received|succeeded)")
# Loggers that write only inside a task's process while it runs: ours (app.*, the tasks'
# module), Celery's tracer ("succeeded in") and the plugin's library.
IN_TASK = ("app.", "workers.tasks", "celery.app.trace", "chatty_lib")


@pytest.fixture(scope="module")
def chatty_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("chatty")
    (root / "chatty_strats.py").write_text(CHATTY)
    dist = root / "chatty_strats-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: chatty-strats\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[trad.strategies]\nCHATTY = chatty_strats:Chatty\n")
    return root


@pytest.fixture
def settings(pg_db, redis_url, tmp_path, chatty_dir, monkeypatch):
    monkeypatch.syspath_prepend(str(chatty_dir))  # the submitting side checks the name too
    with session_scope(pg_db) as s:
        md.upsert_candles(s, "binanceus", "BTC/USDT", "5m",
                          random_candles(3000, seed=8, start_ms=START, step_ms=FIVE_MIN))
    return load_settings({"DATABASE_URL": pg_db, "TRAD_HOME": str(tmp_path)})


def run_job(settings, chatty_dir, extra_env=None) -> tuple[str, list[str]]:
    """A CHATTY job on a worker of its own (two processes); its id and the worker's log."""
    worker = Worker(settings.database_url, concurrency=2,
                    extra_env={"PYTHONPATH": str(chatty_dir), **(extra_env or {})}).wait_ready()
    try:
        job_id = jobs.submit(settings, {
            "strategy": "CHATTY", "symbol": "BTC/USDT", "exchange": "binanceus",
            "timeframe": "5m", "optimizer": "random", "lookback_days": 8, "n_iterations": 300,
            "min_trades": 1, "seed": 4}, pipeline.enqueue_start)["job_id"]
        done = wait_for(settings, job_id, timeout=120)
        assert done["status"] == "succeeded", done["error"]
        # The export_study sent by the finish, then everything written: the log as it is
        # while the worker still runs (its shutdown notice is not a log line).
        deadline = time.monotonic() + 30
        while "Task trad.export_study[" not in _succeeded(worker) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.3)
        return job_id, worker.log_path.read_text(errors="replace").splitlines()
    finally:
        worker.stop()


def _succeeded(worker) -> str:
    return "\n".join(line for line in worker.log_path.read_text(errors="replace").splitlines()
                     if "succeeded in" in line)


def job_span(lines: list[str], parse) -> list[dict]:
    """The parsed log lines from the job's first task received to its last task done."""
    records = [r for r in (parse(line) for line in lines) if r is not None]
    events = [(i, TASK_EVENT.search(r["message"])) for i, r in enumerate(records)]
    events = [(i, m) for i, m in events if m]
    first = min(i for i, m in events if m.group(3) == "received")
    last = max(i for i, m in events if m.group(3) == "succeeded")
    return records[first:last + 1]


def parse_text(line: str) -> dict | None:
    match = TEXT_LINE.match(line)
    return match.groupdict() if match else None


def parse_json(line: str) -> dict | None:
    return json.loads(line) if line.startswith("{") else None


def assert_once_each(lines: list[str]) -> None:
    assert not [line for line in lines if CELERY_LINE.match(line)], "a line in Celery's format"
    repeats = [a for a, b in pairwise(lines) if a.strip() and a == b]
    assert not repeats, f"lines written twice: {repeats[:3]}"


def assert_job_lines(span: list[dict], job_id: str, mentions) -> None:
    """Every line written inside a task names a job (a message left on the run's queues by
    an earlier test is another job's: it names that one); the job's own lines name it."""
    in_task = [r for r in span if r["logger"].startswith(IN_TASK)]
    unmarked = [r for r in in_task if not r.get("job_id") and not mentions(r)]
    assert not unmarked, f"lines of a job's tasks without job_id=: {unmarked[:3]}"
    ours = [r for r in in_task if r.get("job_id") == job_id or mentions(r) == job_id]
    loggers = {r["logger"] for r in ours}
    assert {"chatty_lib", "celery.app.trace"} <= loggers, loggers
    assert any(r["logger"].startswith("app.") for r in ours), loggers
    chatty = [r for r in in_task if r["logger"] == "chatty_lib"]  # only this job runs CHATTY
    assert all(r.get("job_id") == job_id for r in chatty), chatty[:3]
    done = [r for r in in_task if "Task trad.run_trials[" in r["message"]]
    assert done and all(r.get("job_id") for r in done)


def _result_keys(redis_url: str) -> dict[str, int]:
    import redis

    client = redis.Redis.from_url(redis_url)
    prefix = os.environ["TRAD_REDIS_PREFIX"]
    return {key.decode()[len(prefix):]: client.ttl(key)
            for key in client.scan_iter(match=f"{prefix}celery-task*-meta-*", count=1000)}


def test_every_line_of_a_jobs_tasks_carries_its_job_id_once(settings, chatty_dir, redis_url):
    from workers.celery_app import celery_app

    job_id, lines = run_job(settings, chatty_dir)
    assert_once_each(lines)
    span = job_span(lines, parse_text)
    assert_job_lines(span, job_id, lambda r: (re.findall(r"\bjob_id=(\w+)", r["message"])
                                             or [None])[0])
    ours = [line for line in lines if TEXT_LINE.match(line)]
    assert all(line.count("job_id=") <= 1 for line in ours), "job_id= twice on a line"
    # A traceback stays on its event's line.
    caught = [line for line in ours if "caught on purpose" in line]
    assert caught and all('exc="Traceback' in line and "ValueError" in line for line in caught)
    assert all(f"job_id={job_id}" in line for line in caught)
    assert not [line for line in lines if line.startswith(("Traceback", "  File "))]
    assert not [line for line in lines if line.startswith("second line")]

    # What the job leaves in the result backend: only the chord's header results (read by
    # its callback), each expiring within result_expires; no key without an expiry.
    expires = celery_app.conf.result_expires
    keys = _result_keys(redis_url)
    assert all(0 < ttl <= expires for ttl in keys.values()), \
        {k: t for k, t in keys.items() if not 0 < t <= expires}
    tasks = {}
    for line in ours:
        match = TASK_EVENT.search(line)
        if match and match.group(3) == "succeeded":
            tasks.setdefault(match.group(1), []).append(match.group(2))
    assert len(tasks.get("trad.run_trials", ())) >= 2, tasks
    assert all(f"celery-task-meta-{t}" in keys for t in tasks["trad.run_trials"])
    unread = [t for name in ("trad.start_job", "trad.finish_round", "trad.export_study")
              for t in tasks.get(name, ())]
    assert unread and not [t for t in unread if f"celery-task-meta-{t}" in keys]
    print(f"result keys after the job: {len(keys)} (ttl <= {expires} s); run_trials "
          f"{len(tasks['trad.run_trials'])}, results not stored {len(unread)}")


def test_json_format_writes_every_log_line_as_json(settings, chatty_dir):
    job_id, lines = run_job(settings, chatty_dir, {"TRAD_LOG_FORMAT": "json"})
    assert_once_each(lines)
    # Before the first log line only what Celery prints itself (its banner, the root
    # warning); from there on every line is one JSON object.
    first = next(i for i, line in enumerate(lines) if line.startswith("{"))
    records = []
    for line in lines[first:]:
        if line.strip():
            record = json.loads(line)
            assert {"ts", "level", "logger", "message"} <= set(record), record
            datetime.fromisoformat(record["ts"])
            records.append(record)
    assert not [line for line in lines if TEXT_LINE.match(line)]
    span = job_span(lines, parse_json)
    assert_job_lines(span, job_id, lambda r: None)
    caught = [r for r in records if r["message"] == "caught on purpose"]
    assert caught and all("ValueError: first line\nsecond line" in r["exc"] for r in caught)
    assert all(r["job_id"] == job_id for r in caught)
