"""GET /metrics: Prometheus exposition of the web process and of what the database and
the broker hold, read at scrape time.

Jobs by status, trials, configurations by stage, queue depths, the oldest waiting
message's age and the workers online come from the database and the broker when
Prometheus asks, so every web process reports the same truth; the web's own counters
(HTTP requests, cancels) are summed over its processes (``app.metrics``).
"""
from __future__ import annotations

import json
import os
import time

from flask import Blueprint, Response, current_app
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select

from app.api.common import settings_of

bp = Blueprint("metrics", __name__)


class _TradCollector:
    def __init__(self, settings):
        self.settings = settings

    def collect(self):
        from app.db.models import TrainedConfiguration, TrainingJob
        from app.db.session import session_scope

        jobs = GaugeMetricFamily("trad_jobs", "Training jobs by status", labels=["status"])
        trials = GaugeMetricFamily("trad_trials_done", "Trials stored, over all jobs")
        configs = GaugeMetricFamily("trad_configurations", "Trained configurations by stage",
                                    labels=["stage"])
        with session_scope(self.settings.database_url) as session:
            for status, count in session.execute(
                    select(TrainingJob.status, func.count()).group_by(TrainingJob.status)):
                jobs.add_metric([status], count)
            trials.add_metric([], session.scalar(select(func.coalesce(func.sum(TrainingJob.trials_done), 0))))
            for stage, count in session.execute(select(TrainedConfiguration.lifecycle_stage, func.count())
                                                .group_by(TrainedConfiguration.lifecycle_stage)):
                configs.add_metric([stage], count)
        yield jobs
        yield trials
        yield configs
        if self.settings.broker_url:
            from workers.celery_app import CONTROL_QUEUE, TRIALS_QUEUE

            import redis

            depth = GaugeMetricFamily("trad_queue_depth", "Messages waiting per queue", labels=["queue"])
            age = GaugeMetricFamily("trad_queue_oldest_age_seconds", "Age of the oldest "
                                    "message waiting per queue (0 when none)", labels=["queue"])
            client = redis.Redis.from_url(self.settings.broker_url, socket_connect_timeout=2)
            prefix = self.settings.redis_prefix
            now = time.time()
            for name in (TRIALS_QUEUE, CONTROL_QUEUE):
                keys = [f"{prefix}{name}"] + [f"{prefix}{name}:{p}" for p in range(1, 10)]
                depth.add_metric([name], sum(client.llen(k) for k in keys))
                # kombu pushes on the left and pops on the right: the oldest is at -1.
                sent = [_sent_at(client.lindex(k, -1)) for k in keys]
                sent = [s for s in sent if s is not None]
                age.add_metric([name], max(0.0, now - min(sent)) if sent else 0.0)
            yield depth
            yield age
            online = GaugeMetricFamily("trad_workers_online", "Workers whose liveness beat "
                                       "is current (workers/liveness.py)")
            online.add_metric([], sum(1 for _ in client.scan_iter(
                match=f"{prefix}trad:held:*", count=500)))
            yield online


def _sent_at(raw) -> float | None:
    """When a waiting message was sent (its ``trad_sent_at`` header, workers/metrics_server)."""
    if raw is None:
        return None
    try:
        value = json.loads(raw).get("headers", {}).get("trad_sent_at")
    except (ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, (int, float)) else None


@bp.get("/metrics")
def metrics():
    from app import metrics as own

    registry = CollectorRegistry()
    registry.register(_TradCollector(settings_of(current_app)))
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client.multiprocess import MultiProcessCollector

        MultiProcessCollector(registry)
    else:   # one process (the Flask server, tests): its own counters
        for metric in own.OWN_METRICS:
            registry.register(metric)
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)
