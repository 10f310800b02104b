"""Objective net_profit: Net profit in quote units after fees and slippage."""

NAME = "net_profit"


def score(metrics: dict) -> float:
    """Higher is better."""
    return float(metrics["net_profit"])
