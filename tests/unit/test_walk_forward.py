"""Walk-forward fold plans, stitched out-of-sample records and efficiency, by hand."""
from itertools import pairwise

import numpy as np
import pytest

from app.backtest.metrics import bar_returns
from app.errors import InputError
from app.validation.walk_forward import (
    Fold,
    plan_folds,
    stitch,
    stitch_equity,
    walk_forward_efficiency,
)


def test_a_rolling_plan_slides_a_fixed_training_window():
    assert plan_folds(1000, 3, train_bars=400, test_bars=200) == [
        Fold(0, 400, 400, 600),
        Fold(200, 600, 600, 800),
        Fold(400, 800, 800, 1000),
    ]


def test_an_anchored_plan_grows_its_training_window_from_the_start():
    assert plan_folds(1000, 3, train_bars=400, test_bars=200, anchored=True) == [
        Fold(0, 400, 400, 600),
        Fold(0, 600, 600, 800),
        Fold(0, 800, 800, 1000),
    ]


def test_without_sizes_training_is_three_test_windows_and_the_remainder():
    # 1000 // (3 + 3) = 166 test bars; 1000 - 3 * 166 = 502 training bars.
    plan = plan_folds(1000, 3)
    assert plan == [Fold(0, 502, 502, 668), Fold(166, 668, 668, 834), Fold(332, 834, 834, 1000)]
    assert [f.train_bars for f in plan] == [502] * 3
    assert [f.test_bars for f in plan] == [166] * 3


def test_with_only_test_bars_training_takes_every_bar_before_the_first_test():
    assert plan_folds(1000, 4, test_bars=100) == [
        Fold(0, 600, 600, 700), Fold(100, 700, 700, 800),
        Fold(200, 800, 800, 900), Fold(300, 900, 900, 1000),
    ]


def test_with_only_train_bars_the_tests_share_the_rest():
    # (1000 - 300) // 3 = 233 test bars; the 1 bar left over is the oldest, unused.
    assert plan_folds(1000, 3, train_bars=300) == [
        Fold(1, 301, 301, 534), Fold(234, 534, 534, 767), Fold(467, 767, 767, 1000),
    ]


def test_with_both_sizes_the_plan_ends_at_the_last_bar():
    assert plan_folds(1000, 2, train_bars=300, test_bars=100) == [
        Fold(500, 800, 800, 900), Fold(600, 900, 900, 1000),
    ]
    assert plan_folds(1000, 2, train_bars=300, test_bars=100, anchored=True) == [
        Fold(500, 800, 800, 900), Fold(500, 900, 900, 1000),
    ]


@pytest.mark.parametrize("kwargs", [
    {"n_bars": 5000, "folds": 7},
    {"n_bars": 5000, "folds": 5, "anchored": True},
    {"n_bars": 4321, "folds": 4, "train_bars": 1000, "test_bars": 300},
    {"n_bars": 999, "folds": 1},
])
def test_tests_are_consecutive_and_each_follows_its_training(kwargs):
    plan = plan_folds(**kwargs)
    assert len(plan) == kwargs["folds"]
    assert plan[-1].test_end == kwargs["n_bars"]
    for fold in plan:
        assert fold.train_end == fold.test_start
        assert 0 <= fold.train_start < fold.train_end < fold.test_end
    for before, after in pairwise(plan):
        assert after.test_start == before.test_end


@pytest.mark.parametrize("kwargs, match", [
    ({"n_bars": 100, "folds": 5}, "12 bars per test window; each window needs at least 30"),
    ({"n_bars": 1000, "folds": 5, "train_bars": 600, "test_bars": 100},
     "need 1100 bars; the series has 1000"),
    ({"n_bars": 500, "folds": 2, "train_bars": 500}, "leave nothing to test"),
    ({"n_bars": 500, "folds": 5, "test_bars": 100}, "leave nothing to train"),
    ({"n_bars": 1000, "folds": 2, "train_bars": 10}, "10 bars per training window"),
    ({"n_bars": 1000, "folds": 0}, "folds must be at least 1"),
    ({"n_bars": 1000, "folds": 2.5}, "whole number"),
    ({"n_bars": 1000, "folds": True}, "whole number"),
])
def test_impossible_plans_say_what_to_change(kwargs, match):
    with pytest.raises(InputError, match=match) as caught:
        plan_folds(**kwargs)
    assert caught.value.field.startswith("validation.")
    if "window" in match or "need" in match or "nothing" in match:
        assert "fewer folds" in caught.value.hint or "shorter" in caught.value.hint


def test_a_smaller_minimum_window_admits_a_short_plan():
    # 100 // (5 + 3) = 12 test bars, 100 - 5 * 12 = 40 training bars
    assert plan_folds(100, 5, min_window_bars=10) == [
        Fold(0, 40, 40, 52), Fold(12, 52, 52, 64), Fold(24, 64, 64, 76),
        Fold(36, 76, 76, 88), Fold(48, 88, 88, 100),
    ]


def test_stitch_puts_the_test_returns_end_to_end():
    assert stitch([[0.1, -0.1], np.array([0.05]), []]).tolist() == [0.1, -0.1, 0.05]


def test_stitch_refuses_nothing_and_garbage():
    with pytest.raises(InputError):
        stitch([])
    with pytest.raises(InputError, match="fold 1"):
        stitch([[0.1], [np.nan]])
    with pytest.raises(InputError, match="fold 0"):
        stitch([[[0.1, 0.2]]])


def test_stitched_equity_compounds_through_the_folds():
    # fold 1: 100 -> 110 -> 99 (+10 %, -10 %); fold 2 from a fresh 100: -> 105 (+5 %).
    # One account: 100 -> 110 -> 99 -> 99 * 1.05 = 103.95.
    curve = stitch_equity([[110.0, 99.0], [105.0]], 100.0)
    np.testing.assert_allclose(curve, [110.0, 99.0, 103.95])
    np.testing.assert_allclose(bar_returns(curve, 100.0), [0.1, -0.1, 0.05])


def test_an_account_wiped_out_in_one_fold_stays_at_zero():
    curve = stitch_equity([[50.0, 0.0], [120.0]], 100.0)
    assert curve.tolist() == [50.0, 0.0, 0.0]
    with pytest.raises(InputError):
        stitch_equity([[1.0]], 0.0)


def test_walk_forward_efficiency_is_annualised_mean_oos_over_in_sample():
    # mean IS return 0.1 % a bar, OOS 0.03 %: WFE 0.3 whatever the bars a year
    assert walk_forward_efficiency([0.002, 0.0], [0.0005, 0.0001], 252) == pytest.approx(0.3)
    assert walk_forward_efficiency([0.002, 0.0], [0.0005, 0.0001], 105_120) == pytest.approx(0.3)
    # out of sample as good as in sample; lost money out of sample: negative
    assert walk_forward_efficiency([0.001, 0.003], [0.003, 0.001], 365) == pytest.approx(1.0)
    assert walk_forward_efficiency([0.002], [-0.001], 365) == pytest.approx(-0.5)


def test_a_few_days_of_5m_bars_do_not_blow_up_the_efficiency():
    # The CAGR of two days of 5m bars at +0.01 % a bar compounds to thousands of percent a
    # year, and a ratio of two such CAGRs read 21.8 for a strategy that kept half its edge
    # out of sample. Mean returns say what happened: 0.5.
    rng = np.random.default_rng(4)
    is_r = rng.normal(0.0002, 0.001, 576)
    oos_r = is_r[:288] * 0 + rng.normal(0.0, 0.001, 288)
    oos_r += 0.5 * is_r.mean() - oos_r.mean()
    assert walk_forward_efficiency(is_r, oos_r, 105_120) == pytest.approx(0.5)


def test_walk_forward_efficiency_is_zero_without_in_sample_gains():
    assert walk_forward_efficiency([-0.001, 0.0005], [0.002, 0.002], 365) == 0.0
    assert walk_forward_efficiency([0.0], [0.001], 365) == 0.0


def test_walk_forward_efficiency_needs_finite_records():
    with pytest.raises(InputError, match="needs in-sample and out-of-sample"):
        walk_forward_efficiency([0.1, 0.2], [], 365)
    with pytest.raises(InputError, match="finite"):
        walk_forward_efficiency([0.1], [np.inf], 365)
    with pytest.raises(InputError, match="bars_per_year"):
        walk_forward_efficiency([0.1], [0.1], 0)
