"""Indicators computed once per series and parameter set, then shared by every trial."""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable

import numpy as np

from app.backtest import indicators as ind
from app.backtest.candles import Candles

__all__ = ["IndicatorCache"]


class IndicatorCache:
    """A bounded LRU of indicator arrays over one ``Candles`` series.

    Trials of one batch share it, so SMA(close, 20) is computed once however many
    parameter sets use it. Arrays handed out are read-only: a strategy that wants to
    change one must copy it.

    >>> import numpy as np
    >>> from app.backtest.candles import Candles
    >>> px = np.arange(1.0, 6.0)
    >>> cache = IndicatorCache(Candles(np.arange(5), px, px, px, px, px))
    >>> cache.sma(2) is cache.sma(2), cache.misses
    (True, 1)
    """

    def __init__(self, candles: Candles, max_bytes: int = 1 << 30):
        self.candles = candles
        self.max_bytes = max_bytes
        self._store: OrderedDict[Hashable, np.ndarray] = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable, compute: Callable[[], np.ndarray]) -> np.ndarray:
        store = self._store
        value = store.get(key)
        if value is not None:
            self.hits += 1
            store.move_to_end(key)
            return value
        self.misses += 1
        value = compute()
        if isinstance(value, np.ndarray):
            value.flags.writeable = False
            self._bytes += value.nbytes
        store[key] = value
        while self._bytes > self.max_bytes and len(store) > 1:
            _, old = store.popitem(last=False)
            if isinstance(old, np.ndarray):
                self._bytes -= old.nbytes
        return value

    def source(self, name: str) -> np.ndarray:
        """A price column by name: open, high, low, close, volume, or hl2, hlc3, ohlc4."""
        c = self.candles
        if name in ("open", "high", "low", "close", "volume"):
            return getattr(c, name)
        if name == "hl2":
            return self.get(("src", name), lambda: (c.high + c.low) / 2.0)
        if name == "hlc3":
            return self.get(("src", name), lambda: (c.high + c.low + c.close) / 3.0)
        if name == "ohlc4":
            return self.get(("src", name), lambda: (c.open + c.high + c.low + c.close) / 4.0)
        raise KeyError(name)

    def sma(self, period: int, source: str = "close") -> np.ndarray:
        return self.get(("sma", source, period), lambda: ind.sma(self.source(source), period))

    def ema(self, period: int, source: str = "close") -> np.ndarray:
        return self.get(("ema", source, period), lambda: ind.ema(self.source(source), period))

    def rolling_std(self, period: int, source: str = "close") -> np.ndarray:
        return self.get(("std", source, period), lambda: ind.rolling_std(self.source(source), period))

    def rolling_max(self, period: int, source: str = "high") -> np.ndarray:
        return self.get(("max", source, period), lambda: ind.rolling_max(self.source(source), period))

    def rolling_min(self, period: int, source: str = "low") -> np.ndarray:
        return self.get(("min", source, period), lambda: ind.rolling_min(self.source(source), period))

    def rsi(self, period: int, source: str = "close") -> np.ndarray:
        return self.get(("rsi", source, period), lambda: ind.rsi(self.source(source), period))

    def atr(self, period: int) -> np.ndarray:
        c = self.candles
        return self.get(("atr", period), lambda: ind.atr(c.high, c.low, c.close, period))
