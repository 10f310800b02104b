"""Thin Celery tasks: ids in, a service call, a small summary out. No backtest logic."""
from __future__ import annotations

import ast
import logging
import re

from celery import Task, shared_task
from celery.exceptions import ChordError, Retry

from app.errors import TradError, transient
from app.metrics import RECOVERIES
from app.services import market_data, training
from workers import pipeline

log = logging.getLogger(__name__)

# A database or broker blip (a restart, a failover, a dropped connection) is retried with
# exponential backoff and jitter, 1 s doubling to at most 30 s, 8 times: about two minutes
# of outage before a job gives up on it, saying so.
TRANSIENT_RETRIES = 8


def _settings():
    from workers.celery_app import celery_app

    return celery_app.conf.trad_settings


def _redelivered(task) -> bool:
    """True when the broker sent this message again because the worker that had it died
    (or its pool process was killed) before acknowledging it, or this is a retry."""
    return bool((task.request.delivery_info or {}).get("redelivered")) or task.request.retries > 0


_CHORD_DEPENDENCY = re.compile(r"^Dependency \S+ raised (\w+)\((.*)\)$", re.S)


def _chord_cause(exc: BaseException) -> str | None:
    """The message of the chunk's own error inside a ChordError ("Dependency <id> raised
    JobFailed('...')"): a person reads what the strategy did, not Celery's wrapping."""
    match = _CHORD_DEPENDENCY.match(str(exc))
    if match is None:
        return None
    name, args = match.groups()
    try:
        message = ast.literal_eval(args)
    except (ValueError, SyntaxError):
        message = args
    if not isinstance(message, str):
        message = args
    return message if name in _TRAD_ERRORS else f"{name}: {message}"


_OUTAGES = {"ConnectionError", "TimeoutError", "OperationalError", "InterfaceError",
            "BusyLoadingError"}


def _chord_outage(exc: BaseException) -> bool:
    """A ChordError over a chunk that met an outage outside its body ("Dependency <id>
    raised network:ConnectionError": its result could not be stored while Redis was
    down), not over the chunk's own error."""
    if not isinstance(exc, ChordError):
        return False
    match = re.search(r"^Dependency \S+ raised (?:network:)?(\w+)", str(exc))
    return bool(match) and match.group(1) in _OUTAGES


_TRAD_ERRORS = {"TradError", "InputError", "JobFailed", "Unprocessable", "NotFound", "Conflict"}


def describe(exc: BaseException, retries: int = 0) -> str:
    """What a person reads in the job's error: its own fault, or an outage outlasted."""
    if isinstance(exc, TradError):
        return str(exc)
    if isinstance(exc, ChordError) and (cause := _chord_cause(exc)) is not None:
        return cause
    what = f"{exc.__class__.__name__}: {_first_line(exc)}"
    if transient(exc):
        return (f"gave up after {retries} retries over about two minutes: the database or "
                f"broker stayed unreachable ({what}); resubmit the job once it is back")
    return what


def _fail(job_id: str, exc: BaseException, retries: int = 0) -> None:
    """Mark the job failed; never raises (an errback that raises leaves the job to the
    watchdog with no message). If the database itself is out of reach, the watchdog ends
    or repairs the job when it is back."""
    try:
        training.fail_job(_settings(), job_id, describe(exc, retries))
    except Exception as error:  # noqa: BLE001 - logged; the watchdog is the backstop
        log.warning("could not mark the job failed job_id=%s error=%s: %s", job_id,
                    error.__class__.__name__, error)


class JobTask(Task):
    """A task of one job: transient errors (``app.errors.transient``) retried with Celery's
    exponential backoff; any other failure, or the retries run out, ends the job ``failed``
    with a message saying which. (Celery's ``autoretry_for`` takes classes only; whether an
    error is transient depends on more than its class.)"""

    retry_backoff = 1
    retry_backoff_max = 30
    retry_jitter = True

    def __call__(self, *args, **kwargs):
        try:
            return self.run(*args, **kwargs)
        except Retry:
            raise
        except Exception as exc:
            if transient(exc) and self.request.retries < TRANSIENT_RETRIES:
                from celery.utils.time import get_exponential_backoff_interval

                countdown = get_exponential_backoff_interval(
                    self.retry_backoff, self.request.retries, self.retry_backoff_max,
                    self.retry_jitter)
                from app.metrics import TASK_RETRIES

                TASK_RETRIES.labels(self.name).inc()
                log.warning("transient error, retrying task=%s retry=%d in=%.1fs error=%s: %s",
                            self.name, self.request.retries + 1, countdown,
                            exc.__class__.__name__, _first_line(exc))
                try:
                    raise self.retry(exc=exc, countdown=countdown,
                                     max_retries=TRANSIENT_RETRIES + training.FINISH_RETRIES)
                except Retry:
                    raise
                except Exception as publish:  # noqa: BLE001 - the broker itself is down
                    # No retry can be sent: the message stays unacknowledged with the broker,
                    # which hands it out again, or the watchdog repairs the stalled job.
                    # Either way the job is not failed for an outage it may outlive.
                    self.request.trad_transient = True
                    log.warning("could not schedule the retry task=%s error=%s: %s", self.name,
                                publish.__class__.__name__, _first_line(publish))
                    raise exc from None
            raise

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        job_id = _job_id(self, args, kwargs)
        if job_id is None or getattr(self.request, "trad_transient", False):
            return
        if transient(exc) and self.request.retries < TRANSIENT_RETRIES:
            # An outage met outside the task's body (storing its result in the backend
            # while Redis restarts): its body retries such errors itself, so this one
            # came after; the message is still unacknowledged, and redelivery or the
            # watchdog brings the work back. Not the job's failure.
            log.warning("outage after the task's body, job left running task=%s job_id=%s "
                        "error=%s", self.name, job_id, exc.__class__.__name__)
            return
        _fail(job_id, exc, self.request.retries)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def _job_id(task, args, kwargs) -> str | None:
    import inspect

    try:
        return inspect.signature(task.run).bind(*args, **kwargs).arguments.get("job_id")
    except TypeError:
        return None


@shared_task(name="trad.start_job", bind=True, base=JobTask)
def start_job(self, job_id: str) -> dict:
    """Load and fingerprint the candles, then send round 0 as a chord."""
    try:
        plan = training.start_job(_settings(), job_id, resume=_redelivered(self))
    except TradError as exc:
        _fail(job_id, exc)
        return {"job_id": job_id, "failed": str(exc)}
    return pipeline.send(plan)


@shared_task(name="trad.run_trials", bind=True, base=JobTask)
def run_trials(self, job_id: str, round_no: int, chunk: dict) -> dict:
    """Backtest one chunk of a round (the chord's header). Its trials are written
    idempotently, so a retry or a redelivery only fills in what is missing."""
    if _redelivered(self) and not self.request.retries:
        RECOVERIES.labels("redelivered").inc()
    return training.run_chunk(_settings(), job_id, round_no, training.Chunk.from_message(chunk))


@shared_task(name="trad.finish_round", bind=True, base=JobTask)
def finish_round(self, results: list, job_id: str, round_no: int, expected: int,
                 resume: bool = False) -> dict:
    """The chord's body: tell the round, then send the next one or finish the job.
    ``resume``: sent by the watchdog for a finish that was lost (as a redelivery is)."""
    try:
        asked = sum(r.get("ask_s", 0.0) for r in results or () if isinstance(r, dict))
        plan = training.finish_round(_settings(), job_id, round_no, expected,
                                     resume=resume or _redelivered(self), asked_s=asked)
    except TradError as exc:
        _fail(job_id, exc)
        return {"job_id": job_id, "failed": str(exc)}
    if isinstance(plan, training.Wait):
        # A chunk was redelivered after its first run reported to the chord: its trials
        # are on their way. Wait for them rather than finish short.
        if self.request.retries >= training.FINISH_RETRIES:
            training.fail_job(_settings(), job_id,
                              f"round {round_no}: only {plan.stored} of {expected} trials "
                              "arrived; resubmit the job")
            return {"job_id": job_id, "failed": "missing trials"}
        raise self.retry(countdown=2, max_retries=TRANSIENT_RETRIES + training.FINISH_RETRIES)
    return pipeline.send(plan)


@shared_task(name="trad.export_study")
def export_study(job_id: str) -> str | None:
    """After a sequential job: its study into optuna's storage, for optuna-dashboard."""
    return training.export_study(_settings(), job_id)


@shared_task(name="trad.on_chord_error")
def on_chord_error(request, exc, traceback, job_id: str) -> None:
    """Errback of every round: a failed chunk ends the job failed with its message. Never
    raises (see ``_fail``)."""
    if isinstance(exc, Retry):
        return
    retries = getattr(request, "retries", 0) or 0
    if (transient(exc) or _chord_outage(exc)) and retries < TRANSIENT_RETRIES:
        # A chunk that could not even schedule its retry (see JobTask): redelivery or the
        # watchdog brings its trials; the job is not failed for an outage.
        log.warning("chunk failed on an outage, job left running job_id=%s error=%s",
                    job_id, exc.__class__.__name__)
        return
    _fail(job_id, exc, retries)


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
