"""Lookahead check: a strategy's target for bar t must not change when later bars change.

``target[t]`` may use bars ``<= t`` only (``app.strategies.base.Strategy``). So for any
cut ``k``, the first ``k`` targets of the full run must come out exactly the same (the
same floats, bit for bit, NaN where the full run has NaN) when

- the bars from ``k`` on are removed (the strategy runs on ``candles.slice(0, k)``), and
- the bars from ``k`` on are scaled: every later price and volume doubled, then halved
  (``scaled_after``).

A strategy that reads a later bar (a ``shift(-1)``, a centred window, a whole-series
normalisation) changes some target before the cut in one of these runs. Removing bars
catches what depends on the series' length or on its end; scaling them catches a peek
whose value, with the bar removed, happens to be the same: any comparison of a later
price with an earlier level (the next close above the average, above this close) comes
out one way when the later prices double and the other when they halve.

Each run gets its own ``IndicatorCache`` over its own candles, so no indicator computed
on the full series can leak into a cut run. The check proves nothing about cuts it did
not try, so it tries many, over every bar a job loaded (the holdout and every fold
included): ``CUTS`` spread evenly, each of the last ``TAIL`` bars, and the bars around
each ``mark`` (a holdout split, a fold's edges). A strategy that reads bar ``t + 1``
is caught by any cut in the region where it peeks, as long as its target at the cut's
last bar moves when that bar is gone.

Once a cut shows a difference, the first bar that peeks is found by bisection between
the last cut that showed none and the first that did: the answer names the earliest
bar where any tried cut changed a target, not just the first among the spread cuts.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from app.backtest.candles import Candles
from app.errors import InputError
from app.strategies.base import Strategy
from app.strategies.cache import IndicatorCache

__all__ = ["CUTS", "TAIL", "LookaheadViolation", "check_lookahead", "default_cuts", "scaled_after"]

CUTS = 64
TAIL = 16
# A slow strategy (a model that takes a second a run) gets fewer cuts: the check spends
# about this long, but never fewer than MIN_CUTS spread and MIN_TAIL tail cuts.
BUDGET_S = 3.0
MIN_CUTS = 8
MIN_TAIL = 4


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
                f"when the data after bar {self.cut - 1} is removed or changed")

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> dict:
        return {"strategy": self.strategy, "bar": self.bar, "cut": self.cut, "time": self.time,
                "full_value": self.full_value, "cut_value": self.cut_value,
                "message": self.message}


def default_cuts(n_bars: int, marks: Sequence[int] = (), spread_cuts: int = CUTS,
                 tail_cuts: int = TAIL, around: Sequence[int] = (-1, 0, 1)) -> tuple[int, ...]:
    """``CUTS`` cuts spread evenly over the series, each of the last ``TAIL`` bars, and
    one bar either side of each mark (a cut ``k`` keeps bars ``[0, k)``).

    >>> cuts = default_cuts(1000, marks=(700,))
    >>> cuts[:3], cuts[-3:], (699, 700, 701) in [tuple(c for c in cuts if 698 < c < 702)]
    ((15, 31, 46), (997, 998, 999), True)
    >>> default_cuts(3)
    (1, 2)
    """
    spread = {int(round(n_bars * i / (spread_cuts + 1))) for i in range(1, spread_cuts + 1)}
    tail = {n_bars - i for i in range(1, tail_cuts + 1)}
    near = {int(m) + d for m in marks for d in around}
    return tuple(sorted(k for k in spread | tail | near if 1 <= k < n_bars))


def _iso(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000.0, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


SCALES = (2.0, 0.5)


def scaled_after(candles: Candles, k: int, factor: float) -> Candles:
    """The series with the prices and volumes of bars ``[k, n)`` times ``factor``.

    >>> px = np.array([100.0, 110.0, 121.0])
    >>> m = scaled_after(Candles(np.arange(3), px, px, px, px, np.ones(3)), 2, 0.5)
    >>> m.close.tolist(), m.volume.tolist()
    ([100.0, 110.0, 60.5], [1.0, 1.0, 0.5])
    """
    def scaled(values):
        out = np.array(values, dtype=np.float64)
        out[k:] *= factor
        return out

    return Candles(candles.ts, scaled(candles.open), scaled(candles.high), scaled(candles.low),
                   scaled(candles.close), scaled(candles.volume))


def _targets(strategy: Strategy, candles: Candles, params: dict) -> np.ndarray:
    target = np.asarray(strategy.positions(candles, params, IndicatorCache(candles)),
                        dtype=np.float64)
    if target.shape != (len(candles),):
        raise InputError(f"{strategy.name} returned {target.shape} targets for {len(candles)} bars; "
                         "it must return one per bar", field="strategy")
    return target


def check_lookahead(strategy: Strategy, candles: Candles, params: dict | None = None,
                    cuts: Sequence[int] | None = None, marks: Sequence[int] = (),
                    budget_s: float = BUDGET_S) -> LookaheadViolation | None:
    """``None`` when every cut run matches the full run, else the violation at the
    earliest differing bar (among equal bars, the cut that removed the least).

    ``params`` are validated (and completed with defaults) by the strategy; ``cuts`` are
    bar counts ``k`` in ``[1, n_bars)``, the run on ``candles.slice(0, k)`` (default:
    ``default_cuts(n_bars, marks)``, fewer when a run of the strategy is so slow that
    they would take more than ``budget_s``); after a difference shows, more cuts are
    bisected (see the module notes).
    """
    params = strategy.validate(params)
    n = len(candles)
    started = time.perf_counter()
    full = _targets(strategy, candles, params)
    run_s = time.perf_counter() - started
    if cuts is None:
        affordable = int(budget_s / max((1 + len(SCALES)) * run_s, 1e-9))   # runs a cut
        # The marks' cuts count against the budget too: three a mark, one when short.
        around = (-1, 0, 1) if affordable >= MIN_CUTS + MIN_TAIL + 3 * len(marks) else (0,)
        left = affordable - len(around) * len(marks)
        spread = max(MIN_CUTS, min(CUTS, left - TAIL))
        tail = TAIL if left >= CUTS + TAIL else max(MIN_TAIL, min(TAIL, left - spread))
        cuts = default_cuts(n, marks, spread, tail, around)
    cuts = sorted({int(k) for k in cuts})
    bad = [k for k in cuts if not 1 <= k < n]
    if bad:
        raise InputError(f"cut {bad[0]} is outside [1, {n}) for {n} bars", field="cuts")
    if not cuts:
        return None

    found: dict[int, int] = {}          # cut -> first differing bar

    def first_difference(other: np.ndarray, k: int) -> int | None:
        head, other = full[:k], other[:k]
        same = (head == other) | (np.isnan(head) & np.isnan(other))
        return None if same.all() else int(np.argmin(same))

    def variants(k: int):
        yield candles.slice(0, k)
        for factor in SCALES:
            yield scaled_after(candles, k, factor)

    def differs(k: int) -> bool:
        bars = [b for b in (first_difference(_targets(strategy, v, params), k) for v in variants(k))
                if b is not None]
        if not bars:
            return False
        found[k] = min(bars)
        return True

    tried = [k for k in cuts if differs(k)]
    if not tried:
        return None
    # Bisect between the last clean cut below the first dirty one and that dirty one.
    hi = tried[0]
    lo = max((k for k in cuts if k < hi), default=0)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if differs(mid):
            hi = mid
        else:
            lo = mid
    k, bar = min(found.items(), key=lambda item: (item[1], -item[0]))
    for variant in variants(k):
        cut = _targets(strategy, variant, params)
        if not (cut[bar] == full[bar] or (np.isnan(cut[bar]) and np.isnan(full[bar]))):
            break
    return LookaheadViolation(strategy=strategy.name, bar=bar, cut=k,
                              time=_iso(int(candles.ts[bar])),
                              full_value=float(full[bar]), cut_value=float(cut[bar]))
