"""Strategies found by name: the built-ins, then plugins of the ``trad.strategies``
entry-point group (``name = "package.module:StrategyClass"``)."""
from __future__ import annotations

import logging
from importlib import import_module
from importlib.metadata import entry_points

from app.errors import InputError, did_you_mean
from app.strategies.base import Strategy

__all__ = ["get_strategy", "strategy_class", "strategy_names", "all_strategies", "builtin_strategies", "ENTRY_POINT_GROUP"]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "trad.strategies"

# name -> "module:Class"; imported on first use so a broken plugin cannot break the rest.
_BUILTINS = {
    "SMA_CROSS": "app.strategies.sma_cross:SmaCross",
    "EMA_CROSS": "app.strategies.ema_cross:EmaCross",
    "RSI_MEAN_REVERSION": "app.strategies.rsi_mean_reversion:RsiMeanReversion",
    "BOLLINGER_REVERSION": "app.strategies.bollinger_reversion:BollingerReversion",
    "DONCHIAN_BREAKOUT": "app.strategies.donchian_breakout:DonchianBreakout",
    "MACD": "app.strategies.macd:Macd",
    "LIQUIDITY_SWEEP": "app.strategies.liquidity_sweep:LiquiditySweep",
}

_loaded: dict[str, type[Strategy]] = {}


def _load(target: str) -> type[Strategy]:
    module, _, attr = target.partition(":")
    return getattr(import_module(module), attr)


def _plugins() -> dict[str, str]:
    found = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found[ep.name.upper()] = ep.value
    return found


def _catalogue() -> dict[str, str]:
    catalogue = {name: target for name, target in _BUILTINS.items() if _available(target)}
    for name, target in _plugins().items():
        catalogue.setdefault(name, target)
    return catalogue


def _available(target: str) -> bool:
    from importlib.util import find_spec

    return find_spec(target.partition(":")[0]) is not None


def strategy_names() -> list[str]:
    """Every strategy that can be asked for, sorted."""
    return sorted(_catalogue())


def get_strategy(name: str) -> Strategy:
    """The strategy called ``name`` (case-insensitive), as an instance.

    >>> get_strategy("sma_cross").name
    'SMA_CROSS'
    """
    return strategy_class(name)()


def strategy_class(name: str) -> type[Strategy]:
    """The class of the strategy called ``name`` (case-insensitive), loaded once."""
    key = str(name).upper()
    cls = _loaded.get(key)
    if cls is None:
        catalogue = _catalogue()
        if key not in catalogue:
            raise InputError(f"unknown strategy {name!r}", field="strategy",
                             hint=did_you_mean(key, catalogue))
        cls = _load(catalogue[key])
        if not (isinstance(cls, type) and issubclass(cls, Strategy)):
            raise InputError(f"{catalogue[key]} is not a trad Strategy", field="strategy")
        _loaded[key] = cls
    return cls


def builtin_strategies() -> list[Strategy]:
    """Trad's own strategies (no plugin's)."""
    return [get_strategy(name) for name, target in sorted(_BUILTINS.items())
            if _available(target)]


def all_strategies() -> list[Strategy]:
    return [get_strategy(name) for name in strategy_names()]
