"""Thin Celery tasks: ids in, a service call, a small summary out. No backtest logic."""
from __future__ import annotations

import logging

from celery import shared_task
from celery.exceptions import Retry

from app.errors import TradError
from app.services import market_data, training
from workers import pipeline

log = logging.getLogger(__name__)


def _settings():
    from workers.celery_app import celery_app

    return celery_app.conf.trad_settings


def _redelivered(task) -> bool:
    """True when the broker sent this message again because the worker that had it died
    (or its pool process was killed) before acknowledging it."""
    return bool((task.request.delivery_info or {}).get("redelivered"))


def _fail(job_id: str, exc: BaseException) -> None:
    message = str(exc) if isinstance(exc, TradError) else f"{exc.__class__.__name__}: {exc}"
    training.fail_job(_settings(), job_id, message)


@shared_task(name="trad.start_job", bind=True)
def start_job(self, job_id: str) -> dict:
    """Load and fingerprint the candles, then send round 0 as a chord."""
    try:
        plan = training.start_job(_settings(), job_id, resume=_redelivered(self))
    except Exception as exc:
        _fail(job_id, exc)
        if isinstance(exc, TradError):
            return {"job_id": job_id, "failed": str(exc)}
        raise
    return pipeline.send(plan)


@shared_task(name="trad.run_trials")
def run_trials(job_id: str, round_no: int, chunk: dict) -> dict:
    """Backtest one chunk of a round (the chord's header)."""
    try:
        return training.run_chunk(_settings(), job_id, round_no, training.Chunk.from_message(chunk))
    except Exception as exc:
        _fail(job_id, exc)
        raise


@shared_task(name="trad.finish_round", bind=True, max_retries=training.FINISH_RETRIES)
def finish_round(self, results: list, job_id: str, round_no: int, expected: int,
                 resume: bool = False) -> dict:
    """The chord's body: tell the round, then send the next one or finish the job.
    ``resume``: sent by the watchdog for a finish that was lost (as a redelivery is)."""
    try:
        asked = sum(r.get("ask_s", 0.0) for r in results or () if isinstance(r, dict))
        plan = training.finish_round(_settings(), job_id, round_no, expected,
                                     resume=resume or _redelivered(self), asked_s=asked)
    except Exception as exc:
        _fail(job_id, exc)
        if isinstance(exc, TradError):
            return {"job_id": job_id, "failed": str(exc)}
        raise
    if isinstance(plan, training.Wait):
        # A chunk was redelivered after its first run reported to the chord: its trials
        # are on their way. Wait for them rather than finish short.
        if self.request.retries >= self.max_retries:
            training.fail_job(_settings(), job_id,
                              f"round {round_no}: only {plan.stored} of {expected} trials "
                              "arrived; resubmit the job")
            return {"job_id": job_id, "failed": "missing trials"}
        raise self.retry(countdown=2)
    return pipeline.send(plan)


@shared_task(name="trad.export_study")
def export_study(job_id: str) -> str | None:
    """After a sequential job: its study into optuna's storage, for optuna-dashboard."""
    return training.export_study(_settings(), job_id)


@shared_task(name="trad.on_chord_error")
def on_chord_error(request, exc, traceback, job_id: str) -> None:
    """Errback of every round: a failed chunk ends the job failed with its message."""
    if isinstance(exc, Retry):
        return
    _fail(job_id, exc)


@shared_task(name="trad.watchdog")
def watchdog() -> dict:
    """Beat: end jobs past their deadline; send again the lost work of stalled jobs."""
    expired = training.expire_overdue_jobs(_settings())
    repaired = pipeline.send_repairs(training.repair_stalled_jobs(_settings()))
    if repaired:
        log.warning("stalled jobs repaired job_ids=%s", ",".join(repaired))
    return {"expired": expired, "repaired": repaired}


@shared_task(name="trad.refresh_market_data")
def refresh_market_data() -> list[dict]:
    """Beat: fetch new candles for every series in TRAD_DATA_WATCH."""
    results = market_data.refresh_watched(_settings())
    log.info("refreshed series=%d failed=%d", len(results), sum(not r["ok"] for r in results))
    return results
