"""One logging setup for every process: key=value lines on stderr, each line once."""
from __future__ import annotations

import logging
import sys

__all__ = ["configure_logging"]

_FORMAT = "%(asctime)s level=%(levelname)s logger=%(name)s %(message)s"
_MARK = "_trad_handler"


def configure_logging(level: str = "INFO") -> None:
    """Install one stderr handler on the root logger (idempotent: calling it again,
    as Celery's and gunicorn's start-up paths may, never doubles a line)."""
    root = logging.getLogger()
    for handler in root.handlers:
        if getattr(handler, _MARK, False):
            root.setLevel(level)
            return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(_FORMAT))
    setattr(handler, _MARK, True)
    root.addHandler(handler)
    root.setLevel(level)
    # Libraries that log per request or per trial at INFO would drown the job's lines.
    for noisy in ("optuna", "urllib3", "ccxt", "alembic.runtime.migration"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
