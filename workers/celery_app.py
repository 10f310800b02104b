"""The Celery app and its settings: queues, acknowledgements, limits, routes, beat.

Without a broker configured (the embedded default) tasks run in-process (eager), so the
same code paths serve ``trad optimize`` on a bare machine and a fleet of workers.
"""
from __future__ import annotations

import warnings

from celery import Celery
from celery.exceptions import CPendingDeprecationWarning
from celery.signals import before_task_publish, setup_logging, worker_process_init, worker_ready

from app.config import Settings, exit_on_bad_settings, load_settings
from app.logging_setup import configure_logging
from workers import log_context  # noqa: F401 - its signals put job_id on a job's lines

__all__ = ["celery_app", "configure"]

TRIALS_QUEUE = "trad.trials"
CONTROL_QUEUE = "trad.control"

# Results: a round's chord needs its header's (run_trials) in the result backend; the
# watchdog's is read by whoever calls it by hand (beat's own calls store none). Nobody
# reads the others': not stored, from any sender (the header set on publish, since a
# sender without the task module, the web, would otherwise ask for a result).
RESULTS_NOBODY_READS = frozenset({"trad.start_job", "trad.finish_round", "trad.export_study",
                                  "trad.on_chord_error", "trad.refresh_market_data"})
RESULT_EXPIRES_S = 3600


def result_expires(settings: Settings) -> int:
    """An hour, or twice the stall window when that is longer: a round's chord state (its
    header's results, Redis' chord counter) outlives any round the watchdog leaves alone."""
    return int(max(RESULT_EXPIRES_S, 2 * settings.stall_after_s))


@before_task_publish.connect
def _store_no_result(sender=None, headers=None, **_kwargs) -> None:
    if sender in RESULTS_NOBODY_READS and headers is not None:
        headers["ignore_result"] = True


@worker_process_init.connect
def _quiet_the_outage_notice(**_kwargs) -> None:
    """Celery warns when a task's result cannot be stored ("Exception raised outside body:
    network:..."): JobTask.on_failure and the errback handle that outage (the message is
    redelivered), and says so in its own log line."""
    warnings.filterwarnings("ignore", message=r"Exception raised outside body: network:",
                            category=RuntimeWarning)


@worker_ready.connect
def _quiet_the_cancel_notice(**_kwargs) -> None:
    """Celery warns on every broker connection loss that
    ``worker_cancel_long_running_tasks_on_connection_loss`` will change its default; Trad
    sets it on purpose (see ``configure``). Installed once the worker runs: its logging
    setup puts an "always" filter for such notices in front of any set before."""
    warnings.filterwarnings("ignore", message=r"\s*In Celery 5\.1 we introduced an optional "
                            r"breaking change", category=CPendingDeprecationWarning)



def configure(app: Celery, settings: Settings) -> Celery:
    soft, hard, visibility = settings.task_time_limits
    transport = {
        "visibility_timeout": visibility,
        # How often a worker looks for messages of dead workers to redeliver (kombu scans
        # on every tenth look): a small fraction of the visibility timeout.
        "unacked_restore_interval": max(0.5, min(10.0, visibility / 30.0)),
        # Redis emulates priorities with one list per step; 0 is served first.
        "priority_steps": list(range(10)),
        "sep": ":",
        "queue_order_strategy": "priority",
    }
    if settings.redis_prefix:
        transport["global_keyprefix"] = settings.redis_prefix
    redis_broker = (settings.broker_url or "").startswith(("redis://", "rediss://"))
    app.conf.update(
        broker_url=settings.broker_url or "memory://",
        broker_transport="workers.redis_broker:Transport" if redis_broker else None,
        result_backend=settings.result_backend or None,
        # Stored results: only what someone reads (see RESULTS_NOBODY_READS), kept an hour.
        result_expires=result_expires(settings),
        task_annotations={name: {"ignore_result": True} for name in RESULTS_NOBODY_READS},
        task_always_eager=settings.embedded,
        task_eager_propagates=True,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        # A task still running when the broker connection drops is left to finish (its
        # trials and its chord result are stored; its message, which it can no longer
        # acknowledge, comes back and finds nothing left to do). Cancelling it instead
        # (Celery 6's default) fails the round's chord: TaskRevokedError.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_soft_time_limit=soft,
        task_time_limit=hard,
        broker_transport_options=transport,
        result_backend_transport_options=transport,
        broker_connection_retry_on_startup=True,
        task_default_queue=CONTROL_QUEUE,
        task_routes={"trad.run_trials": {"queue": TRIALS_QUEUE}},
        task_queue_max_priority=9,
        task_default_priority=4,
        task_track_started=True,
        worker_hijack_root_logger=False,
        timezone="UTC",
        enable_utc=True,
        beat_schedule=_beat_schedule(settings),
    )
    app.conf.trad_settings = settings
    return app


def _beat_schedule(settings: Settings) -> dict:
    schedule = {
        "watchdog": {"task": "trad.watchdog", "schedule": settings.watchdog_interval_s,
                     "options": {"queue": CONTROL_QUEUE, "expires": settings.watchdog_interval_s,
                                 "ignore_result": True}},
    }
    if settings.data_watch:
        schedule["refresh-market-data"] = {
            "task": "trad.refresh_market_data",
            "schedule": settings.data_watch_interval_s,
            "options": {"queue": CONTROL_QUEUE, "expires": settings.data_watch_interval_s,
                        "ignore_result": True},
        }
    return schedule


@setup_logging.connect
def _logging(**_kwargs) -> None:
    # Connected, so Celery does not install its own handlers next to ours.
    settings = celery_app.conf.trad_settings
    configure_logging(settings.log_level, settings.log_format)


celery_app = configure(Celery("trad", include=["workers.tasks"]), exit_on_bad_settings(load_settings))


def connect_for_sending() -> None:
    """The result backend's client and a producer's broker connection, made now (once a
    process has forked) instead of by its first send; raises if the broker is out of reach
    (after one quick retry)."""
    celery_app.backend  # noqa: B018 - made on first access
    with celery_app.producer_or_acquire() as producer:
        producer.connection.ensure_connection(max_retries=1, interval_start=0.5, timeout=2)


def _add_steps(app: Celery) -> None:
    from workers import metrics_server, warmup  # noqa: F401 - their signal handlers
    from workers.liveness import HeldMessages

    app.steps["consumer"].add(HeldMessages)


_add_steps(celery_app)
