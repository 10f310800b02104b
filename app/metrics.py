"""Prometheus metrics of every process: what each one counts, and how it is served.

A gunicorn web process and a Celery prefork worker are several processes each; a scrape
reaches one. So both run prometheus_client's multiprocess mode (``serve_multiprocess``):
each process writes its counters to memory-mapped files in a directory of its own
process family, and the scraped process sums the files. A pool child killed with SIGKILL
leaves its files, so counters never go backwards; a gauge's dead processes are dropped
(``mark_process_dead``). The web process also reads the database and the broker at scrape
time (``app.api.metrics``): jobs by status, queue depths, workers online.

Served: the web process at ``/metrics`` (behind a token), each worker's main process at
``TRAD_WORKER_METRICS_PORT``, beat at ``TRAD_BEAT_METRICS_PORT`` (``TRAD_METRICS_BIND``,
127.0.0.1 by default).
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile

from prometheus_client import Counter, Gauge, Histogram

__all__ = ["CHUNKS", "CHUNK_SECONDS", "HTTP_REQUESTS", "HTTP_SECONDS", "JOB_FAILURES",
           "JOB_SECONDS", "RECOVERIES", "SAMPLER_SECONDS", "TASK_RETRIES", "TRIALS",
           "TRIAL_SECONDS", "BEAT_SENT", "OWN_METRICS", "BEAT_LAST_SENT", "SCRAPE_TIME_GAUGES",
           "exported_names", "failure_reason", "job_ended", "prime", "serve_multiprocess",
           "use_multiprocess"]

log = logging.getLogger(__name__)

_CHUNK_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
_TRIAL_BUCKETS = (1e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.05, 0.1, 0.5, 1, 5)
_JOB_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600)

TRIALS = Counter("trad_trials", "Trials stored (a redelivered chunk's trials are not counted "
                 "again)", ["strategy", "optimizer"])
CHUNKS = Counter("trad_chunks", "Chunks of trials run, by outcome (ok, failed, retried)",
                 ["strategy", "optimizer", "outcome"])
CHUNK_SECONDS = Histogram("trad_chunk_duration_seconds", "Wall time of a chunk, sampler "
                          "and candle load included", ["strategy", "optimizer"],
                          buckets=_CHUNK_BUCKETS)
TRIAL_SECONDS = Histogram("trad_trial_duration_seconds", "Time of one trial's backtest",
                          ["strategy"], buckets=_TRIAL_BUCKETS)
SAMPLER_SECONDS = Counter("trad_sampler_seconds", "Seconds spent asking the optimizer for "
                          "parameters", ["optimizer"])
JOB_SECONDS = Histogram("trad_job_duration_seconds", "From a job's start to its end, by "
                        "outcome (succeeded, failed, cancelled)", ["outcome"],
                        buckets=_JOB_BUCKETS)
JOB_FAILURES = Counter("trad_job_failures", "Jobs ended failed, by reason (strategy_error, "
                       "gave_up_on_outage, timeout, data_changed, other)", ["reason"])
RECOVERIES = Counter("trad_recoveries", "Work sent again or resumed, by kind (redelivered, "
                     "resumed, watchdog_repair, restored_dead_worker)", ["kind"])
TASK_RETRIES = Counter("trad_task_retries", "Tasks retried after a database or broker "
                       "outage", ["task"])
HTTP_REQUESTS = Counter("trad_http_requests", "HTTP requests answered, by route, method and "
                        "status", ["route", "method", "status"])
HTTP_SECONDS = Histogram("trad_http_request_duration_seconds", "Time to an HTTP "
                         "response's headers (an event stream: until it starts)",
                         ["route", "method"])
BEAT_SENT = Counter("trad_beat_sent", "Periodic tasks beat sent", ["task"])
BEAT_LAST_SENT = Gauge("trad_beat_last_sent_timestamp_seconds", "When beat last sent a "
                       "periodic task (Unix time)", multiprocess_mode="max")

# Read by the web process from the database and the broker when Prometheus scrapes.
SCRAPE_TIME_GAUGES = ("trad_jobs", "trad_trials_done", "trad_configurations", "trad_queue_depth",
                      "trad_queue_oldest_age_seconds", "trad_workers_online")

OWN_METRICS = (TRIALS, CHUNKS, CHUNK_SECONDS, TRIAL_SECONDS, SAMPLER_SECONDS, JOB_SECONDS,
        JOB_FAILURES, RECOVERIES, TASK_RETRIES, HTTP_REQUESTS, HTTP_SECONDS, BEAT_SENT,
        BEAT_LAST_SENT)


def exported_names() -> set[str]:
    """Every sample name a scrape of Trad's processes can show (a histogram's ``_bucket``,
    ``_count`` and ``_sum``, a counter's ``_total``), for the dashboards' and alerts' check."""
    names = set(SCRAPE_TIME_GAUGES)
    for metric in OWN_METRICS:
        for family in metric.describe():
            for suffix in {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"),
                           "gauge": ("",)}[family.type]:
                names.add(family.name + suffix)
    return names


OUTCOMES = ("succeeded", "failed", "cancelled")
FAILURE_REASONS = ("strategy_error", "gave_up_on_outage", "timeout", "data_changed", "other")
RECOVERY_KINDS = ("redelivered", "resumed", "watchdog_repair", "restored_dead_worker")


def prime() -> None:
    """Every label value the alerts read, at 0, when a process starts: ``increase()`` over
    a series that first appears at 1 sees no increase, so the first repair would not alert."""
    for outcome in OUTCOMES:
        JOB_SECONDS.labels(outcome)
    for reason in FAILURE_REASONS:
        JOB_FAILURES.labels(reason)
    for kind in RECOVERY_KINDS:
        RECOVERIES.labels(kind)


def failure_reason(message: str) -> str:
    """The reason label of a job's failure, from its message."""
    text = (message or "").lower()
    if text.startswith("strategy ") and " failed on trial " in text:
        return "strategy_error"
    if text.startswith("gave up after"):
        return "gave_up_on_outage"
    if "timeout_s" in text or "timed out" in text:
        return "timeout"
    if "candles changed" in text:
        return "data_changed"
    return "other"


def job_ended(outcome: str, started_at, finished_at, message: str | None = None) -> None:
    """Count a top-level job's end (a fold is part of its parent's job)."""
    if started_at is not None and finished_at is not None:
        from datetime import UTC

        # SQLite hands back naive times (stored as UTC).
        started_at, finished_at = (t if t.tzinfo else t.replace(tzinfo=UTC)
                                   for t in (started_at, finished_at))
        JOB_SECONDS.labels(outcome).observe(max(0.0, (finished_at - started_at).total_seconds()))
    if outcome == "failed":
        JOB_FAILURES.labels(failure_reason(message or "")).inc()


# -- multiprocess mode ---------------------------------------------------------------------

_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


def use_multiprocess(family: str) -> str:
    """Turn on multiprocess mode for this process and those it forks, in a fresh directory
    of its own (``family``: web, worker, beat), before any metric has a value. Returns
    the directory."""
    from prometheus_client import values

    path = os.environ.get(_DIR_ENV)
    if not path:
        path = tempfile.mkdtemp(prefix=f"trad-metrics-{family}-")
        os.environ[_DIR_ENV] = path
    else:
        # A directory left by the last run of this process family: its counts would be
        # added to this run's, so start empty.
        shutil.rmtree(path, ignore_errors=True)
        os.makedirs(path, exist_ok=True)
    values.ValueClass = values.MultiProcessValue()
    return path


def multiprocess_registry():
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    return registry


def serve_multiprocess(port: int, bind: str = "127.0.0.1") -> None:
    """Serve this process family's metrics over HTTP from a thread of this process."""
    from prometheus_client import start_http_server

    start_http_server(port, addr=bind, registry=multiprocess_registry())
    log.info("metrics served address=%s:%d", bind, port)


def process_dead(pid: int) -> None:
    """A child process ended: drop its live gauges (its counters stay counted)."""
    if os.environ.get(_DIR_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
