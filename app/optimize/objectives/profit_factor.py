"""Objective profit_factor: Gross profit over gross loss of closed trades (capped, see app.backtest.metrics)."""

NAME = "profit_factor"


def score(metrics: dict) -> float:
    """Higher is better."""
    return float(metrics["profit_factor"])
