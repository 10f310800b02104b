"""A worker's first job as fast as its next ones: the work a first job would do once for
the process (numba kernels loaded from their cache or compiled, each built-in strategy's
indicators, the finish's checks) done by the main process before its pool forks, so
every pool child starts warm (fork shares what was loaded).

Nothing done before the fork touches the database or the broker: connections must not
cross a fork. Each pool process connects once forked (worker_process_init).
"""
from __future__ import annotations

import logging
import time

from celery import signals

log = logging.getLogger(__name__)

BARS = 600


def _candles(n: int = BARS):
    import numpy as np

    from app.backtest.candles import Candles

    rng = np.random.default_rng(0)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
    open_ = np.concatenate(([100.0], close[:-1]))
    high = np.maximum(open_, close) * 1.002
    low = np.minimum(open_, close) * 0.998
    ts = 1_600_000_000_000 + 300_000 * np.arange(n, dtype=np.int64)
    return Candles(ts, open_, high, low, close, rng.uniform(1.0, 100.0, n))


def warm() -> dict:
    """Load the calendars, run each strategy through the trial path and one through a
    finish; returns what was warmed and how long it took."""
    started = time.perf_counter()
    from app.backtest.engine import BacktestConfig
    from app.optimize.space import build_space
    from app.services.training.finish import Winner, assess_winner
    from app.strategies.runner import run_strategy, run_window
    from app.validation.calendars import calendar_for
    from app.validation.confidence import Thresholds

    candles = _candles()
    # The calendars a series is read with: exchange_calendars' names and ccxt's exchanges
    # (a second and a half of imports a first job would pay).
    calendar_for("binanceus", candles.ts, "5m")
    calendar_for("nasdaq", candles.ts, "1d")
    config = BacktestConfig(periods_per_year=105_120.0)
    strategies = warm_trials(candles)
    for strategy in strategies:
        params = strategy.validate(None)
        run_strategy(strategy, candles, params, config)
        run_window(strategy, candles, BARS // 2, params, config)
    first = strategies[0]
    params = first.validate(None)
    # Distinct trials, as a job's are (eight copies of one took the checks' degenerate
    # path, and a first job paid the other, 50 ms), with a holdout and without one.
    sample = [(p, True) for p in build_space(first).sample(8, 0)]
    for split in (BARS * 7 // 10, None):
        assess_winner(first, candles, split, Winner(0, params, 0.0, True), sample, 8, config,
                      0, Thresholds(), marks=() if split is None else (split,))
    return {"strategies": len(strategies), "seconds": round(time.perf_counter() - started, 3)}


def warm_trials(candles=None) -> list:
    """The trial path (kernels, indicators) of each built-in strategy: what a process that
    only runs chunks needs (the embedded default's helpers); returns the strategies."""
    from app.backtest.engine import BacktestConfig
    from app.strategies.cache import IndicatorCache
    from app.strategies.registry import builtin_strategies
    from app.strategies.runner import run_trials, score_params

    candles = candles if candles is not None else _candles()
    config = BacktestConfig(periods_per_year=105_120.0)
    cache = IndicatorCache(candles)
    # Trad's own strategies only: a plugin's code is not run before a job asks for it
    # (it may log, sleep or need what its job brings).
    strategies = builtin_strategies()
    for strategy in strategies:
        params = strategy.validate(None)
        score_params(strategy, candles, params, config, cache)   # one trial: the finish's route
        run_trials(strategy, candles, [params] * 2, config, cache)   # a chunk: the batch kernel
    warm_sampler(strategies[0])
    return strategies


def warm_sampler(strategy) -> None:
    """A bayesian round's ask (the batched TPE's compiled loops, loaded from their cache
    or compiled), from a made-up history: what a round asked in parts runs in a chunk,
    and a round's finish runs before it sends the next."""
    from app.optimize.batch_tpe import ask_batch, n_startup
    from app.optimize.rounds import PastTrial
    from app.optimize.space import build_space

    space = build_space(strategy)
    points = space.sample(n_startup(8) + 4, 0)
    ask_batch(space, [PastTrial(i, p, float(i % 5), {}) for i, p in enumerate(points)], 8, 0, 1, 8)


_outcome: dict = {}


@signals.worker_init.connect
def _warm_before_the_pool_forks(**_kwargs) -> None:
    try:
        _outcome.update(warm())
    except Exception as exc:  # noqa: BLE001 - a cold first job is slower, never wrong
        _outcome["error"] = f"{type(exc).__name__}: {exc}"


@signals.worker_process_init.connect
def _connect_after_the_fork(**_kwargs) -> None:
    """Each pool process opens its database and broker connections, and compiles the
    statements a job's first steps run, before its first task (after the fork: a
    connection never crosses one)."""
    try:
        from app.db import market_data as md
        from app.db.models import TrainingJob
        from app.db.session import session_scope
        from workers.celery_app import celery_app, connect_for_sending

        with session_scope(celery_app.conf.trad_settings.database_url) as session:
            session.get(TrainingJob, "0" * 32)
            md.count_rows(session, "", "", "")
        # What a task's first send (start_job's chord, a finish's next round) would open.
        connect_for_sending()
    except Exception as exc:  # noqa: BLE001 - the first task connects then, as before
        log.warning("warm-up could not connect error=%s: %s", type(exc).__name__,
                    str(exc).splitlines()[0] if str(exc) else "")


@signals.worker_ready.connect
def _say_warmed(**_kwargs) -> None:
    # Said once logging is set up (it is not yet when the pool is about to fork).
    if "error" in _outcome:
        log.warning("warm-up failed error=%s", _outcome["error"])
    elif _outcome:
        log.info("warmed strategies=%d seconds=%.2f", _outcome["strategies"], _outcome["seconds"])
