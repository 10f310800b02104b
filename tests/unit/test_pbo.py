"""Probability of backtest overfitting (CSCV): by hand, against a plain loop, and on
planted data."""
from itertools import combinations

import numpy as np
import pytest

from app.errors import InputError
from app.validation.pbo import PBOResult, probability_of_backtest_overfitting


def reference_pbo(m, s):
    """The procedure of Bailey, Borwein, López de Prado & Zhu written as plainly as
    possible: loops, np.std, the oldest T mod S bars dropped, ties against the trial."""
    t, n = m.shape
    length = t // s
    m = m[t - length * s:]
    blocks = [m[i * length:(i + 1) * length] for i in range(s)]

    def sharpe(x):
        sd = x.std(axis=0, ddof=1)
        return np.where(sd > 0, x.mean(axis=0) / np.where(sd > 0, sd, 1), 0.0)

    logits, pairs = [], []
    for chosen in combinations(range(s), s // 2):
        rest = [i for i in range(s) if i not in chosen]
        ins = sharpe(np.vstack([blocks[i] for i in chosen]))
        oos = sharpe(np.vstack([blocks[i] for i in rest]))
        tied = np.flatnonzero(ins == ins.max())
        pick = tied[np.argmin(oos[tied])]
        rank = np.sum(oos < oos[pick]) + (np.sum(oos == oos[pick]) + 1) / 2
        omega = rank / (n + 1)
        logits.append(np.log(omega / (1 - omega)))
        pairs.append((ins[pick], oos[pick]))
    logits = np.array(logits)
    return float(np.mean(logits <= 0)), logits, np.array(pairs)


def test_a_case_worked_by_hand():
    # S = 2: the two halves swap roles. Per-bar Sharpe of two bars [a, b] is
    # (a + b) / (sqrt(2) |a - b|).
    #             trial 0   trial 1   trial 2   trial 3
    # first half  [1, 3]    [2, 3]    [0, 1]    [-2, -1]   Sharpe 1.414  3.536  0.707 -2.121
    # second half [1, 2]    [-1, 0]   [1, 3]    [0, 1]     Sharpe 2.121 -0.707  1.414  0.707
    # In sample = first half: trial 1 wins, and is last (rank 1 of 4) in the second half:
    #   omega = 1/5, lambda = ln(1/4).
    # In sample = second half: trial 0 wins, and is third (rank 3 of 4) in the first half:
    #   omega = 3/5, lambda = ln(3/2).
    # PBO = share of lambda <= 0 = 1/2.
    m = np.array([[1, 2, 0, -2],
                  [3, 3, 1, -1],
                  [1, -1, 1, 0],
                  [2, 0, 3, 1]], dtype=float)
    result = probability_of_backtest_overfitting(m, n_splits=2)
    assert isinstance(result, PBOResult)
    assert result.pbo == 0.5
    np.testing.assert_allclose(result.logits, [np.log(1 / 4), np.log(3 / 2)], rtol=1e-12)
    r2 = np.sqrt(2)
    np.testing.assert_allclose(result.is_performance, [5 / r2, 3 / r2], rtol=1e-12)
    np.testing.assert_allclose(result.oos_performance, [-1 / r2, 4 / (2 * r2)], rtol=1e-12)
    assert (result.n_combinations, result.n_splits, result.n_trials, result.bars_used) == (2, 2, 4, 4)
    assert result.prob_oos_loss == 0.5


@pytest.mark.parametrize("s, t, n, seed", [(4, 40, 3, 0), (6, 63, 7, 1), (8, 160, 12, 2), (16, 333, 9, 3)])
def test_the_vectorised_version_is_the_plain_procedure(s, t, n, seed):
    m = np.random.default_rng(seed).normal(0.0, 0.01, size=(t, n))
    result = probability_of_backtest_overfitting(m, n_splits=s)
    pbo, logits, pairs = reference_pbo(m, s)
    assert result.pbo == pbo
    np.testing.assert_allclose(result.logits, logits, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(result.is_performance, pairs[:, 0], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(result.oos_performance, pairs[:, 1], rtol=1e-9, atol=1e-12)


def test_pure_noise_overfits_about_half_the_time():
    # No trial has an edge, so the in-sample winner's out-of-sample rank is uniform and
    # PBO is 1/2 in expectation; a single draw varies widely (the combinations share data).
    pbos = [probability_of_backtest_overfitting(
        np.random.default_rng(seed).normal(0.0, 0.01, size=(1600, 50))).pbo for seed in range(10)]
    assert 0.35 < np.mean(pbos) < 0.65
    assert all(0.1 < p < 0.9 for p in pbos)


def test_a_real_persistent_edge_is_not_overfitting():
    for seed in range(5):
        m = np.random.default_rng(100 + seed).normal(0.0, 0.01, size=(1600, 50))
        m[:, 17] += 0.0025  # per-bar Sharpe 0.25, every bar
        result = probability_of_backtest_overfitting(m)
        assert result.pbo < 0.05
        assert np.median(result.logits) == pytest.approx(np.log(50))  # ranked first of 50


def test_permuting_the_trials_changes_nothing():
    rng = np.random.default_rng(5)
    m = rng.normal(0.0, 0.01, size=(800, 30))
    m[:, 3] = m[:, 4]          # duplicated trials tie exactly
    m[:, 10] = 0.0             # a trial that never traded
    base = probability_of_backtest_overfitting(m, n_splits=8)
    for _ in range(3):
        perm = rng.permutation(m.shape[1])
        other = probability_of_backtest_overfitting(m[:, perm], n_splits=8)
        assert other.pbo == base.pbo
        np.testing.assert_array_equal(other.logits, base.logits)
        np.testing.assert_array_equal(other.is_performance, base.is_performance)
        np.testing.assert_array_equal(other.oos_performance, base.oos_performance)


def test_ties_go_against_the_selected_trial_and_share_their_rank():
    m = np.array([[1, 1, 0, -1],
                  [3, 3, 1, 0],
                  [1, 1, 0, 1],
                  [2, 4, 2, 0]], dtype=float)
    #              trial 0   trial 1   trial 2   trial 3
    # first half   [1, 3]    [1, 3]    [0, 1]    [-1, 0]   Sharpe 1.414  1.414  0.707 -0.707
    # second half  [1, 2]    [1, 4]    [0, 2]    [1, 0]    Sharpe 2.121  1.179  0.707  0.707
    # In sample = first half: trials 0 and 1 tie; trial 1 is worse out of sample, so it is
    # the one taken: above the two tied at 0.707 (ranks 1 and 2), below trial 0 -> rank 3,
    # omega = 3/5.
    # In sample = second half: trial 0 wins; out of sample it ties with trial 1 for ranks
    # 3 and 4 -> midrank 3.5, omega = 3.5/5.
    result = probability_of_backtest_overfitting(m, n_splits=2)
    np.testing.assert_allclose(result.oos_performance, [5 / (3 * np.sqrt(2)), np.sqrt(2)], rtol=1e-12)
    np.testing.assert_allclose(result.logits, [np.log(3 / 2), np.log(3.5 / 1.5)], rtol=1e-12)
    assert result.pbo == 0.0


def test_trials_that_never_vary_score_zero_and_count_as_overfit():
    m = np.zeros((64, 5))
    m[:, 1] = 0.001  # a constant return has no spread either, whatever rounding says
    result = probability_of_backtest_overfitting(m, n_splits=4)
    assert result.pbo == 1.0
    np.testing.assert_array_equal(result.logits, np.zeros(6))
    assert np.all(np.isfinite(result.is_performance))


def test_the_oldest_bars_that_do_not_fill_a_block_are_dropped():
    m = np.random.default_rng(6).normal(0.0, 0.01, size=(1003, 8))
    result = probability_of_backtest_overfitting(m, n_splits=10)
    trimmed = probability_of_backtest_overfitting(m[3:], n_splits=10)
    assert result.bars_used == 1000
    np.testing.assert_array_equal(result.logits, trimmed.logits)


def test_a_metric_of_your_own():
    m = np.random.default_rng(7).normal(0.0, 0.01, size=(240, 6))

    def sharpe(x):
        return x.mean(axis=0) / x.std(axis=0, ddof=1)

    default = probability_of_backtest_overfitting(m, n_splits=6)
    custom = probability_of_backtest_overfitting(m, n_splits=6, metric=sharpe)
    assert custom.pbo == default.pbo
    np.testing.assert_allclose(custom.logits, default.logits)
    by_mean = probability_of_backtest_overfitting(m, n_splits=6, metric=lambda x: x.mean(axis=0))
    assert by_mean.n_combinations == 20 and 0.0 <= by_mean.pbo <= 1.0
    with pytest.raises(InputError, match="one number per column"):
        probability_of_backtest_overfitting(m, n_splits=6, metric=lambda x: x.mean())


def test_degradation_statistics():
    m = np.random.default_rng(8).normal(0.0, 0.01, size=(400, 20))
    result = probability_of_backtest_overfitting(m, n_splits=8)
    summary = result.to_dict()
    assert summary["n_combinations"] == 70
    assert summary["pbo"] == result.pbo
    assert np.isfinite(summary["degradation_slope"])
    assert 0.0 <= summary["prob_oos_loss"] <= 1.0


@pytest.mark.parametrize("shape, s, match", [
    ((100, 5), 3, "even"),
    ((100, 5), 0, "even"),
    ((100, 1), 4, "at least 2 trials"),
    ((10, 5), 16, "too few"),
    ((100,), 4, "matrix"),
])
def test_impossible_inputs_say_what_to_change(shape, s, match):
    with pytest.raises(InputError, match=match):
        probability_of_backtest_overfitting(np.zeros(shape), n_splits=s)


def test_non_finite_returns_are_refused():
    m = np.zeros((40, 3))
    m[7, 2] = np.nan
    with pytest.raises(InputError, match="bar 7 of trial 2"):
        probability_of_backtest_overfitting(m, n_splits=4)


def test_a_trials_first_matrix_gives_the_same_result_as_a_bars_first_one():
    """The layout _trust builds (trials x bars, passed transposed) changes nothing."""
    m = np.random.default_rng(9).normal(0.0, 0.01, size=(2000, 40))
    m[:, 7] = m[:, 21]
    by_trial = np.ascontiguousarray(m.T)
    a = probability_of_backtest_overfitting(m)
    b = probability_of_backtest_overfitting(by_trial.T)
    assert a.n_combinations == 12_870 and a.pbo == b.pbo
    np.testing.assert_array_equal(a.logits, b.logits)
    np.testing.assert_array_equal(a.is_performance, b.is_performance)
