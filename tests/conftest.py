"""Shared fixtures: random but valid candles; the test run's own Redis key prefix.

The test process is a client of the distributed setup: Celery in it sends to the real
Redis under a prefix of this run's own (removed at the end), and real workers started by
the integration fixtures consume from there. The embedded (eager) mode is tested the way
users meet it, through the ``trad`` command in a subprocess.
"""
from __future__ import annotations

import os
import uuid

import numpy as np
import pytest

from app.backtest.candles import Candles


def random_candles(n: int = 500, seed: int = 0, start_ms: int = 1_600_000_000_000,
                   step_ms: int = 3_600_000, vol: float = 0.01) -> Candles:
    """A random walk with consistent OHLC: open = previous close, high/low around both."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, vol, n)))
    open_ = np.concatenate(([100.0], close[:-1]))
    top = np.maximum(open_, close)
    bottom = np.minimum(open_, close)
    high = top * (1.0 + np.abs(rng.normal(0.0, vol / 2, n)))
    low = bottom * (1.0 - np.abs(rng.normal(0.0, vol / 2, n)))
    volume = rng.uniform(1.0, 100.0, n)
    ts = start_ms + step_ms * np.arange(n, dtype=np.int64)
    return Candles(ts, open_, high, low, close, volume)


@pytest.fixture
def candles() -> Candles:
    return random_candles()


REDIS_PREFIX = f"trad-test-{os.getpid()}-{uuid.uuid4().hex[:6]}:"


def pytest_configure(config):
    os.environ.setdefault("CELERY_BROKER_URL", os.environ.get("TRAD_TEST_REDIS_URL",
                                                              "redis://127.0.0.1:6379/0"))
    os.environ.setdefault("TRAD_REDIS_PREFIX", REDIS_PREFIX)
    # Short limits, so a test that kills a worker sees its chunk redelivered in seconds.
    os.environ.setdefault("TRAD_TASK_SOFT_LIMIT_S", "10")
    os.environ.setdefault("TRAD_TASK_HARD_LIMIT_S", "12")
    os.environ.setdefault("TRAD_VISIBILITY_TIMEOUT_S", "15")


def pytest_unconfigure(config):
    prefix = os.environ.get("TRAD_REDIS_PREFIX", "")
    if not prefix.startswith("trad-test-"):
        return
    try:
        import redis

        client = redis.Redis.from_url(os.environ["CELERY_BROKER_URL"], socket_connect_timeout=2)
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
    except Exception:  # noqa: BLE001 - nothing to clean when Redis was never reachable
        pass
