"""Lookahead check: a strategy's target for bar t must not change when later bars vanish.

``target[t]`` may use bars ``<= t`` only (``app.strategies.base.Strategy``). So for any
cut ``k``, running the strategy on the first ``k`` bars must give exactly the first ``k``
targets of the full run: the same floats, bit for bit, NaN where the full run has NaN.
A strategy that reads a later bar (a ``shift(-1)``, a centred window, a whole-series
normalisation) changes some target before the cut when the bars after it are removed.

Each run gets its own ``IndicatorCache`` over its own candles, so no indicator computed
on the full series can leak into a cut run. The check proves nothing about cuts it did
not try; the defaults spread five cuts over the series, the last removing one bar.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from app.backtest.candles import Candles
from app.errors import InputError
from app.strategies.base import Strategy
from app.strategies.cache import IndicatorCache

__all__ = ["LookaheadViolation", "check_lookahead", "default_cuts"]

_CUT_FRACTIONS = (0.2, 0.4, 0.6, 0.8)


@dataclass(frozen=True)
class LookaheadViolation:
    """Where a strategy peeks: ``target[bar]`` of the full run differs from the run on
    bars ``[0, cut)``; ``time`` is that bar's open time (ISO 8601, UTC)."""

    strategy: str
    bar: int
    cut: int
    time: str
    full_value: float
    cut_value: float

    @property
    def message(self) -> str:
        return (f"{self.strategy} peeks ahead: target at bar {self.bar} ({self.time}) changes "
                f"when data after bar {self.cut - 1} is removed")

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> dict:
        return {"strategy": self.strategy, "bar": self.bar, "cut": self.cut, "time": self.time,
                "full_value": self.full_value, "cut_value": self.cut_value,
                "message": self.message}


def default_cuts(n_bars: int) -> tuple[int, ...]:
    """Cuts at 20, 40, 60 and 80 % of the series, and one that removes only the last bar.

    >>> default_cuts(1000)
    (200, 400, 600, 800, 999)
    """
    cuts = {int(n_bars * f) for f in _CUT_FRACTIONS} | {n_bars - 1}
    return tuple(sorted(k for k in cuts if 1 <= k < n_bars))


def _iso(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000.0, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _targets(strategy: Strategy, candles: Candles, params: dict) -> np.ndarray:
    target = np.asarray(strategy.positions(candles, params, IndicatorCache(candles)),
                        dtype=np.float64)
    if target.shape != (len(candles),):
        raise InputError(f"{strategy.name} returned {target.shape} targets for {len(candles)} bars; "
                         "it must return one per bar", field="strategy")
    return target


def check_lookahead(strategy: Strategy, candles: Candles, params: dict | None = None,
                    cuts: Sequence[int] | None = None) -> LookaheadViolation | None:
    """``None`` when every cut run matches the full run, else the violation at the
    earliest differing bar (among equal bars, the cut that removed the least).

    ``params`` are validated (and completed with defaults) by the strategy; ``cuts`` are
    bar counts ``k`` in ``[1, n_bars)``, the run on ``candles.slice(0, k)``.
    """
    params = strategy.validate(params)
    n = len(candles)
    if cuts is None:
        cuts = default_cuts(n)
    cuts = sorted({int(k) for k in cuts})
    bad = [k for k in cuts if not 1 <= k < n]
    if bad:
        raise InputError(f"cut {bad[0]} is outside [1, {n}) for {n} bars", field="cuts")
    if not cuts:
        return None

    full = _targets(strategy, candles, params)
    found: LookaheadViolation | None = None
    for k in cuts:
        cut = _targets(strategy, candles.slice(0, k), params)
        head = full[:k]
        same = (head == cut) | (np.isnan(head) & np.isnan(cut))
        if same.all():
            continue
        bar = int(np.argmin(same))
        if found is None or bar <= found.bar:
            found = LookaheadViolation(strategy=strategy.name, bar=bar, cut=k,
                                       time=_iso(int(candles.ts[bar])),
                                       full_value=float(head[bar]), cut_value=float(cut[bar]))
    return found
