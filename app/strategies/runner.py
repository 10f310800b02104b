"""Run a strategy through the engine: one backtest, or many trials over shared indicators."""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sized

import numpy as np

from app.backtest.candles import Candles
from app.backtest.engine import (
    BacktestConfig,
    BacktestResult,
    backtest,
    as_target,
    backtest_window,
    equity_returns,
    evaluate,
    evaluate_batch,
)
from app.strategies.base import Strategy
from app.strategies.cache import IndicatorCache

__all__ = ["run_strategy", "run_window", "score_params", "score_batch", "strategy_returns",
           "run_trials", "BLOCK_BYTES", "MIN_BLOCK_TRIALS"]

# The targets a block of trials holds at most: 262 trials of 1,000 bars, past which the
# per-block costs no longer show (bigger blocks measured no faster), and a bound on memory
# however long the series.
BLOCK_BYTES = 2 << 20
# A series so long that a block would hold fewer trials than this runs trial by trial on
# the strategy's own arrays: copying a target into the block would cost more there than
# the compiled call it saves (100,000 bars: ~13 % slower in blocks of two).
MIN_BLOCK_TRIALS = 16


def _config_for(strategy: Strategy, params: dict, config: BacktestConfig) -> BacktestConfig:
    overrides = strategy.execution(params)
    return config.replace(**overrides) if overrides else config


def _atr_for(config: BacktestConfig, cache: IndicatorCache):
    return cache.atr(int(config.atr_period)) if config.uses_atr else None


def run_strategy(strategy: Strategy, candles: Candles, params: dict | None = None,
                 config: BacktestConfig = BacktestConfig(), cache: IndicatorCache | None = None
                 ) -> BacktestResult:
    """Validate ``params`` and run the full backtest (equity, trades, metrics)."""
    params = strategy.validate(params)
    cache = cache or IndicatorCache(candles)
    cfg = _config_for(strategy, params, config)
    return backtest(candles, strategy.positions(candles, params, cache), cfg, atr=_atr_for(cfg, cache))


def run_window(strategy: Strategy, candles: Candles, start: int, params: dict | None = None,
               config: BacktestConfig = BacktestConfig()) -> BacktestResult:
    """The full backtest of bars ``[start, n)`` of ``candles``, the strategy's positions
    (and ATR) computed over every bar so its indicators are warm at ``start``
    (``backtest_window``). Pass the candles up to the window's end: nothing after it."""
    params = strategy.validate(params)
    cache = IndicatorCache(candles)
    cfg = _config_for(strategy, params, config)
    return backtest_window(candles, strategy.positions(candles, params, cache), start, cfg,
                           atr=_atr_for(cfg, cache))


def score_params(strategy: Strategy, candles: Candles, params: dict, config: BacktestConfig,
                 cache: IndicatorCache) -> dict:
    """Metrics of one already-validated parameter set: the per-trial fast route (the same
    floats as the set scores in ``score_batch``)."""
    cfg = _config_for(strategy, params, config)
    return evaluate(candles, strategy.positions(candles, params, cache), cfg, atr=_atr_for(cfg, cache))


def score_batch(strategy: Strategy, candles: Candles, param_sets: Iterable[dict],
                config: BacktestConfig, cache: IndicatorCache, *, block_bytes: int = BLOCK_BYTES,
                on_error: Callable[[int, Exception], None] | None = None,
                durations: list | None = None) -> list[dict]:
    """Metrics of each already-validated parameter set: the same dicts, the same floats,
    as ``evaluate`` of each set's positions under its config.

    Positions (and the set's execution settings and ATR) are computed set by set through
    ``cache``, each copied into a block of at most ``block_bytes``; the block is simulated
    in one compiled call (``evaluate_batch``). A series so long that a block would hold
    fewer than ``MIN_BLOCK_TRIALS`` sets runs set by set (``evaluate`` on the strategy's
    own array).

    ``on_error(index, exc)`` is called inside the ``except`` when preparing
    ``param_sets[index]`` raises (it may raise its own error); the exception propagates
    otherwise. ``durations``, a list, receives each set's seconds: its block's time
    divided evenly among the block's sets.
    """
    n = len(candles)
    per_block = int(block_bytes) // (8 * max(n, 1))
    if per_block < MIN_BLOCK_TRIALS:
        per_block = 1
    if isinstance(param_sets, Sized):
        per_block = max(1, min(per_block, len(param_sets)))
    buffer = np.empty((per_block, n)) if per_block > 1 else None
    shape = candles.close.shape
    overrides = type(strategy).execution is not Strategy.execution
    base_atr = _atr_for(config, cache)
    out: list[dict] = []
    configs, atrs = [], []
    started = time.perf_counter()
    for index, params in enumerate(param_sets):
        try:
            cfg = _config_for(strategy, params, config) if overrides else config
            target = strategy.positions(candles, params, cache)
            if buffer is None or getattr(target, "shape", None) != shape:
                target = as_target(candles, target)  # the engine's error for a wrong shape
            atr = base_atr if cfg is config else _atr_for(cfg, cache)
            if buffer is None:  # a long series: one trial a call, on the strategy's own array
                out.append(evaluate(candles, target, cfg, atr=atr))
            else:
                buffer[len(configs)] = target
        except Exception as exc:
            if on_error is not None:
                on_error(index, exc)
            raise
        # Dropped before the next trial allocates its own, so the allocator hands the same
        # memory back (fresh pages for each 100,000-bar target cost ~5 % a trial).
        del target
        if buffer is None:
            started = _timed(durations, 1, started)
            continue
        configs.append(cfg)
        atrs.append(atr)
        if len(configs) == per_block:
            out.extend(_evaluate_block(candles, buffer, configs, atrs, config))
            started = _timed(durations, len(configs), started)
            configs, atrs = [], []
    if configs:
        out.extend(_evaluate_block(candles, buffer[:len(configs)], configs, atrs, config))
        _timed(durations, len(configs), started)
    return out


def _evaluate_block(candles: Candles, block: np.ndarray, configs: list, atrs: list,
                    config: BacktestConfig) -> list[dict]:
    # Most strategies override nothing: one shared config and no ATR spare the engine a
    # pass over the trials' settings.
    shared = config if all(c is config for c in configs) else configs
    return evaluate_batch(candles, block, shared, None if all(a is None for a in atrs) else atrs)


def _timed(durations: list | None, count: int, started: float) -> float:
    now = time.perf_counter()
    if durations is not None:
        durations.extend([(now - started) / count] * count)
    return now


def strategy_returns(strategy: Strategy, candles: Candles, params: dict, config: BacktestConfig,
                     cache: IndicatorCache):
    """Per-bar returns of one already-validated parameter set (no trades, no metrics)."""
    cfg = _config_for(strategy, params, config)
    return equity_returns(candles, strategy.positions(candles, params, cache), cfg,
                          atr=_atr_for(cfg, cache))


def run_trials(strategy: Strategy, candles: Candles, param_sets: Iterable[dict],
               config: BacktestConfig = BacktestConfig(), cache: IndicatorCache | None = None
               ) -> list[dict]:
    """Metrics for each already-validated parameter set, sharing one indicator cache
    across them (``score_batch``)."""
    cache = cache or IndicatorCache(candles)
    return score_batch(strategy, candles, param_sets, config, cache)
