"""What every blueprint needs: the app's settings and the request's JSON body."""
from __future__ import annotations

from flask import Flask, g, request
from werkzeug.routing import BaseConverter

from app.config import Settings
from app.errors import InputError, no_nul

__all__ = ["JobIdConverter", "UnsupportedMediaType", "actor", "json_body", "no_nul",
           "refuse_nul", "settings_of"]


class JobIdConverter(BaseConverter):
    """A job id in a path: any segment but ``start`` and ``jobs``, the training routes' own
    words (so ``GET /training/start`` is a 405 naming POST, not a job called start)."""

    regex = r"(?!(?:start|jobs)\b)[^/]+"


class UnsupportedMediaType(InputError):
    """A body that does not say it is JSON (HTTP 415)."""

    code = "unsupported_media_type"
    status = 415


def settings_of(app: Flask) -> Settings:
    return app.extensions["trad.settings"]


def actor() -> str:
    """The name the request acts under: its token's name (``TRAD_API_TOKENS=name:secret``),
    "open-api" with ``TRAD_API_OPEN=1``; never something the client says of itself."""
    return g.get("actor") or "anonymous"


def json_body():
    """The request's JSON object, or a 400 that says what is wrong with it."""
    if not request.data:
        raise InputError("the request has no body; send a JSON object",
                         hint="Content-Type: application/json")
    if not request.is_json:
        raise UnsupportedMediaType(
            f"the body is sent as {request.mimetype or 'no content type'}, not JSON",
            hint="send it with Content-Type: application/json")
    try:
        body = request.get_json(silent=False)
    except Exception:  # noqa: BLE001 - werkzeug raises several kinds for bad JSON
        raise InputError("the body is not valid JSON", hint="check quotes and commas") from None
    if not isinstance(body, dict):
        raise InputError("the body must be a JSON object")
    return body


def refuse_nul():
    """Before every request: no NUL in the path or the query, and no query parameter the
    operation does not take (a misspelt filter would silently filter nothing)."""
    no_nul(request.path, "path")
    for key, values in request.args.lists():
        no_nul(key, "query")
        for v in values:
            no_nul(v, key)
            if len(v) > MAX_QUERY_VALUE:
                raise InputError(f"{key} is {len(v)} characters long, more than {MAX_QUERY_VALUE}",
                                 field=key)
    if request.url_rule is None:
        return
    import re

    from app.errors import did_you_mean

    path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", request.url_rule.rule)
    allowed = _query_names().get((path, request.method.lower()))
    if allowed is None:
        return
    for key in request.args:
        if key not in allowed:
            raise InputError(f"unknown query parameter {key!r}", field=key,
                             hint=did_you_mean(key, allowed) if allowed else "this takes none")


_QUERY_NAMES: dict = {}
MAX_QUERY_VALUE = 256


def _query_names() -> dict:
    """``(path, method) -> query parameter names`` of every operation of the API document."""
    if not _QUERY_NAMES:
        from app.api.openapi import document

        for path, ops in document()["paths"].items():
            for method, op in ops.items():
                _QUERY_NAMES[(path, method)] = [p["name"] for p in op.get("parameters", [])
                                                if p["in"] == "query"]
    return _QUERY_NAMES
