"""GET /metrics: Prometheus exposition of jobs, trials and queues, read at scrape time.

The numbers come from the database and the broker when Prometheus asks, so every API
process reports the same truth and nothing needs prometheus-client's multiprocess mode.
"""
from __future__ import annotations

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
            client = redis.Redis.from_url(self.settings.broker_url, socket_connect_timeout=2)
            prefix = self.settings.redis_prefix
            for name in (TRIALS_QUEUE, CONTROL_QUEUE):
                keys = [f"{prefix}{name}"] + [f"{prefix}{name}:{p}" for p in range(1, 10)]
                depth.add_metric([name], sum(client.llen(k) for k in keys))
            yield depth


@bp.get("/metrics")
def metrics():
    registry = CollectorRegistry()
    registry.register(_TradCollector(settings_of(current_app)))
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)
