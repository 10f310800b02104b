"""Probabilistic and deflated Sharpe ratios against the papers and against scipy.

Two kinds of expected values appear here, labelled at each use:

- PUBLISHED: numbers printed in Bailey & López de Prado (2014), "The Deflated Sharpe
  Ratio", Journal of Portfolio Management 40(5), section "A numerical example".
- DERIVED: computed in the test itself from the papers' formulas with scipy
  (``norm.cdf``, ``norm.ppf``, ``scipy.stats.skew`` / ``kurtosis``), independently of the
  module's own arithmetic (which uses only the standard library).
"""
import math

import numpy as np
import pytest
from scipy import stats
from scipy.stats import norm

from app.errors import InputError
from app.validation.sharpe_stats import (
    EULER_GAMMA,
    DeflatedSharpe,
    deflated_sharpe_ratio,
    expected_max_sharpe,
    probabilistic_sharpe_ratio,
    sharpe_moments,
)

# The DSR paper's example: daily returns, 250 a year, five years.
PAPER_DAYS_PER_YEAR = 250
PAPER_N_OBS = 1250
PAPER_SR = 2.5 / math.sqrt(PAPER_DAYS_PER_YEAR)          # annualised 2.5, per day
PAPER_VAR_SR = 0.5 / PAPER_DAYS_PER_YEAR                  # annualised variance 1/2, per day
PAPER_SKEW, PAPER_KURTOSIS = -3.0, 10.0


def scipy_psr(sr, sr0, n, skew, kurtosis):
    """DERIVED reference: the PSR formula written out with scipy."""
    return norm.cdf((sr - sr0) * np.sqrt(n - 1) / np.sqrt(1 - skew * sr + (kurtosis - 1) / 4 * sr ** 2))


def scipy_expected_max(n, var):
    """DERIVED reference: the False Strategy theorem written out with scipy."""
    return np.sqrt(var) * ((1 - np.euler_gamma) * norm.ppf(1 - 1 / n)
                           + np.euler_gamma * norm.ppf(1 - 1 / (n * np.e)))


# -- the paper's numerical example ---------------------------------------------------------


def test_reproduces_the_papers_expected_maximum_sharpe_of_100_trials():
    # PUBLISHED: E[max SR] = 0.1132 per day (about 1.79 annualised) for N = 100, V = 1/2 a year.
    assert expected_max_sharpe(100, PAPER_VAR_SR) == pytest.approx(0.1132, abs=5e-5)


def test_reproduces_the_papers_deflated_sharpe_ratio_of_0_9004():
    # PUBLISHED: DSR = 0.9004 for the best of 100 trials, SR 2.5 a year, skew -3, kurtosis 10.
    sr0 = expected_max_sharpe(100, PAPER_VAR_SR)
    dsr = probabilistic_sharpe_ratio(PAPER_SR, sr0, PAPER_N_OBS, PAPER_SKEW, PAPER_KURTOSIS)
    assert dsr == pytest.approx(0.9004, abs=5e-5)


def test_reproduces_the_papers_variant_with_46_trials():
    # PUBLISHED: the same discovery after only N = 46 trials would have had DSR = 0.9505.
    sr0 = expected_max_sharpe(46, PAPER_VAR_SR)
    dsr = probabilistic_sharpe_ratio(PAPER_SR, sr0, PAPER_N_OBS, PAPER_SKEW, PAPER_KURTOSIS)
    assert dsr == pytest.approx(0.9505, abs=5e-5)


def test_the_paper_example_matches_scipy_to_machine_precision():
    # DERIVED: the same example through scipy, to many more digits than the paper prints.
    sr0 = scipy_expected_max(100, PAPER_VAR_SR)
    assert expected_max_sharpe(100, PAPER_VAR_SR) == pytest.approx(sr0, rel=1e-12)
    assert probabilistic_sharpe_ratio(PAPER_SR, sr0, PAPER_N_OBS, PAPER_SKEW, PAPER_KURTOSIS) == \
        pytest.approx(scipy_psr(PAPER_SR, sr0, PAPER_N_OBS, PAPER_SKEW, PAPER_KURTOSIS), rel=1e-12)


# -- probabilistic Sharpe ratio ------------------------------------------------------------


@pytest.mark.parametrize("sr, sr0, n, skew, kurtosis", [
    (0.1, 0.0, 250, 0.0, 3.0),
    (0.05, 0.02, 1000, -1.2, 7.5),
    (-0.03, 0.0, 500, 0.4, 4.0),
    (0.2, 0.25, 60, 0.0, 3.0),
])
def test_psr_is_the_published_formula(sr, sr0, n, skew, kurtosis):
    # DERIVED with scipy from Bailey & López de Prado (2012).
    assert probabilistic_sharpe_ratio(sr, sr0, n, skew, kurtosis) == \
        pytest.approx(scipy_psr(sr, sr0, n, skew, kurtosis), rel=1e-12, abs=1e-15)


def test_psr_is_one_half_at_the_benchmark():
    assert probabilistic_sharpe_ratio(0.07, 0.07, 300, -2.0, 9.0) == 0.5


def test_negative_skew_and_fat_tails_lower_the_psr_of_a_positive_sharpe():
    normal = probabilistic_sharpe_ratio(0.1, 0.0, 250)
    assert probabilistic_sharpe_ratio(0.1, 0.0, 250, skew=-2.0) < normal
    assert probabilistic_sharpe_ratio(0.1, 0.0, 250, kurtosis=12.0) < normal
    assert probabilistic_sharpe_ratio(0.1, 0.0, 250, skew=1.0) > normal


def test_a_longer_track_record_raises_the_psr():
    values = [probabilistic_sharpe_ratio(0.05, 0.0, n) for n in (50, 200, 1000, 5000)]
    assert values == sorted(values) and values[-1] > 0.99


def test_fewer_than_two_observations_prove_nothing():
    assert probabilistic_sharpe_ratio(0.5, 0.0, 1) == 0.0
    assert probabilistic_sharpe_ratio(0.5, 0.0, 0) == 0.0


def test_a_spread_that_is_not_positive_gives_a_step_not_nan():
    # kurtosis = 1 + skew**2 (a two-point distribution) and sr = 2 / skew: spread 0.
    assert probabilistic_sharpe_ratio(1.0, 0.5, 100, skew=2.0, kurtosis=5.0) == 1.0
    assert probabilistic_sharpe_ratio(1.0, 1.5, 100, skew=2.0, kurtosis=5.0) == 0.0
    # impossible moments given by hand (kurtosis < 1): still a number
    assert probabilistic_sharpe_ratio(3.0, 0.0, 100, skew=1.0, kurtosis=0.0) == 1.0


def test_the_far_tail_is_zero_not_nan():
    assert probabilistic_sharpe_ratio(-1.0, 1.0, 100_000) == 0.0
    assert probabilistic_sharpe_ratio(1.0, -1.0, 100_000) == 1.0


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_psr_rejects_non_finite_input(bad):
    with pytest.raises(InputError):
        probabilistic_sharpe_ratio(bad, 0.0, 100)
    with pytest.raises(InputError):
        probabilistic_sharpe_ratio(0.1, 0.0, 100, skew=bad)


# -- expected maximum Sharpe ratio -------------------------------------------------------


@pytest.mark.parametrize("n", [2, 10, 100, 1000, 12_345])
def test_expected_max_sharpe_is_the_false_strategy_theorem(n):
    # DERIVED with scipy.
    assert expected_max_sharpe(n, 0.3) == pytest.approx(scipy_expected_max(n, 0.3), rel=1e-12)


def test_expected_max_sharpe_is_close_to_the_simulated_maximum():
    # DERIVED by simulation: the mean of the largest of N normal Sharpe ratios with true
    # value 0. The theorem is an approximation for large N; it stays within 2 % here.
    rng = np.random.default_rng(7)
    for n in (50, 200, 1000):
        simulated = rng.normal(0.0, 1.0, size=(4000, n)).max(axis=1).mean()
        assert expected_max_sharpe(n, 1.0) == pytest.approx(simulated, rel=0.02)


def test_expected_max_sharpe_grows_with_trials_and_variance():
    by_trials = [expected_max_sharpe(n, 0.01) for n in (2, 5, 50, 500)]
    assert by_trials == sorted(by_trials)
    assert expected_max_sharpe(50, 0.04) == pytest.approx(2 * expected_max_sharpe(50, 0.01))


def test_one_trial_or_no_variance_has_no_selection_bias():
    assert expected_max_sharpe(1, 0.5) == 0.0
    assert expected_max_sharpe(100, 0.0) == 0.0
    # between 1 and 2 trials the approximation would dip below 0; it is held at 0
    assert expected_max_sharpe(1.05, 0.5) == 0.0


@pytest.mark.parametrize("n, var", [(0, 0.1), (0.5, 0.1), (10, -0.1), (float("nan"), 0.1), (10, float("inf"))])
def test_expected_max_sharpe_rejects_impossible_input(n, var):
    with pytest.raises(InputError):
        expected_max_sharpe(n, var)


def test_the_euler_mascheroni_constant():
    assert EULER_GAMMA == pytest.approx(np.euler_gamma, abs=1e-16)


# -- moments and the deflated Sharpe ratio ------------------------------------------------


def test_moments_are_the_papers_sample_estimates():
    # DERIVED: population (biased) skewness and non-excess kurtosis, ddof=1 Sharpe ratio.
    r = np.random.default_rng(1).standard_t(5, size=2000) * 0.01 + 0.0004
    sr, skew, kurtosis, n = sharpe_moments(r)
    assert n == 2000
    assert sr == pytest.approx(r.mean() / r.std(ddof=1), rel=1e-12)
    assert skew == pytest.approx(stats.skew(r, bias=True), rel=1e-10)
    assert kurtosis == pytest.approx(stats.kurtosis(r, fisher=False, bias=True), rel=1e-10)


def test_deflated_sharpe_ratio_from_returns_matches_scipy():
    rng = np.random.default_rng(3)
    r = rng.normal(0.0008, 0.01, 1500) + 0.004 * rng.standard_t(3, 1500)
    n_trials, var_sr = 40, 0.0009
    result = deflated_sharpe_ratio(r, n_trials, var_sr)
    # DERIVED: every piece through scipy.
    sr = r.mean() / r.std(ddof=1)
    skew = stats.skew(r)
    kurtosis = stats.kurtosis(r, fisher=False)
    sr0 = scipy_expected_max(n_trials, var_sr)
    assert isinstance(result, DeflatedSharpe)
    assert result.sr == pytest.approx(sr, rel=1e-12)
    assert result.sr0 == pytest.approx(sr0, rel=1e-12)
    assert result.skew == pytest.approx(skew, rel=1e-10)
    assert result.kurtosis == pytest.approx(kurtosis, rel=1e-10)
    assert result.n_obs == 1500 and result.n_trials == 40 and result.var_sr == var_sr
    assert result.dsr == pytest.approx(scipy_psr(sr, sr0, 1500, skew, kurtosis), rel=1e-9)


def test_one_trial_deflates_nothing():
    r = np.random.default_rng(4).normal(0.001, 0.01, 500)
    sr, skew, kurtosis, n = sharpe_moments(r)
    result = deflated_sharpe_ratio(r, 1, 0.002)
    assert result.sr0 == 0.0
    assert result.dsr == probabilistic_sharpe_ratio(sr, 0.0, n, skew, kurtosis)


def test_more_trials_or_more_dispersion_lower_the_dsr():
    r = np.random.default_rng(5).normal(0.001, 0.01, 1000)
    by_trials = [deflated_sharpe_ratio(r, n, 0.001).dsr for n in (1, 10, 100, 1000)]
    assert by_trials == sorted(by_trials, reverse=True)
    by_var = [deflated_sharpe_ratio(r, 100, v).dsr for v in (0.0, 0.0005, 0.002)]
    assert by_var == sorted(by_var, reverse=True)


def test_the_luckiest_of_many_noise_strategies_is_deflated():
    # 100 strategies with no edge, 30 times over: the best always looks significant on its
    # own (PSR against 0 above 0.95) and never once the search is admitted. SR0 is the
    # expected maximum, so the deflated values centre on 1/2.
    naive, deflated = [], []
    for seed in range(30):
        returns = np.random.default_rng(seed).normal(0.0, 0.01, size=(500, 100))
        sharpes = returns.mean(axis=0) / returns.std(axis=0, ddof=1)
        best = returns[:, int(np.argmax(sharpes))]
        naive.append(deflated_sharpe_ratio(best, 1, 0.0).dsr)
        deflated.append(deflated_sharpe_ratio(best, 100, float(np.var(sharpes, ddof=1))).dsr)
    assert min(naive) > 0.95
    assert max(deflated) < 0.95
    assert 0.35 < np.mean(deflated) < 0.65


@pytest.mark.parametrize("returns", [[], [0.01], [0.002] * 300, np.zeros(50)])
def test_too_little_or_constant_data_gives_zero_not_nan(returns):
    result = deflated_sharpe_ratio(returns, 10, 0.001)
    assert result.dsr == 0.0
    assert (result.sr, result.skew, result.kurtosis) == (0.0, 0.0, 3.0)
    assert all(math.isfinite(v) for v in result.to_dict().values())


def test_deflated_sharpe_rejects_non_finite_returns_and_negative_variance():
    with pytest.raises(InputError, match="bar 2"):
        deflated_sharpe_ratio([0.01, 0.02, float("nan"), 0.0], 5, 0.001)
    with pytest.raises(InputError):
        deflated_sharpe_ratio([0.01, -0.02, 0.03], 5, -0.001)
    with pytest.raises(InputError):
        deflated_sharpe_ratio([0.01, -0.02, 0.03], 0, 0.001)
