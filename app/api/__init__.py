"""The HTTP face: a Flask app factory, JSON errors, one blueprint per resource."""
from __future__ import annotations

import hmac
import logging

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from app.api.common import JobIdConverter, json_body, refuse_nul, settings_of
from app.config import Settings, load_settings
from app.errors import InputError, TradError

__all__ = ["build_app", "settings_of", "json_body"]

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1 << 20


def _check_token(settings: Settings):
    if not settings.api_tokens or not request.path.startswith("/api/v2"):
        return None
    if request.path == "/api/v2/openapi.json":
        return None
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token:
        given = token.strip().encode()
        # Compare against every token, in constant time each, whatever matches first.
        ok = False
        for known in settings.api_tokens:
            ok |= hmac.compare_digest(given, known.encode())
        if ok:
            return None
    return _error(401, "unauthorized", "missing or wrong bearer token",
                  None)[0], 401, {"WWW-Authenticate": 'Bearer realm="trad"'}


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

    configure_logging(settings.log_level)
    app = Flask(__name__)
    # No automatic OPTIONS: a route answers the methods the OpenAPI document lists (an
    # OPTIONS is a 405 with the Allow header naming them).
    app.config.update(MAX_CONTENT_LENGTH=MAX_BODY_BYTES, JSON_SORT_KEYS=False,
                      PROVIDE_AUTOMATIC_OPTIONS=False)
    app.config.update(test_config)
    app.url_map.converters["job"] = JobIdConverter
    app.extensions["trad.settings"] = settings
    app.extensions["trad.enqueue"] = test_config.get("ENQUEUE") or _default_enqueue
    _register_errors(app)
    app.before_request(refuse_nul)
    app.before_request(lambda: _check_token(settings))
    if not settings.api_tokens:
        log.warning("api open: TRAD_API_TOKENS is not set, so /api/v2 takes requests "
                    "without a token; set it before exposing this server")

    from app.api.configurations import bp as configurations_bp
    from app.api.market_data import bp as market_data_bp
    from app.api.metrics import bp as metrics_bp
    from app.api.openapi import bp as openapi_bp
    from app.api.ops import bp as ops_bp
    from app.api.strategies import bp as strategies_bp
    from app.api.training import bp as training_bp

    from app.web import bp as web_bp

    app.register_blueprint(ops_bp)
    app.register_blueprint(metrics_bp)
    app.register_blueprint(web_bp)
    for bp in (market_data_bp, training_bp, configurations_bp, strategies_bp, openapi_bp):
        app.register_blueprint(bp, url_prefix="/api/v2")
    return app


def _default_enqueue(job_id: str, priority: int) -> None:
    from workers.pipeline import enqueue_start

    enqueue_start(job_id, priority)
