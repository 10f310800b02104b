"""Walk-forward analysis, the pure part: fold plans, stitched out-of-sample results, WFE.

A walk-forward plan trains on a window, tests on the bars right after it, then moves
on: the test windows are consecutive and never overlap, so stitched together they make
one out-of-sample record that no optimisation ever saw (Pardo, "The Evaluation and
Optimization of Trading Strategies", 2nd ed., Wiley 2008, ch. 11).

- **Rolling** (default): every training window has ``train_bars`` bars and ends where
  its test window starts.
- **Anchored**: every training window starts at the plan's first bar and grows.

Windows are half-open index ranges ``[start, end)`` over the bars.

**Walk-forward efficiency** here is ``WFE = annualised mean return of the stitched
out-of-sample record / annualised mean return of the stitched in-sample record``: the
in-sample record is each fold's winner over its own training window, end to end, the
out-of-sample record its test windows; an annualised mean return is the mean per-bar
return times the bars a year. Arithmetic means, not CAGRs: a CAGR of a few days of 5m
bars compounds to thousands of percent, and a ratio of such numbers means nothing. 1
means the test periods earned what training promised; Pardo treats about 0.5 or more as
a robust strategy. Negative means the strategy lost money out of sample. When the
in-sample mean is not positive the optimisation found nothing to be efficient about, and
WFE is 0.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from app.backtest.metrics import bar_returns
from app.errors import InputError
from app.validation.split import MIN_TEST_BARS

__all__ = [
    "DEFAULT_TRAIN_TEST_RATIO",
    "Fold",
    "plan_folds",
    "stitch",
    "stitch_equity",
    "walk_forward_efficiency",
]

# Without window sizes, training windows are this many times the test window.
DEFAULT_TRAIN_TEST_RATIO = 3


class Fold(NamedTuple):
    """One fold: train on ``[train_start, train_end)``, test on ``[test_start, test_end)``."""

    train_start: int
    train_end: int
    test_start: int
    test_end: int

    @property
    def train_bars(self) -> int:
        return self.train_end - self.train_start

    @property
    def test_bars(self) -> int:
        return self.test_end - self.test_start


def _count(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InputError(f"{name} must be a whole number, got {value!r}", field=f"validation.{name}")
    if value < minimum:
        raise InputError(f"{name} must be at least {minimum}, got {value}", field=f"validation.{name}")
    return int(value)


def plan_folds(n_bars: int, folds: int, train_bars: int | None = None, test_bars: int | None = None,
               anchored: bool = False, min_window_bars: int = MIN_TEST_BARS) -> list[Fold]:
    """The folds of a walk-forward over ``n_bars`` bars.

    Without sizes, test windows are ``n_bars // (folds + 3)`` bars and training windows
    get the rest of the bars before the first test (three test windows' worth, plus what
    the division leaves over). With only ``test_bars``, training takes every bar
    before the first test; with only ``train_bars``, the tests share what is left. With
    both, the plan ends at the last bar (the most recent bars are tested) and the oldest
    bars left over go unused. Every window needs ``min_window_bars`` bars.

    >>> plan_folds(1000, 3, train_bars=400, test_bars=200)
    [Fold(train_start=0, train_end=400, test_start=400, test_end=600), Fold(train_start=200, train_end=600, test_start=600, test_end=800), Fold(train_start=400, train_end=800, test_start=800, test_end=1000)]
    >>> [f.train_start for f in plan_folds(1000, 3, test_bars=200, anchored=True)]
    [0, 0, 0]
    """
    n_bars = _count("n_bars", n_bars, 1)
    folds = _count("folds", folds, 1)
    if train_bars is not None:
        train_bars = _count("train_bars", train_bars, 1)
    if test_bars is not None:
        test_bars = _count("test_bars", test_bars, 1)

    if test_bars is None and train_bars is None:
        test_bars = n_bars // (folds + DEFAULT_TRAIN_TEST_RATIO)
        train_bars = n_bars - folds * test_bars
    elif train_bars is None:
        if folds * test_bars >= n_bars:
            raise InputError(f"{folds} test windows of {test_bars} bars leave nothing to train "
                             f"on in {n_bars} bars", field="validation.test_bars",
                             hint="use fewer folds, shorter windows, or a longer date range")
        train_bars = n_bars - folds * test_bars
    elif test_bars is None:
        if train_bars >= n_bars:
            raise InputError(f"training windows of {train_bars} bars leave nothing to test in "
                             f"{n_bars} bars", field="validation.train_bars",
                             hint="use a shorter training window or a longer date range")
        test_bars = (n_bars - train_bars) // folds

    needed = train_bars + folds * test_bars
    problem = None
    if needed > n_bars:
        problem = (f"{folds} folds of {test_bars} test bars after {train_bars} training bars "
                   f"need {needed} bars; the series has {n_bars}")
    elif test_bars < min_window_bars:
        problem = (f"{n_bars} bars in {folds} folds leave {test_bars} bars per test window; "
                   f"each window needs at least {min_window_bars}")
    elif train_bars < min_window_bars:
        problem = (f"{n_bars} bars leave {train_bars} bars per training window; "
                   f"each window needs at least {min_window_bars}")
    if problem:
        raise InputError(problem, field="validation.folds",
                         hint="use fewer folds, shorter windows, or a longer date range")
    offset = n_bars - needed
    plan = []
    for i in range(folds):
        test_start = offset + train_bars + i * test_bars
        train_start = offset if anchored else test_start - train_bars
        plan.append(Fold(train_start, test_start, test_start, test_start + test_bars))
    return plan


def stitch(returns_per_fold: Sequence[Sequence[float] | np.ndarray]) -> np.ndarray:
    """The out-of-sample per-bar returns of consecutive test windows, end to end.

    Per-bar returns compound across folds as across bars, so the stitched array is the
    record of one account that traded each test window in turn.

    >>> stitch([[0.1, -0.1], [0.05]]).tolist()
    [0.1, -0.1, 0.05]
    """
    if len(returns_per_fold) == 0:
        raise InputError("nothing to stitch: no test windows", field="validation.folds")
    parts = []
    for i, part in enumerate(returns_per_fold):
        r = np.asarray(part, dtype=np.float64)
        if r.ndim != 1:
            raise InputError(f"fold {i}: returns must be one-dimensional, got shape {r.shape}")
        if not np.all(np.isfinite(r)):
            raise InputError(f"fold {i}: returns must be finite")
        parts.append(r)
    return np.concatenate(parts)


def stitch_equity(equity_per_fold: Sequence[Sequence[float] | np.ndarray],
                  initial_capital: float) -> np.ndarray:
    """One equity curve from the test windows' curves, each of which started from
    ``initial_capital`` (as every fold's backtest does): the account compounds through
    the folds. An account wiped out in one fold stays at 0.

    >>> stitch_equity([[110.0, 99.0], [105.0]], 100.0).round(6).tolist()
    [110.0, 99.0, 103.95]
    """
    if not initial_capital > 0:
        raise InputError(f"initial_capital must be positive, got {initial_capital}",
                         field="initial_capital")
    curves = [np.asarray(c, dtype=np.float64) for c in equity_per_fold]
    r = stitch([bar_returns(c, initial_capital) for c in curves])
    return initial_capital * np.cumprod(1.0 + r)


def walk_forward_efficiency(is_returns: Sequence[float] | np.ndarray,
                            oos_returns: Sequence[float] | np.ndarray,
                            bars_per_year: float) -> float:
    """Annualised mean return out of sample over in sample (see the module notes); 0 when
    the in-sample mean is not positive.

    >>> walk_forward_efficiency([0.002, 0.0, 0.001], [0.001, -0.0005], 252)
    0.25
    """
    is_r = np.asarray(is_returns, dtype=np.float64).ravel()
    oos_r = np.asarray(oos_returns, dtype=np.float64).ravel()
    if is_r.size == 0 or oos_r.size == 0:
        raise InputError("walk-forward efficiency needs in-sample and out-of-sample returns")
    if not (np.all(np.isfinite(is_r)) and np.all(np.isfinite(oos_r))):
        raise InputError("returns must be finite")
    if not (np.isfinite(bars_per_year) and bars_per_year > 0):
        raise InputError(f"bars_per_year must be positive, got {bars_per_year}")
    is_mean = float(np.mean(is_r)) * bars_per_year
    if not is_mean > 0.0:
        return 0.0
    return float(np.mean(oos_r)) * bars_per_year / is_mean
