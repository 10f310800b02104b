"""Trad: find trading-strategy parameters that hold up out of sample.

The domain packages (``app.backtest``, ``app.strategies``, ``app.validation``) are pure
numpy; importing ``app`` itself pulls in nothing heavy. ``create_app`` builds the Flask
application and imports Flask only when called.
"""
from __future__ import annotations

__all__ = ["create_app", "__version__"]

from app._version import __version__


def create_app(test_config: dict | None = None):
    """Build the Flask application (see ``app.api``)."""
    from app.api import build_app

    return build_app(test_config)
