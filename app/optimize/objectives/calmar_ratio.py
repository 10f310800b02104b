"""Objective calmar_ratio: CAGR over maximum drawdown: growth per unit of worst pain."""

NAME = "calmar_ratio"


def score(metrics: dict) -> float:
    """Higher is better."""
    return float(metrics["calmar_ratio"])
