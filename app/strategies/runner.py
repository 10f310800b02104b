"""Run a strategy through the engine: one backtest, or many trials over shared indicators."""
from __future__ import annotations

from collections.abc import Iterable

from app.backtest.candles import Candles
from app.backtest.engine import (
    BacktestConfig,
    BacktestResult,
    backtest,
    backtest_window,
    equity_returns,
    evaluate,
)
from app.strategies.base import Strategy
from app.strategies.cache import IndicatorCache

__all__ = ["run_strategy", "run_window", "score_params", "strategy_returns", "run_trials"]


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
    """Metrics of one already-validated parameter set: the per-trial fast route."""
    cfg = _config_for(strategy, params, config)
    return evaluate(candles, strategy.positions(candles, params, cache), cfg, atr=_atr_for(cfg, cache))


def strategy_returns(strategy: Strategy, candles: Candles, params: dict, config: BacktestConfig,
                     cache: IndicatorCache):
    """Per-bar returns of one already-validated parameter set (no trades, no metrics)."""
    cfg = _config_for(strategy, params, config)
    return equity_returns(candles, strategy.positions(candles, params, cache), cfg,
                          atr=_atr_for(cfg, cache))


def run_trials(strategy: Strategy, candles: Candles, param_sets: Iterable[dict],
               config: BacktestConfig = BacktestConfig(), cache: IndicatorCache | None = None
               ) -> list[dict]:
    """Metrics for each parameter set, sharing one indicator cache across them."""
    cache = cache or IndicatorCache(candles)
    return [score_params(strategy, candles, p, config, cache) for p in param_sets]
