"""Pure backtesting: numpy arrays in, arrays and numbers out (no Flask, Celery or SQL)."""
from app.backtest.candles import TIMEFRAMES, Candles, periods_per_year, timeframe_ms
from app.backtest.engine import (BacktestConfig, BacktestResult, Trade, backtest, equity_returns,
                                 evaluate)
from app.backtest.metrics import METRIC_NAMES

__all__ = [
    "TIMEFRAMES",
    "Candles",
    "periods_per_year",
    "timeframe_ms",
    "BacktestConfig",
    "BacktestResult",
    "Trade",
    "backtest",
    "evaluate",
    "equity_returns",
    "METRIC_NAMES",
]
