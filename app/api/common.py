"""What every blueprint needs: the app's settings and the request's JSON body."""
from __future__ import annotations

from flask import Flask, request

from app.config import Settings
from app.errors import InputError

__all__ = ["UnsupportedMediaType", "json_body", "settings_of"]


class UnsupportedMediaType(InputError):
    """A body that does not say it is JSON (HTTP 415)."""

    code = "unsupported_media_type"
    status = 415


def settings_of(app: Flask) -> Settings:
    return app.extensions["trad.settings"]


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
