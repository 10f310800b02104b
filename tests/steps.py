"""A job driven through its steps in this process, as the tasks would drive it (for the
tests that look at a step), and a job awaited while real workers run it."""
from __future__ import annotations

import time

from app.services import jobs, training

FIVE_MIN = 300_000
START = 1_700_000_100_000 // FIVE_MIN * FIVE_MIN


def run_round(settings, plan: training.Round):
    """Every chunk of the round, then its finish_round; returns what that asks next."""
    for chunk in plan.chunks:
        training.run_chunk(settings, plan.job_id, plan.number, chunk)
    return training.finish_round(settings, plan.job_id, plan.number, plan.expected)


def drive(settings, plan) -> training.Done:
    """Follow a step's plan to the end: rounds run here, folds started and driven here."""
    while True:
        if isinstance(plan, training.Round):
            plan = run_round(settings, plan)
        elif isinstance(plan, training.Folds):
            for child in plan.folds:
                drive(settings, training.start_job(settings, child.job_id))
            return training.Done(plan.job_id, jobs.get_job(settings, plan.job_id)["status"])
        elif isinstance(plan, training.Done):
            return plan
        else:
            raise AssertionError(f"a step asked for {plan!r} in a job run in-process")


def run_job(settings, body: dict) -> dict:
    """Submit ``body`` and run the job here to its end; returns the job's view. A step that
    fails the job (JobFailed) ends it failed, as the task would."""
    job_id = jobs.submit(settings, body, lambda job_id, priority: None)["job_id"]
    try:
        drive(settings, training.start_job(settings, job_id))
    except training.JobFailed as exc:
        training.fail_job(settings, job_id, str(exc))
    return jobs.get_job(settings, job_id)


def wait_for(settings, job_id, timeout=120.0, until=("succeeded", "failed", "cancelled")) -> dict:
    """The job's view once its status is one of ``until`` (polled: workers run it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = jobs.get_job(settings, job_id)
        if job["status"] in until:
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} still {job['status']} after {timeout} s")


def submit_sma(settings, **changes) -> str:
    """An SMA_CROSS job over the fixture's BTC/USDT 5m candles, not sent anywhere: the
    test drives its steps."""
    body = {"strategy": "SMA_CROSS", "symbol": "BTC/USDT", "exchange": "binanceus",
            "timeframe": "5m", "optimizer": "random", "lookback_days": 5, "n_iterations": 30,
            "min_trades": 1, "seed": 7, **changes}
    return jobs.submit(settings, body, lambda job_id, priority: None)["job_id"]


def chunks_of(plan) -> list:
    """What a round sends, comparable across two plans."""
    return [(c.numbers, c.params, c.system_attrs) for c in plan.chunks]
