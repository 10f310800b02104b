"""Candles per worker process, keyed by the job's data fingerprint: loaded from the database once,
never sent through the broker."""
from __future__ import annotations

from app.backtest.candles import Candles
from app.config import Settings
from app.db.market_data import load_candles
from app.db.models import TrainingJob
from app.db.session import session_scope
from app.services.training.context import JobFailed, request_of
from app.strategies.cache import IndicatorCache
from app.validation.split import holdout_split

candles_cache: dict[str, tuple[Candles, IndicatorCache]] = {}


_CANDLES_CACHE_SIZE = 4


def load_job_candles(settings: Settings, job: TrainingJob) -> tuple[Candles, IndicatorCache]:
    """The train part of the job's series, from this process's cache when the
    fingerprint matches (candles never travel through the broker)."""
    key = job.data_fingerprint
    hit = candles_cache.get(key)
    if hit is not None:
        return hit
    with session_scope(settings.database_url) as session:
        candles = load_candles(session, job.exchange, job.symbol, job.timeframe,
                               job.data_start, job.data_end)
    request = request_of(job)
    plan = request.plan
    if plan.method == "holdout":
        candles = candles.slice(0, holdout_split(len(candles), plan.test_fraction))
    if candles.fingerprint != key:
        raise JobFailed("the job's candles changed in the database since it started "
                        f"(fingerprint {candles.fingerprint[:12]} != {key[:12]}); resubmit the job")
    while len(candles_cache) >= _CANDLES_CACHE_SIZE:
        candles_cache.pop(next(iter(candles_cache)))
    entry = (candles, IndicatorCache(candles))
    candles_cache[key] = entry
    return entry
