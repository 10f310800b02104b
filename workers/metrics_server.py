"""Each worker's and beat's metrics over HTTP (``app.metrics``), started by Celery's signals.

A worker's main process turns on prometheus_client's multiprocess mode before its pool
forks (``worker_init``), so its pool children's counts land in one directory, and serves
their sum once ready (``TRAD_WORKER_METRICS_PORT``). Beat is one process: it serves its
own registry (``TRAD_BEAT_METRICS_PORT``) and counts each periodic task it sends.
"""
from __future__ import annotations

import logging
import time

from celery import signals

log = logging.getLogger(__name__)

_in_beat = False


def _settings():
    from workers.celery_app import celery_app

    return celery_app.conf.trad_settings


@signals.worker_init.connect
def _worker_metrics_mode(**_kwargs) -> None:
    if _settings().worker_metrics_port:
        from app.metrics import use_multiprocess

        use_multiprocess("worker")


@signals.worker_ready.connect
def _serve_worker_metrics(**_kwargs) -> None:
    settings = _settings()
    if settings.worker_metrics_port:
        from app.metrics import prime, serve_multiprocess

        prime()
        serve_multiprocess(settings.worker_metrics_port, settings.metrics_bind)


@signals.beat_init.connect
def _serve_beat_metrics(**_kwargs) -> None:
    global _in_beat
    _in_beat = True
    settings = _settings()
    if settings.beat_metrics_port:
        from prometheus_client import start_http_server

        start_http_server(settings.beat_metrics_port, addr=settings.metrics_bind)
        log.info("metrics served address=%s:%d", settings.metrics_bind,
                 settings.beat_metrics_port)


@signals.before_task_publish.connect
def _stamp(sender=None, headers=None, **_kwargs) -> None:
    """Every message says when it was sent (the web's oldest-message age reads it)."""
    if headers is not None:
        headers.setdefault("trad_sent_at", time.time())
    if _in_beat and sender:
        from app.metrics import BEAT_LAST_SENT, BEAT_SENT

        BEAT_SENT.labels(sender).inc()
        BEAT_LAST_SENT.set(time.time())
