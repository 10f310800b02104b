"""The HTTP face: a Flask app factory, JSON errors, one blueprint per resource."""
from __future__ import annotations

import hmac
import logging
import time

from flask import Flask, g, jsonify, request
from werkzeug.exceptions import HTTPException

from app.api.common import JobIdConverter, json_body, refuse_nul, settings_of
from app.config import Settings, SettingsError, load_settings
from app.errors import InputError, TradError

__all__ = ["build_app", "settings_of", "json_body", "PUBLIC_PATHS"]

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1 << 20


# What answers without a token even when tokens are set: liveness for the orchestrator, the
# API's own document, and the dashboard's HTML (its calls to /api/v2 carry the token).
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/api/v2/openapi.json", "/"})
# The pages (HTML and their vendored scripts): what they show comes from /api/v2.
PUBLIC_PREFIXES = ("/static/", "/jobs/", "/configurations/")


def _check_token(settings: Settings):
    """Who is calling: the name of the token presented, kept in ``g.actor`` for the audit
    trail; a 401 when a token is needed and missing or wrong. With ``TRAD_API_OPEN=1`` there
    are no tokens and the actor is "open-api"."""
    if settings.api_open:
        g.actor = "open-api"
        return None
    if request.path in PUBLIC_PATHS or request.path.startswith(PUBLIC_PREFIXES):
        return None
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        given = token.strip().encode()
        # Compare against every token, in constant time each, whatever matches first.
        actor = None
        for known in settings.api_tokens:
            if hmac.compare_digest(given, known.secret.encode()) and actor is None:
                actor = known.name
        if actor is not None:
            g.actor = actor
            return None
    return _error(401, "unauthorized", "missing or wrong bearer token",
                  None)[0], 401, {"WWW-Authenticate": 'Bearer realm="trad"'}


def _start_clock():
    g.started = time.perf_counter()


def _count_request(response):
    """Every answer in the HTTP metrics, by the route's rule (``/api/v2/training/<job:job_id>``,
    never the id itself, so the labels stay few) or ``unmatched``."""
    from app.metrics import HTTP_REQUESTS, HTTP_SECONDS

    route = request.url_rule.rule if request.url_rule is not None else "unmatched"
    HTTP_REQUESTS.labels(route, request.method, str(response.status_code)).inc()
    if "started" in g:
        HTTP_SECONDS.labels(route, request.method).observe(time.perf_counter() - g.started)
    return response


def _error(status: int, code: str, message: str, field: str | None = None):
    body = {"code": code, "message": message}
    if field is not None:
        body["field"] = field
    return jsonify({"error": body}), status


def _register_errors(app: Flask) -> None:
    from app.db.migrate import SchemaMissing

    @app.errorhandler(InputError)
    def _input_error(exc: InputError):
        return _error(getattr(exc, "status", 400), exc.code, str(exc), exc.field)

    @app.errorhandler(SchemaMissing)
    def _schema_missing(exc: SchemaMissing):
        return _error(503, exc.code, str(exc))

    @app.errorhandler(TradError)
    def _trad_error(exc: TradError):
        return _error(getattr(exc, "status", 400), exc.code, str(exc), exc.field)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        code = (exc.name or "error").lower().replace(" ", "_")
        message = exc.description or exc.name
        if exc.code == 413:
            message = f"request body over {MAX_BODY_BYTES} bytes; send a smaller body"
        body, status = _error(exc.code or 500, code, message)
        # What the exception says of itself (a 405's Allow), but not its own content type.
        headers = [(k, v) for k, v in exc.get_headers() if k.lower() != "content-type"]
        return body, status, headers

    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError
    from sqlalchemy.exc import DBAPIError

    @app.errorhandler(DBAPIError)
    def _database_error(exc: DBAPIError):
        # The schema not there yet (a table missing) or the database out of reach are the
        # operator's to fix, a 503 the client may retry; anything else is a bug (a 500).
        from app.db.migrate import require_schema

        try:
            require_schema(settings_of(app).database_url)
        except SchemaMissing as missing:
            return _error(503, missing.code, str(missing))
        except DBAPIError:
            log.warning("database unavailable path=%s error=%s", request.path,
                        type(exc.orig).__name__)
            return (*_error(503, "database_unavailable",
                            "the database is unavailable; retry in a few seconds"),
                    {"Retry-After": "5"})
        if exc.connection_invalidated:
            return (*_error(503, "database_unavailable",
                            "the database connection was lost; retry"), {"Retry-After": "1"})
        return _unexpected(exc)

    @app.errorhandler(RedisConnectionError)
    @app.errorhandler(RedisTimeoutError)
    def _broker_error(exc: Exception):
        log.warning("broker unavailable path=%s error=%s", request.path, type(exc).__name__)
        return (*_error(503, "broker_unavailable", "the broker is unavailable; retry in a few "
                        "seconds"), {"Retry-After": "5"})

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        # A bug, not a request mistake: log it with its traceback, answer without one.
        log.exception("unhandled error path=%s", request.path)
        return _error(500, "internal_error", "internal error; it has been logged")


def build_app(test_config: dict | None = None) -> Flask:
    """Create the Flask app. ``test_config`` may carry ``settings`` (a Settings object)
    or an ``environ`` dict to read settings from."""
    test_config = dict(test_config or {})
    settings = test_config.pop("settings", None) or load_settings(test_config.pop("environ", None))
    from app.logging_setup import configure_logging

    configure_logging(settings.log_level, settings.log_format)
    if not settings.api_tokens and not settings.api_open:
        raise SettingsError("no TRAD_API_TOKENS: set name:secret pairs (TRAD_API_TOKENS="
                            "alice:<secret>,bob:<secret>), or TRAD_API_OPEN=1 to serve the API "
                            "without tokens on a trusted network")
    app = Flask(__name__, static_folder=None)  # the pages serve theirs (app.web)
    # No automatic OPTIONS: a route answers the methods the OpenAPI document lists (an
    # OPTIONS is a 405 with the Allow header naming them).
    app.config.update(MAX_CONTENT_LENGTH=MAX_BODY_BYTES, JSON_SORT_KEYS=False,
                      PROVIDE_AUTOMATIC_OPTIONS=False)
    app.config.update(test_config)
    app.url_map.converters["job"] = JobIdConverter
    app.extensions["trad.settings"] = settings
    app.extensions["trad.enqueue"] = test_config.get("ENQUEUE") or _default_enqueue
    _register_errors(app)
    from app.metrics import prime

    prime()
    app.before_request(_start_clock)
    app.before_request(refuse_nul)
    app.before_request(lambda: _check_token(settings))
    app.after_request(_count_request)
    if settings.api_open:
        log.warning("api open: TRAD_API_OPEN=1, so every route takes requests without a "
                    "token; set TRAD_API_TOKENS instead before exposing this server")

    from app.api.configurations import bp as configurations_bp
    from app.api.market_data import bp as market_data_bp
    from app.api.metrics import bp as metrics_bp
    from app.api.openapi import bp as openapi_bp
    from app.api.ops import bp as ops_bp
    from app.api.research import bp as research_bp
    from app.api.strategies import bp as strategies_bp
    from app.api.training import bp as training_bp

    from app.web import bp as web_bp

    app.register_blueprint(ops_bp)
    app.register_blueprint(metrics_bp)
    app.register_blueprint(web_bp)
    for bp in (market_data_bp, training_bp, research_bp, configurations_bp, strategies_bp,
               openapi_bp):
        app.register_blueprint(bp, url_prefix="/api/v2")
    return app


def _default_enqueue(job_id: str, priority: int) -> None:
    from workers.pipeline import enqueue_start

    enqueue_start(job_id, priority)


def warm(app: Flask) -> None:
    """A web worker's first request as fast as its next (0.32 s -> 0.03 s for a training
    job's POST): the enqueue's modules (Celery's canvas, kombu: 0.16 s of imports), the
    broker connection and the database's schema check, done once the worker has forked
    (gunicorn's post_worker_init), never before: connections must not cross a fork. A
    warm-up that fails (the broker down) only leaves the first request slower."""
    settings = settings_of(app)
    started = time.perf_counter()
    try:
        from app.api.common import _query_names
        from app.db.migrate import require_schema

        _query_names()  # the API document's query parameters, read by every request's check
        require_schema(settings.database_url)
        from app.services.jobs import warm_submit

        warm_submit(settings)   # a POST's validation and candle checks, read-only
        if not settings.embedded and app.extensions["trad.enqueue"] is _default_enqueue:
            import workers.pipeline  # noqa: F401 - imported here, not on the first POST
            from workers.celery_app import connect_for_sending

            connect_for_sending()
    except Exception as exc:  # noqa: BLE001 - a cold first request is slower, never wrong
        log.warning("web warm-up incomplete error=%s: %s", type(exc).__name__,
                    str(exc).splitlines()[0] if str(exc) else "")
        return
    log.info("web worker warmed seconds=%.2f", time.perf_counter() - started)
