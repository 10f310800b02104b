"""Trad: find trading-strategy parameters that hold up out of sample.

The domain packages (``app.backtest``, ``app.strategies``, ``app.validation``) are pure
numpy; importing ``app`` itself pulls in nothing heavy. ``create_app`` builds the Flask
application and imports Flask only when called.
"""
from __future__ import annotations

__all__ = ["create_app", "__version__"]

from app._version import __version__


def create_app(test_config: dict | None = None):
    """Build the Flask application (see ``app.api``). Started by a server (gunicorn's
    ``app:create_app()``), wrong settings stop it with one line each, no traceback."""
    from app.api import build_app

    if test_config is not None:
        return build_app(test_config)
    from app.config import exit_on_bad_settings

    return exit_on_bad_settings(build_app)
