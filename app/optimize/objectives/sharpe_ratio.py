"""Objective sharpe_ratio: Annualised Sharpe ratio of per-bar returns: reward per unit of total volatility."""

NAME = "sharpe_ratio"


def score(metrics: dict) -> float:
    """Higher is better."""
    return float(metrics["sharpe_ratio"])
