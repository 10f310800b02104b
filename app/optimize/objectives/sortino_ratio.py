"""Objective sortino_ratio: Annualised Sortino ratio: reward per unit of downside volatility only."""

NAME = "sortino_ratio"


def score(metrics: dict) -> float:
    """Higher is better."""
    return float(metrics["sortino_ratio"])
