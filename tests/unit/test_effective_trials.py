"""The effective number of independent trials, on searches whose answer is planted."""
import math

import numpy as np
import pytest

from app.errors import InputError
from app.validation.effective_trials import (
    effective_trials,
    expected_max_z,
    null_sharpe_variance,
    trials_for_expected_max,
)
from app.validation.sharpe_stats import deflated_sharpe_of_search, expected_max_sharpe


def test_the_expected_maximum_matches_the_known_values():
    # E[max] of 2 and 3 standard normals are 1/sqrt(pi) and 3/(2 sqrt(pi)); 5 and 10
    # from the order-statistics tables (Harter 1961).
    assert expected_max_z(2) == pytest.approx(1 / math.sqrt(math.pi), abs=1e-6)
    assert expected_max_z(3) == pytest.approx(1.5 / math.sqrt(math.pi), abs=1e-6)
    assert expected_max_z(5) == pytest.approx(1.16296, abs=1e-5)
    assert expected_max_z(10) == pytest.approx(1.53875, abs=1e-5)
    # the closed form of the False Strategy theorem is its large-N approximation
    assert expected_max_sharpe(1e6, 1.0) == pytest.approx(expected_max_z(1e6), rel=0.01)


def test_the_count_is_the_inverse_of_the_expected_maximum():
    for k in (1.5, 7.0, 123.4, 1e5):
        assert trials_for_expected_max(expected_max_z(k)) == pytest.approx(k, rel=1e-6)
    assert trials_for_expected_max(0.0) == 1.0


def test_independent_trials_count_fully():
    rng = np.random.default_rng(11)
    for n in (20, 100):
        k = effective_trials(rng.standard_normal((4000, n))).effective
        assert 0.9 * n < k <= n


@pytest.mark.parametrize("blocks", [1, 3, 12])
def test_copies_of_a_few_strategies_count_as_those_few(blocks):
    rng = np.random.default_rng(blocks)
    base = rng.standard_normal((3000, blocks))
    trials = np.repeat(base, 240 // blocks, axis=1) + 1e-4 * rng.standard_normal((3000, 240))
    k = effective_trials(trials).effective
    assert k == pytest.approx(blocks, rel=0.06, abs=0.05)


def test_neighbouring_parameter_sets_are_not_independent_tries():
    # 200 moving averages of one random walk's returns over windows 5..204: each trial's
    # returns overlap its neighbours', so far fewer than 200 independent tries.
    rng = np.random.default_rng(5)
    r = rng.standard_normal(6000)
    trials = np.column_stack([np.convolve(r, np.ones(w) / w, mode="same") for w in range(5, 205)])
    e = effective_trials(trials)
    assert 2 < e.effective < 60
    assert e.varying == 200 and e.trials == 200


def test_a_sample_of_a_larger_search_is_extrapolated_by_how_fast_its_count_grows():
    rng = np.random.default_rng(2)
    independent = effective_trials(rng.standard_normal((3000, 256)), n_trials=5000)
    assert independent.growth > 0.9 and independent.effective > 3500
    base = rng.standard_normal((3000, 8))
    saturated = effective_trials(np.repeat(base, 32, axis=1) + 1e-3 * rng.standard_normal((3000, 256)),
                                 n_trials=5000)
    assert saturated.growth < 0.1 and saturated.effective < 12


def test_flat_trials_are_left_out_and_nothing_varying_counts_one():
    rng = np.random.default_rng(3)
    m = np.column_stack([rng.standard_normal(500), np.zeros(500), np.full(500, 0.01)])
    e = effective_trials(m)
    assert e.varying == 1 and e.effective == 1.0 and e.expected_max_z == 0.0
    assert effective_trials(np.zeros((100, 4))).effective == 1.0


def test_bad_input_is_refused():
    with pytest.raises(InputError, match="bars x trials"):
        effective_trials(np.zeros(10))
    with pytest.raises(InputError, match="finite"):
        effective_trials(np.array([[0.0, np.nan], [1.0, 2.0]]))
    with pytest.raises(InputError, match="fewer than"):
        effective_trials(np.ones((10, 5)), n_trials=3)
    with pytest.raises(InputError):
        null_sharpe_variance(1)


def _null_search(rng, bars, trials, rho):
    """Trials that share a factor (correlation rho) and have no skill."""
    common = rng.standard_normal((bars, 1))
    return 0.01 * (math.sqrt(rho) * common + math.sqrt(1 - rho) * rng.standard_normal((bars, trials)))


@pytest.mark.parametrize("rho", [0.0, 0.6, 0.95])
def test_the_deflated_sharpe_of_a_skill_less_search_is_calibrated(rho):
    # Searches with no skill at all: the DSR of their best trial is a p-value-like
    # probability, so it should reach 0.95 about 5 % of the time and sit near 0.5 in the
    # median, whatever the correlation between the trials. The old way (raw trial count)
    # is far too harsh on correlated trials: it reaches 0.5 almost never.
    rng = np.random.default_rng(int(rho * 100))
    dsrs, raw = [], []
    for _ in range(120):
        m = _null_search(rng, 1000, 60, rho)
        sr = m.mean(axis=0) / m.std(axis=0, ddof=1)
        best = m[:, int(np.argmax(sr))]
        dsrs.append(deflated_sharpe_of_search(best, effective_trials(m)).dsr)
        from app.validation.sharpe_stats import deflated_sharpe_ratio
        raw.append(deflated_sharpe_ratio(best, 60, 1 / 999).dsr)
    dsrs = np.array(dsrs)
    assert np.mean(dsrs >= 0.95) <= 0.1
    assert 0.3 < np.median(dsrs) < 0.7
    if rho >= 0.6:
        assert np.median(raw) < np.median(dsrs) - 0.15
