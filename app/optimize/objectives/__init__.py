"""Objectives, one module each, found by name: a function from metrics to a score where
higher is better (freqtrade's hyperopt_loss layout)."""
from __future__ import annotations

from collections.abc import Callable
from importlib import import_module

from app.errors import InputError, did_you_mean

__all__ = ["OBJECTIVES", "get_objective"]

OBJECTIVES = ("sharpe_ratio", "sortino_ratio", "calmar_ratio", "net_profit", "profit_factor")


def get_objective(name: str) -> Callable[[dict], float]:
    """The score function of objective ``name``.

    >>> get_objective("net_profit")({"net_profit": 12.5})
    12.5
    """
    if name not in OBJECTIVES:
        raise InputError(f"unknown objective {name!r}", field="objective",
                         hint=did_you_mean(name, OBJECTIVES))
    return import_module(f"{__name__}.{name}").score
