"""Liveness and readiness."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify
from sqlalchemy import text

from app.api.common import settings_of

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz():
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz():
    from app.db.session import get_engine

    settings = settings_of(current_app)
    checks = {}
    try:
        with get_engine(settings.database_url).connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - readiness reports, never raises
        checks["database"] = f"unreachable: {exc.__class__.__name__}"
    if settings.broker_url:
        try:
            import redis

            redis.Redis.from_url(settings.broker_url, socket_connect_timeout=2).ping()
            checks["broker"] = "ok"
        except Exception as exc:  # noqa: BLE001
            checks["broker"] = f"unreachable: {exc.__class__.__name__}"
    else:
        checks["broker"] = "embedded"
    ready = all(v in ("ok", "embedded") for v in checks.values())
    return jsonify({"status": "ready" if ready else "not_ready", "checks": checks}), (200 if ready else 503)


@bp.get("/api/v2/queue")
def queue():
    """Depth per queue and the workers that answer a ping."""
    from workers.celery_app import CONTROL_QUEUE, TRIALS_QUEUE, celery_app

    settings = settings_of(current_app)
    if settings.embedded:
        return jsonify({"mode": "embedded", "queues": {TRIALS_QUEUE: 0, CONTROL_QUEUE: 0},
                        "workers": []})
    import redis

    client = redis.Redis.from_url(settings.broker_url, socket_connect_timeout=2)
    prefix = settings.redis_prefix
    depths = {}
    for name in (TRIALS_QUEUE, CONTROL_QUEUE):
        keys = [f"{prefix}{name}"] + [f"{prefix}{name}:{p}" for p in range(1, 10)]
        depths[name] = int(sum(client.llen(k) for k in keys))
    replies = celery_app.control.ping(timeout=0.5) or []
    workers = sorted(name for reply in replies for name in reply)
    return jsonify({"mode": "distributed", "queues": depths, "workers": workers})
