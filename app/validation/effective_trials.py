"""How many independent tries a search amounts to, measured from its trials' per-bar returns.

2,000 neighbouring parameter sets of a moving-average crossover trade nearly the same
positions: they are not 2,000 independent tries, and deflating the winner's Sharpe ratio
as if they were (or by the spread of their Sharpe ratios, which is mostly real
differences between parameter sets) rejects real edges. López de Prado ("A Data Science
Solution to the Multiple-Testing Crisis in Financial Research", Journal of Financial Data
Science 1(1), 2019) counts clusters of correlated trials instead; multiple-testing
practice in genetics (Dudbridge & Gusnanto, "Estimation of significance thresholds for
genomewide association scans", Genetic Epidemiology 32(3), 2008) defines the *effective
number of tests* as the number of independent tests whose extreme behaves like the
correlated ones'. That is what the False Strategy theorem behind the deflated Sharpe
ratio needs, so that is what is measured here:

1. Take the trials' per-bar returns (``T`` bars x ``N`` trials; a representative sample
   of a large search, see ``app.validation.pbo.representative_trials``), drop the ones
   that never vary, standardise each and form their correlation matrix ``C``.
2. Under the null (no trial has skill) the trials' Sharpe estimates times ``sqrt(T - 1)``
   are jointly close to normal with mean 0, variance 1 and correlation ``C`` (Lo, "The
   Statistics of Sharpe Ratios", Financial Analysts Journal 58(4), 2002). Draw
   ``DRAWS`` vectors from ``N(0, C)`` (seeded: the answer is a function of the returns)
   and average their maxima: the expected best z-score of *this* search under the null.
3. The effective number of trials ``K`` is the count of independent standard normals
   with the same expected maximum (``expected_max_z``, integrated exactly): 1 for trials
   that are all the same, ``N`` for independent ones, in between for a real search.
4. A sample of a larger search is extrapolated: ``K`` is measured on the sample and on
   its halves and quarters; the growth rate ``b`` of ``K`` with the number of trials
   carries it to the whole search, ``K_total = min(N_total, K * (N_total / n) ** b)``
   (``b`` near 0 when the sample already covers the space, 1 when trials are
   independent).

The deflated Sharpe ratio then takes ``K`` trials with the null's own variance of a
per-bar Sharpe estimate, ``1 / (T - 1)`` (``null_sharpe_variance``): its benchmark
``SR0 = E[max z] / sqrt(T - 1)`` is the best Sharpe ratio this search would show by luck.

>>> rng = np.random.default_rng(0)
>>> base = rng.standard_normal((2000, 5))          # 5 independent strategies ...
>>> copies = np.repeat(base, 40, axis=1)           # ... each tried 40 times, 200 trials
>>> 4.8 < effective_trials(copies).effective < 5.2
True
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from app.errors import InputError

__all__ = ["EffectiveTrials", "effective_trials", "expected_max_z", "null_sharpe_variance",
           "trials_for_expected_max"]

DRAWS = 4096
_SEED = 20190101


_NEG = np.linspace(-9.0, 0.0, 3601)   # the integral splits at 0, where its integrand jumps
_POS = np.linspace(0.0, 14.0, 5601)


def expected_max_z(n: float) -> float:
    """Expected maximum of ``n`` independent standard normals, ``n`` real and at least 1:
    ``E = integral of x d(Phi(x)**n)``, integrated on a fine grid (exact to about 1e-6;
    the False Strategy theorem's closed form, ``expected_max_sharpe``, is its large-``n``
    approximation).

    >>> expected_max_z(1) == 0.0, round(expected_max_z(2), 6), round(expected_max_z(100), 4)
    (True, 0.56419, 2.5076)
    """
    n = float(n)
    if not n >= 1.0:
        raise InputError(f"the number of trials must be at least 1, got {n}", field="n_trials")
    if n == 1.0:
        return 0.0
    from scipy.special import log_ndtr

    # E[X] = integral over x > 0 of (1 - F) minus integral over x < 0 of F, F = Phi ** n.
    above = np.trapezoid(-np.expm1(n * log_ndtr(_POS)), _POS)
    below = np.trapezoid(np.exp(n * log_ndtr(_NEG)), _NEG)
    return float(above - below)


def trials_for_expected_max(target: float, cap: float = 1e15) -> float:
    """The (real) number of independent trials whose expected maximum is ``target``.

    >>> round(trials_for_expected_max(expected_max_z(250.0)), 3)
    250.0
    """
    if not target > 0.0:
        return 1.0
    lo, hi = 1.0, 2.0
    while expected_max_z(hi) < target and hi < cap:
        lo, hi = hi, hi * 2.0
    for _ in range(60):
        mid = math.sqrt(lo * hi)
        if expected_max_z(mid) < target:
            lo = mid
        else:
            hi = mid
        if hi / lo < 1.0 + 1e-9:
            break
    return math.sqrt(lo * hi)


def null_sharpe_variance(n_obs: int) -> float:
    """Variance of a per-bar Sharpe estimate from ``n_obs`` returns whose true Sharpe
    ratio is 0: ``1 / (n_obs - 1)`` (Lo 2002; at a true value of 0 skew and kurtosis drop
    out of the asymptotic variance).

    >>> null_sharpe_variance(101)
    0.01
    """
    n = int(n_obs)
    if n < 2:
        raise InputError(f"a Sharpe ratio needs at least 2 returns, got {n}", field="returns")
    return 1.0 / (n - 1)


@dataclass(frozen=True)
class EffectiveTrials:
    """``effective``: the search's effective number of independent trials (real, >= 1);
    ``expected_max_z``: the expected best z-score under the null it stands for;
    ``sampled``: trials whose returns were measured (``varying`` of them varied);
    ``trials``: trials in the whole search; ``growth``: the exponent used to extrapolate
    from the sample to the search (0 when nothing was extrapolated)."""

    effective: float
    expected_max_z: float
    trials: int
    sampled: int
    varying: int
    growth: float

    def to_dict(self) -> dict:
        return {"effective_trials": self.effective, "expected_max_z": self.expected_max_z,
                "trials": self.trials, "sampled": self.sampled, "varying": self.varying,
                "growth": self.growth}


def _standardised(returns) -> np.ndarray:
    m = np.asarray(returns, dtype=np.float64)
    if m.ndim != 2:
        raise InputError(f"returns must be a bars x trials matrix, got shape {m.shape}",
                         field="returns")
    if m.shape[0] < 2:
        raise InputError(f"effective trials need at least 2 bars, got {m.shape[0]}", field="returns")
    if not np.all(np.isfinite(m)):
        raise InputError("returns must be finite", field="returns")
    x = m - m.mean(axis=0)
    sd = np.sqrt(np.mean(x * x, axis=0))
    varies = sd > 1e-12 * np.maximum(np.abs(m).max(axis=0), 1e-300)
    return x[:, varies] / sd[varies]


def _expected_max(x: np.ndarray) -> float:
    """Mean maximum of ``DRAWS`` vectors from ``N(0, corr(x))``."""
    n = x.shape[1]
    if n == 1:
        return 0.0
    corr = (x.T @ x) / x.shape[0]
    eigenvalues, vectors = np.linalg.eigh(corr)
    loadings = vectors * np.sqrt(np.clip(eigenvalues, 0.0, None))
    rng = np.random.default_rng(_SEED)
    draws = rng.standard_normal((DRAWS, n)) @ loadings.T
    return float(draws.max(axis=1).mean())


def _k(x: np.ndarray) -> float:
    return min(float(x.shape[1]), trials_for_expected_max(_expected_max(x)))


def _growth(x: np.ndarray, k: float) -> float:
    """Least-squares slope of log K on log trials over the sample, its halves and its
    quarters (every 2nd and 4th column: the sample is ordered by value, so each still
    spans the search), clipped to [0, 1]."""
    sizes = np.log([x.shape[1], x[:, ::2].shape[1], x[:, ::4].shape[1]])
    ks = np.log([k, _k(x[:, ::2]), _k(x[:, ::4])])
    slope = np.polyfit(sizes, ks, 1)[0]
    return float(np.clip(slope, 0.0, 1.0))


def effective_trials(returns, n_trials: int | None = None) -> EffectiveTrials:
    """The effective number of independent trials behind ``returns`` (bars x trials),
    a sample of a search of ``n_trials`` trials (default: the columns); see the module
    docstring for the method.

    >>> rng = np.random.default_rng(1)
    >>> e = effective_trials(rng.standard_normal((3000, 50)))   # independent trials
    >>> 45 < e.effective < 55
    True
    """
    x = _standardised(returns)
    sampled = int(np.asarray(returns).shape[1])
    total = sampled if n_trials is None else int(n_trials)
    if total < sampled:
        raise InputError(f"n_trials={total} is fewer than the {sampled} trials sampled",
                         field="n_trials")
    varying = x.shape[1]
    if varying <= 1:
        # Nothing to correlate: one varying trial (the rest flat, Sharpe 0, never the best)
        # stands for the trials it was sampled from.
        k = max(1.0, varying * total / sampled)
        return EffectiveTrials(k, expected_max_z(k), total, sampled, varying, 0.0)
    top = _expected_max(x)
    k = min(float(varying), trials_for_expected_max(top))
    growth = 0.0
    if total > sampled and varying >= 8:
        growth = _growth(x, k)
        k = min(float(total), k * (total / sampled) ** growth)
        top = expected_max_z(k)
    return EffectiveTrials(effective=max(1.0, k), expected_max_z=top, trials=total,
                           sampled=sampled, varying=varying, growth=growth)
