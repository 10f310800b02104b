"""Probability of backtest overfitting by combinatorially symmetric cross-validation.

Bailey, Borwein, López de Prado & Zhu, "The Probability of Backtest Overfitting",
Journal of Computational Finance 20(4), 2017 (SSRN 2326253, 2013-2015). The procedure:

1. ``M`` is a ``T x N`` matrix of per-bar returns: ``T`` bars of ``N`` trials
   (parameter sets) over the same period.
2. Split its rows into ``S`` (even) contiguous blocks of equal length. When ``S`` does
   not divide ``T``, the ``T mod S`` oldest bars are dropped so the blocks are equal.
3. For each of the ``C(S, S/2)`` ways to choose ``S/2`` blocks: the chosen blocks, in
   time order, are the in-sample set ``J``; the other half is the out-of-sample set
   ``J_bar``. Every half serves once as ``J`` and once as ``J_bar`` (the symmetry).
4. Score every trial on ``J`` and on ``J_bar`` (per-bar Sharpe ratio,
   ``mean / std(ddof=1)``, 0 for a half that never varies; or a metric you pass).
   ``n*`` is the trial with the best in-sample score.
5. ``omega_bar = rank of n* out of sample / (N + 1)``, ranks 1 (worst) to ``N`` (best),
   ties sharing their average rank; the logit is ``lambda = ln(omega_bar / (1 - omega_bar))``.
   ``lambda > 0``: the in-sample winner beat the out-of-sample median.
6. ``PBO = share of combinations with lambda <= 0``: the estimated probability that the
   configuration chosen in sample performs at or below the median out of sample.

Pure noise gives a PBO near 0.5 or above; a real, persistent edge gives a PBO near 0.

Ties in step 4 are broken against the trial: when several trials share the best
in-sample score, the one with the worst out-of-sample score is taken. It is the
conservative choice, and it makes the result independent of the order of the columns
(duplicated trials, which optimizers produce, tie exactly).

Speed: with the default Sharpe ratio, per-block sums of returns and of squared returns
are added up per half, so ``C(16, 8) = 12,870`` combinations of ``2000 x 200`` returns
take a fraction of a second; each half-sample is scored once, as ``J`` of one
combination and ``J_bar`` of its complement. A custom ``metric`` is called once per
half-sample, on that half's returns, and is correspondingly slower.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from itertools import combinations

import numpy as np

from app.errors import InputError

__all__ = ["DEFAULT_SPLITS", "SAMPLE_SIZE", "PBOResult", "probability_of_backtest_overfitting",
           "representative_trials"]

DEFAULT_SPLITS = 16
# Trials whose returns stand for a large search (PBO, effective trials).
SAMPLE_SIZE = 256


def representative_trials(values, size: int = SAMPLE_SIZE) -> np.ndarray:
    """Indices of at most ``size`` trials that span the whole distribution of their
    ``values`` (higher is better), best first: every trial when there are few, else the
    trials at evenly spaced ranks from the best to the worst, both included.

    CSCV asks whether the search's in-sample choice beats the *search's* out-of-sample
    median; over a pre-selected top (near-equals sharing one edge) which of them wins in
    sample is a coin toss, and a real edge reads as overfit. Ties keep the trials' order.

    >>> representative_trials([0.1, 0.5, 0.3], 8).tolist()
    [1, 2, 0]
    >>> representative_trials(np.arange(100.0), 5).tolist()
    [99, 74, 49, 25, 0]
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    if size < 2:
        raise InputError(f"a representative sample needs at least 2 trials, got size={size}",
                         field="size")
    order = np.argsort(-v, kind="stable")
    if v.size <= size:
        return order
    ranks = np.unique(np.round(np.linspace(0, v.size - 1, size)).astype(np.intp))
    return order[ranks]


@dataclass(frozen=True, eq=False)
class PBOResult:
    """The outcome of CSCV.

    ``logits[c]`` is ``lambda`` of combination ``c`` (in ``itertools.combinations``
    order of the in-sample block indices); ``is_performance[c]`` and
    ``oos_performance[c]`` are the selected trial's in-sample and out-of-sample scores
    there (the performance-degradation pairs; per-bar Sharpe ratios by default).
    """

    pbo: float
    logits: np.ndarray
    is_performance: np.ndarray
    oos_performance: np.ndarray
    n_splits: int
    n_trials: int
    bars_used: int

    @property
    def n_combinations(self) -> int:
        return int(self.logits.size)

    @property
    def prob_oos_loss(self) -> float:
        """Share of combinations whose selected trial scored below 0 out of sample."""
        return float(np.mean(self.oos_performance < 0.0))

    def degradation_slope(self) -> float:
        """Least-squares slope of out-of-sample on in-sample score of the selected trials
        (negative: the better it looked in sample, the worse it did out of sample); 0
        when the in-sample scores do not vary."""
        x = self.is_performance - self.is_performance.mean()
        denom = float(np.dot(x, x))
        if not denom > 0.0:
            return 0.0
        return float(np.dot(x, self.oos_performance - self.oos_performance.mean()) / denom)

    def to_dict(self) -> dict:
        return {"pbo": self.pbo, "n_combinations": self.n_combinations, "n_splits": self.n_splits,
                "n_trials": self.n_trials, "bars_used": self.bars_used,
                "prob_oos_loss": self.prob_oos_loss, "degradation_slope": self.degradation_slope(),
                "median_logit": float(np.median(self.logits))}


def _check(returns, n_splits: int) -> np.ndarray:
    m = np.asarray(returns, dtype=np.float64)
    if m.ndim != 2:
        raise InputError(f"returns must be a bars x trials matrix, got shape {m.shape}",
                         field="returns")
    t, n = m.shape
    if isinstance(n_splits, bool) or int(n_splits) != n_splits or n_splits < 2 or n_splits % 2:
        raise InputError(f"n_splits must be an even number of at least 2, got {n_splits}",
                         field="n_splits", hint="16 is the usual choice")
    if n < 2:
        raise InputError(f"PBO needs at least 2 trials to choose from, got {n}", field="returns",
                         hint="run more parameter sets")
    if t // n_splits < 1 or (t // n_splits) * (n_splits // 2) < 2:
        raise InputError(f"{t} bars are too few to split into {n_splits} blocks",
                         field="n_splits",
                         hint=f"use fewer splits or at least {max(n_splits, 4)} bars")
    if not np.all(np.isfinite(m)):
        row, col = np.argwhere(~np.isfinite(m))[0]
        raise InputError(f"returns must be finite; bar {row} of trial {col} is {m[row, col]}",
                         field="returns")
    return m


@lru_cache(maxsize=8)
def _halves(n_splits: int) -> tuple[np.ndarray, np.ndarray]:
    """Block indices of each half-sample, and for each the index of its complement."""
    chosen = np.array(list(combinations(range(n_splits), n_splits // 2)), dtype=np.intp)
    # A half is identified by its bit mask; its complement has the other bits.
    weights = 1 << np.arange(n_splits, dtype=np.int64)
    masks = np.sum(weights[chosen], axis=1)
    position = {int(m): i for i, m in enumerate(masks)}
    full = (1 << n_splits) - 1
    complement = np.array([position[full - int(m)] for m in masks], dtype=np.intp)
    chosen.flags.writeable = False
    complement.flags.writeable = False
    return chosen, complement


def _sharpe_of_halves(blocks: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """Per-bar Sharpe ratio of every trial on every half, from per-block sums.

    ``blocks`` is ``N x S x L`` (trials first: every sum runs along contiguous memory).
    Returns are centred per trial first (the variance does not change, and sums of squares
    of small centred numbers lose nothing to cancellation). Each trial's sums are numpy's
    pairwise sums over a contiguous row of the same length, which depend on the values
    alone, so identical trials get bit-identical scores and tie exactly, whatever their
    position.
    """
    n_trials, s_count, length = blocks.shape
    centre = blocks.reshape(n_trials, -1).sum(axis=1) / (s_count * length)
    y = blocks - centre[:, None, None]
    s1 = np.ascontiguousarray(y.sum(axis=2).T)        # S x N
    np.multiply(y, y, out=y)
    s2 = np.ascontiguousarray(y.sum(axis=2).T)        # S x N
    sum1 = s1[chosen[:, 0]]
    sum2 = s2[chosen[:, 0]]
    for j in range(1, chosen.shape[1]):
        sum1 += s1[chosen[:, j]]
        sum2 += s2[chosen[:, j]]
    n = length * chosen.shape[1]
    mean_y = sum1 / n
    var = np.maximum(sum2 - sum1 * mean_y, 0.0) / (n - 1)
    sd = np.sqrt(var)
    mean = mean_y + centre
    # A half that never varies (a trial that stayed flat) has Sharpe 0, as in metrics. A
    # spread below 1e-12 of the mean is the rounding of a constant, not a variation.
    varies = sd > 1e-12 * np.abs(mean)
    varies &= sd > 0.0
    return np.where(varies, mean / np.where(varies, sd, 1.0), 0.0)


def _metric_of_halves(blocks: np.ndarray, chosen: np.ndarray, metric) -> np.ndarray:
    out = np.empty((chosen.shape[0], blocks.shape[2]))
    for i, idx in enumerate(chosen):
        half = blocks[idx].reshape(-1, blocks.shape[2])
        values = np.asarray(metric(half), dtype=np.float64)
        if values.shape != (blocks.shape[2],):
            raise InputError(f"metric returned shape {values.shape} for {blocks.shape[2]} trials; "
                             "it must return one number per column", field="metric")
        out[i] = values
    if not np.all(np.isfinite(out)):
        raise InputError("metric returned a value that is not finite", field="metric")
    return out


def probability_of_backtest_overfitting(
    returns: np.ndarray,
    n_splits: int = DEFAULT_SPLITS,
    metric: Callable[[np.ndarray], np.ndarray] | None = None,
) -> PBOResult:
    """PBO of choosing the best of the columns of ``returns`` (``T`` bars x ``N`` trials).

    ``metric``, when given, scores a ``bars x N`` block of returns with one number per
    column (higher is better); by default the per-bar Sharpe ratio.

    A hand-checkable case (``S = 2``, so the two halves swap roles): trial 1 wins the
    first half and is last in the second (``lambda = ln(1/4)``); trial 0 wins the second
    half and is third of four in the first (``lambda = ln(3/2)``); PBO = 1/2.

    >>> m = np.array([[1, 2, 0, -2], [3, 3, 1, -1],      # first half
    ...               [1, -1, 1, 0], [2, 0, 3, 1]], float)  # second half
    >>> r = probability_of_backtest_overfitting(m, n_splits=2)
    >>> r.pbo, np.round(r.logits, 4).tolist()
    (0.5, [-1.3863, 0.4055])
    """
    m = _check(returns, n_splits)
    n_splits = int(n_splits)
    t, n = m.shape
    length = t // n_splits
    used = length * n_splits
    chosen, complement = _halves(n_splits)
    if metric is None:
        # Trials first: free when the caller built the matrix that way (``m`` is then the
        # transpose of a C-ordered trials x bars array), one copy otherwise.
        by_trial = np.ascontiguousarray(m[t - used:].T).reshape(n, n_splits, length)
        score = _sharpe_of_halves(by_trial, chosen)
    else:
        score = _metric_of_halves(m[t - used:].reshape(n_splits, length, n), chosen, metric)
    is_score = score
    oos_score = score[complement]

    best = is_score.max(axis=1, keepdims=True)
    # Among trials tied for best in sample, the worst out of sample (see module notes).
    candidates = np.where(is_score == best, oos_score, np.inf)
    selected = np.argmin(candidates, axis=1)
    rows = np.arange(score.shape[0])
    oos_selected = oos_score[rows, selected]

    below = np.sum(oos_score < oos_selected[:, None], axis=1)
    equal = np.sum(oos_score == oos_selected[:, None], axis=1)
    rank = below + (equal + 1) / 2.0            # 1 = worst, n = best; ties averaged
    omega = rank / (n + 1.0)
    logits = np.log(omega / (1.0 - omega))
    pbo = float(np.mean(logits <= 0.0))
    return PBOResult(pbo=pbo, logits=logits, is_performance=is_score[rows, selected],
                     oos_performance=oos_selected, n_splits=n_splits, n_trials=n, bars_used=used)
