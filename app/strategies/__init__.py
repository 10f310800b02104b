"""Trading strategies: pure functions from candles and parameters to target positions."""
from app.strategies.base import CategoricalParam, Constraint, FloatParam, IntParam, Strategy
from app.strategies.cache import IndicatorCache
from app.strategies.registry import all_strategies, get_strategy, strategy_names
from app.strategies.runner import run_strategy, run_trials, score_params

__all__ = [
    "Strategy",
    "IntParam",
    "FloatParam",
    "CategoricalParam",
    "Constraint",
    "IndicatorCache",
    "get_strategy",
    "strategy_names",
    "all_strategies",
    "run_strategy",
    "run_trials",
    "score_params",
]
