"""The Celery app and its settings: queues, acknowledgements, limits, routes, beat.

Without a broker configured (the embedded default) tasks run in-process (eager), so the
same code paths serve ``trad optimize`` on a bare machine and a fleet of workers.
"""
from __future__ import annotations

import warnings

from celery import Celery
from celery.exceptions import CPendingDeprecationWarning
from celery.signals import setup_logging, worker_ready

from app.config import Settings, exit_on_bad_settings, load_settings
from app.logging_setup import configure_logging

__all__ = ["celery_app", "configure"]

TRIALS_QUEUE = "trad.trials"
CONTROL_QUEUE = "trad.control"


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
                     "options": {"queue": CONTROL_QUEUE, "expires": settings.watchdog_interval_s}},
    }
    if settings.data_watch:
        schedule["refresh-market-data"] = {
            "task": "trad.refresh_market_data",
            "schedule": settings.data_watch_interval_s,
            "options": {"queue": CONTROL_QUEUE, "expires": settings.data_watch_interval_s},
        }
    return schedule


@setup_logging.connect
def _logging(**_kwargs) -> None:
    # Connected, so Celery does not install its own handlers next to ours.
    configure_logging(celery_app.conf.trad_settings.log_level)


celery_app = configure(Celery("trad", include=["workers.tasks"]), exit_on_bad_settings(load_settings))


def _add_steps(app: Celery) -> None:
    from workers.liveness import HeldMessages

    app.steps["consumer"].add(HeldMessages)


_add_steps(celery_app)
