"""Sharpe ratios corrected for skew, fat tails, short samples and many trials (PSR, DSR).

Conventions, the same in every function here:

- **Per-period Sharpe ratios.** ``sr = mean(r) / std(r, ddof=1)`` of per-bar returns,
  never annualised. An annualised Sharpe ratio ``SR_a`` over bars with
  ``periods_per_year`` bars a year is ``SR_a / sqrt(periods_per_year)`` per bar, and a
  variance of annualised ratios is divided by ``periods_per_year``. (Bailey and López de
  Prado annualise only to report; their formulas take the per-period value.)
- **Non-excess kurtosis.** ``kurtosis = m4 / m2**2``, 3 for a normal distribution;
  ``skew = m3 / m2**1.5``; both from the population (biased) central moments
  ``m_k = mean((r - mean(r))**k)``, as in the papers' sample estimates.
- The standard normal ``Phi`` and its inverse come from the standard library
  (``math.erfc``, ``statistics.NormalDist``): scipy is a test dependency only, and the
  tests check these values against it.

The formulas:

**Probabilistic Sharpe ratio** (Bailey & López de Prado 2012, "The Sharpe Ratio
Efficient Frontier", Journal of Risk 15(2)): the probability that the true Sharpe ratio
exceeds a benchmark ``SR*``, given an estimate ``SR`` from ``n`` observations with
skewness ``g3`` and kurtosis ``g4``::

    PSR(SR*) = Phi( (SR - SR*) * sqrt(n - 1) / sqrt(1 - g3 * SR + (g4 - 1) / 4 * SR**2) )

**Expected maximum Sharpe ratio** of ``N`` independent trials whose Sharpe ratios have
variance ``V`` and true value 0 (the False Strategy theorem; Bailey, Borwein, López de
Prado & Zhu 2014, "Pseudo-Mathematics and Financial Charlatanism", Notices of the AMS
61(5); used in Bailey & López de Prado 2014, "The Deflated Sharpe Ratio", Journal of
Portfolio Management 40(5))::

    E[max SR] ~= sqrt(V) * ( (1 - gamma) * Phi^-1(1 - 1/N) + gamma * Phi^-1(1 - 1/(N e)) )

with ``gamma`` the Euler-Mascheroni constant. The approximation is for ``N >> 1``.

**Deflated Sharpe ratio** (Bailey & López de Prado 2014): the PSR of the best trial
against ``SR0 = E[max SR]`` of all trials, ``DSR = PSR(SR0)``. It is a probability:
0.95 means 95 % confidence that the true Sharpe ratio exceeds what the luckiest of ``N``
skill-less trials would be expected to show.

The paper's worked example (reproduced in ``tests/unit/test_sharpe_stats.py``): 100
trials whose annualised Sharpe ratios have variance 1/2, the best with annualised
Sharpe 2.5 over 1250 daily returns (250 a year) with skewness -3 and kurtosis 10, gives
``SR0 = 0.1132`` per day and ``DSR = 0.9004``.

>>> round(expected_max_sharpe(100, 0.5 / 250), 4)
0.1132
>>> sr0 = expected_max_sharpe(100, 0.5 / 250)
>>> round(probabilistic_sharpe_ratio(2.5 / 250 ** 0.5, sr0, 1250, -3.0, 10.0), 4)
0.9004
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from app.errors import InputError
from app.validation.effective_trials import EffectiveTrials, null_sharpe_variance

__all__ = [
    "EULER_GAMMA",
    "DeflatedSharpe",
    "OutOfSample",
    "combined_evidence",
    "deflated_sharpe_of_search",
    "deflated_sharpe_ratio",
    "expected_max_sharpe",
    "out_of_sample_sharpe",
    "probabilistic_sharpe_ratio",
    "probabilistic_sharpe_z",
    "sharpe_moments",
]

EULER_GAMMA = 0.5772156649015329
_STANDARD_NORMAL = NormalDist()


def _phi(z: float) -> float:
    # erfc keeps the far left tail accurate, where 1 + erf(z) would cancel to 0.
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


def _finite(name: str, value) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise InputError(f"{name} must be a finite number, got {value}", field=name)
    return value


# Phi(+-Z_CAP) is 1 - 1e-16 and 1e-16: a z-score beyond it says nothing more.
Z_CAP = 8.2


def probabilistic_sharpe_z(sr: float, sr_benchmark: float, n_obs: int,
                           skew: float = 0.0, kurtosis: float = 3.0) -> float:
    """The z-score behind ``probabilistic_sharpe_ratio`` (its ``Phi`` argument), held in
    ``[-Z_CAP, Z_CAP]`` so that records can be combined (``combined_evidence``); the same
    edge cases as there, as ``-Z_CAP``, ``0`` and ``+Z_CAP``.

    >>> round(probabilistic_sharpe_z(0.1, 0.0, 251), 4)
    1.5772
    """
    sr = _finite("sr", sr)
    sr_benchmark = _finite("sr_benchmark", sr_benchmark)
    skew = _finite("skew", skew)
    kurtosis = _finite("kurtosis", kurtosis)
    n = int(n_obs)
    if n < 2:
        return -Z_CAP
    spread = 1.0 - skew * sr + (kurtosis - 1.0) / 4.0 * sr * sr
    diff = sr - sr_benchmark
    if not spread > 0.0:
        return Z_CAP if diff > 0 else -Z_CAP if diff < 0 else 0.0
    return max(-Z_CAP, min(Z_CAP, diff * math.sqrt(n - 1) / math.sqrt(spread)))


def probabilistic_sharpe_ratio(sr: float, sr_benchmark: float, n_obs: int,
                               skew: float = 0.0, kurtosis: float = 3.0) -> float:
    """Probability that the true per-period Sharpe ratio exceeds ``sr_benchmark``.

    ``sr`` and ``sr_benchmark`` are per period (not annualised); ``kurtosis`` is
    non-excess (3 for normal returns).

    Edge cases, so the answer is always a number in [0, 1]:

    - fewer than 2 observations prove nothing: 0.0 (not the formula's 0.5, so that no
      gate ever passes on an empty record);
    - the variance term ``1 - skew*sr + (kurtosis-1)/4 * sr**2`` is never negative for
      the moments of real data (Pearson: ``kurtosis >= 1 + skew**2`` makes it at least
      ``(1 - skew*sr/2)**2``); where it is not positive (that boundary, or impossible
      moments given by hand) the estimate has no spread and the answer is a step:
      1.0 above the benchmark, 0.0 below, 0.5 at it.

    >>> probabilistic_sharpe_ratio(0.1, 0.1, 250)
    0.5
    >>> round(probabilistic_sharpe_ratio(0.1, 0.0, 251), 4)  # Phi(0.1 * sqrt(250 / 1.005))
    0.9426
    """
    z = probabilistic_sharpe_z(sr, sr_benchmark, n_obs, skew, kurtosis)
    if int(n_obs) < 2:
        return 0.0
    if abs(z) >= Z_CAP:
        return 1.0 if z > 0 else 0.0
    return _phi(z)


def expected_max_sharpe(n_trials: float, var_sr: float) -> float:
    """Expected maximum of ``n_trials`` per-period Sharpe ratios whose true value is 0
    and whose estimates have variance ``var_sr`` (the False Strategy theorem).

    ``n_trials`` may be a real number (an effective count of independent trials). One
    trial has nothing to be the maximum of: 0.0. Between 1 and 2 trials the
    approximation can dip below 0 and is held at 0, the one-trial value; zero variance
    gives 0.0.

    >>> expected_max_sharpe(1, 0.01), expected_max_sharpe(50, 0.0)
    (0.0, 0.0)
    >>> round(expected_max_sharpe(1000, 1.0), 4)
    3.2551
    """
    n = _finite("n_trials", n_trials)
    var_sr = _finite("var_sr", var_sr)
    if n < 1:
        raise InputError(f"n_trials must be at least 1, got {n_trials}", field="n_trials")
    if var_sr < 0:
        raise InputError(f"var_sr is a variance and cannot be negative, got {var_sr}",
                         field="var_sr")
    if n == 1 or var_sr == 0:
        return 0.0
    inv = _STANDARD_NORMAL.inv_cdf
    z = (1.0 - EULER_GAMMA) * inv(1.0 - 1.0 / n) + EULER_GAMMA * inv(1.0 - 1.0 / (n * math.e))
    return max(0.0, math.sqrt(var_sr) * z)


def sharpe_moments(returns: Sequence[float] | np.ndarray) -> tuple[float, float, float, int]:
    """``(sr, skew, kurtosis, n)`` of per-bar returns, in this module's conventions.

    Fewer than two returns, or returns that never vary, have no Sharpe ratio, skewness
    or kurtosis: they give ``(0.0, 0.0, 3.0, n)``.

    >>> sr, skew, kurtosis, n = sharpe_moments([0.01, -0.01, 0.02, 0.0])
    >>> round(sr, 4), round(skew, 12), round(kurtosis, 12), n
    (0.3873, 0.0, 1.64, 4)
    """
    sr, skew, kurtosis, n, _ = _moments(returns)
    return sr, skew, kurtosis, n


def _moments(returns) -> tuple[float, float, float, int, bool]:
    r = np.asarray(returns, dtype=np.float64).ravel()
    n = int(r.size)
    if n and not np.all(np.isfinite(r)):
        bad = int(np.flatnonzero(~np.isfinite(r))[0])
        raise InputError(f"returns must be finite; bar {bad} is {r[bad]}", field="returns")
    if n < 2 or float(np.max(r)) == float(np.min(r)):
        return 0.0, 0.0, 3.0, n, False
    centred = r - r.mean()
    m2 = float(np.mean(centred ** 2))
    sr = float(r.mean()) / math.sqrt(m2 * n / (n - 1))
    skew = float(np.mean(centred ** 3)) / m2 ** 1.5
    kurtosis = float(np.mean(centred ** 4)) / m2 ** 2
    return sr, skew, kurtosis, n, True


@dataclass(frozen=True)
class DeflatedSharpe:
    """A deflated Sharpe ratio and the pieces it was computed from.

    ``dsr`` is the probability and ``z`` its z-score; ``sr`` the best trial's per-period
    Sharpe ratio; ``sr0`` the expected maximum per-period Sharpe ratio of ``n_trials``
    (independent, possibly effective) trials with variance ``var_sr``; ``skew`` and
    ``kurtosis`` (non-excess) of the best trial's ``n_obs`` returns.
    """

    dsr: float
    sr: float
    sr0: float
    skew: float
    kurtosis: float
    n_obs: int
    n_trials: float
    var_sr: float
    z: float = -Z_CAP

    def to_dict(self) -> dict:
        return {"dsr": self.dsr, "z": self.z, "sr": self.sr, "sr0": self.sr0, "skew": self.skew,
                "kurtosis": self.kurtosis, "n_obs": self.n_obs, "n_trials": self.n_trials,
                "var_sr": self.var_sr}


def _deflate(returns_of_best, n_trials: float, var_sr: float, sr0: float) -> DeflatedSharpe:
    sr, skew, kurtosis, n, informative = _moments(returns_of_best)
    if informative:
        z = probabilistic_sharpe_z(sr, sr0, n, skew, kurtosis)
        dsr = probabilistic_sharpe_ratio(sr, sr0, n, skew, kurtosis)
    else:
        z, dsr = -Z_CAP, 0.0
    return DeflatedSharpe(dsr=dsr, sr=sr, sr0=sr0, skew=skew, kurtosis=kurtosis, n_obs=n,
                          n_trials=float(n_trials), var_sr=var_sr, z=z)


def deflated_sharpe_ratio(returns_of_best: Sequence[float] | np.ndarray, n_trials: float,
                          var_sr_of_trials: float) -> DeflatedSharpe:
    """Deflated Sharpe ratio of the best of ``n_trials`` trials, from its per-bar returns,
    as in the paper (``SR0`` from the closed-form expected maximum).

    ``var_sr_of_trials`` is the variance of the trials' **per-period** Sharpe ratios
    under the null (the paper estimates it by their spread across trials,
    ``np.var(annual_sharpes) / periods_per_year``; a search of genuinely different
    parameter sets is better served by ``deflated_sharpe_of_search``).
    ``DSR = PSR(SR0)`` with ``SR0 = expected_max_sharpe(n_trials, var_sr_of_trials)``;
    one trial gives ``SR0 = 0`` and DSR is the plain PSR against 0. Returns that never
    vary, or fewer than two, give ``dsr = 0``.

    >>> d = deflated_sharpe_ratio([0.01, -0.005, 0.012, 0.003, -0.002] * 50, 1, 0.0)
    >>> round(d.sr, 4), d.sr0, d.n_obs, round(d.dsr, 4)
    (0.5451, 0.0, 250, 1.0)
    >>> deflated_sharpe_ratio([0.01] * 100, 20, 0.01).dsr
    0.0
    """
    var_sr = _finite("var_sr_of_trials", var_sr_of_trials)
    return _deflate(returns_of_best, n_trials, var_sr, expected_max_sharpe(n_trials, var_sr))


def deflated_sharpe_of_search(returns_of_best: Sequence[float] | np.ndarray,
                              effective: EffectiveTrials) -> DeflatedSharpe:
    """Deflated Sharpe ratio of a search's winner against what the search would show by
    luck: ``SR0 = E[max z] * sqrt(1 / (n - 1))`` with ``E[max z]`` the expected best
    z-score of the search's correlated trials under the null (``effective_trials``) and
    ``1 / (n - 1)`` the null's variance of a per-bar Sharpe estimate over the winner's
    ``n`` returns. ``n_trials`` in the answer is the effective count.

    >>> from app.validation.effective_trials import EffectiveTrials, expected_max_z
    >>> ten = EffectiveTrials(10.0, expected_max_z(10.0), 2000, 256, 256, 0.0)
    >>> rng = np.random.default_rng(0)
    >>> d = deflated_sharpe_of_search(rng.normal(0.0005, 0.01, 2500), ten)
    >>> round(d.sr0 * (2500 - 1) ** 0.5, 4), round(d.dsr, 3)
    (1.5388, 0.315)
    """
    n = int(np.asarray(returns_of_best).size)
    var0 = null_sharpe_variance(n) if n >= 2 else 0.0
    return _deflate(returns_of_best, effective.effective, var0,
                    effective.expected_max_z * math.sqrt(var0))


@dataclass(frozen=True)
class OutOfSample:
    """How far a record that was not selected on shows a Sharpe ratio above 0: ``psr``
    (probability) and ``z``; ``sr`` per bar over ``n_obs`` returns."""

    psr: float
    z: float
    sr: float
    n_obs: int
    skew: float
    kurtosis: float

    def to_dict(self) -> dict:
        return {"psr": self.psr, "z": self.z, "sr": self.sr, "n_obs": self.n_obs,
                "skew": self.skew, "kurtosis": self.kurtosis}


def out_of_sample_sharpe(returns: Sequence[float] | np.ndarray) -> OutOfSample:
    """PSR against 0 of held-out returns: no selection happened on them, so no deflation.

    >>> o = out_of_sample_sharpe([0.01, -0.005, 0.012, 0.003, -0.002] * 50)
    >>> round(o.psr, 4), o.n_obs
    (1.0, 250)
    """
    sr, skew, kurtosis, n, informative = _moments(returns)
    if not informative:
        return OutOfSample(0.0, -Z_CAP, 0.0, n, skew, kurtosis)
    return OutOfSample(probabilistic_sharpe_ratio(sr, 0.0, n, skew, kurtosis),
                       probabilistic_sharpe_z(sr, 0.0, n, skew, kurtosis), sr, n, skew, kurtosis)


def combined_evidence(parts: Sequence[tuple[float, int]]) -> float:
    """One probability that the true Sharpe ratio is above 0 from several disjoint
    records, each a ``(z, n_obs)`` pair: Stouffer's z weighted by ``sqrt(n_obs)``
    (Liptak 1958), ``Phi(sum(sqrt(n_i) z_i) / sqrt(sum(n_i)))``. With per-bar z-scores
    ``z_i ~ SR * sqrt(n_i)`` this is the z-score of the pooled record, so a long
    in-sample record (deflated for the search) and a short held-out one count by their
    length.

    >>> round(combined_evidence([(1.0, 100), (1.0, 100)]), 4)    # Phi(sqrt(2))
    0.9214
    >>> round(combined_evidence([(2.0, 300), (-1.0, 100)]), 4)  # Phi((2 sqrt(300) - 10) / 20)
    0.891
    """
    if not parts:
        raise InputError("combined evidence needs at least one record")
    num = 0.0
    den = 0.0
    for z, n in parts:
        z = _finite("z", z)
        if int(n) < 1:
            raise InputError(f"a record needs at least one bar, got {n}")
        num += math.sqrt(n) * max(-Z_CAP, min(Z_CAP, z))
        den += n
    z = num / math.sqrt(den)
    return 1.0 if z >= Z_CAP else 0.0 if z <= -Z_CAP else _phi(z)
