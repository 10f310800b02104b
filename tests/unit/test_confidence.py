"""Confidence and lifecycle stage: every branch of the rule."""
import numpy as np
import pytest

from app.errors import InputError
from app.validation import deflated_sharpe_ratio, probability_of_backtest_overfitting
from app.validation.confidence import Thresholds, confidence_and_stage
from app.validation.lifecycle import STAGES
from app.validation.lookahead import LookaheadViolation

GOOD_IS = {"sharpe_ratio": 2.0, "num_trades": 60}
GOOD_OOS = {"sharpe_ratio": 1.6, "num_trades": 20}


def rule(dsr=0.97, pbo=0.1, is_metrics=GOOD_IS, oos_metrics=GOOD_OOS, min_trades=20,
         psr_oos=1.0, evidence=0.999, **kw):
    return confidence_and_stage(dsr, pbo, is_metrics, oos_metrics, min_trades,
                                psr_oos=psr_oos, evidence=evidence, **kw)


def test_a_strong_checked_result_is_a_live_candidate():
    # 0.97 * 1.0 * clip(1.6 / 2.0) * (1 - 0.1) * min(1, 60 / 60) = 0.97 * 0.8 * 0.9 = 0.6984
    assert rule() == (0.6984, "LIVE_CANDIDATE", [])


def test_the_out_of_sample_psr_scales_the_confidence():
    # 0.97 * 0.9 * 0.8 * 0.9
    assert rule(psr_oos=0.9)[0] == pytest.approx(0.97 * 0.9 * 0.8 * 0.9, abs=1e-6)


def test_the_old_systems_paper_trade_is_rejected():
    # Saved before as PAPER with confidence 0.08: Sharpe -5.48 over 14 trades.
    confidence, stage, reasons = confidence_and_stage(
        0.2, 0.7, {"sharpe_ratio": -5.48, "num_trades": 14}, {"sharpe_ratio": -2.1, "num_trades": 4},
        min_trades=10)
    assert (confidence, stage) == (0.0, "REJECTED")
    assert "in-sample Sharpe -5.48 is not positive" in reasons
    assert "out-of-sample Sharpe -2.10 is not positive" in reasons
    # even with every other statistic flattering, a negative Sharpe is rejected
    assert rule(dsr=0.99, pbo=0.0, is_metrics={"sharpe_ratio": -5.48, "num_trades": 14},
                oos_metrics=None, min_trades=10)[1] == "REJECTED"


@pytest.mark.parametrize("kwargs, reason", [
    ({"oos_metrics": {"sharpe_ratio": 0.0, "num_trades": 3}}, "out-of-sample Sharpe 0.00 is not positive"),
    ({"oos_metrics": {"sharpe_ratio": -0.4, "num_trades": 9}}, "out-of-sample Sharpe -0.40 is not positive"),
    ({"is_metrics": {"sharpe_ratio": 2.0, "num_trades": 19}},
     "the winner made 19 trades, fewer than min_trades=20"),
    ({"is_metrics": {"sharpe_ratio": 0.0, "num_trades": 60}}, "in-sample Sharpe 0.00 is not positive"),
    ({"dsr": 0.49}, "deflated Sharpe ratio 0.49 is below 0.50"),
    ({"evidence": 0.94}, "evidence 0.94 is below 0.95: in and out of sample together"),
    ({"oos_metrics": None, "dsr": 0.94, "evidence": None},
     "deflated Sharpe ratio 0.94 is below 0.95 with no out-of-sample record"),
    ({"oos_metrics": None, "dsr": 0.99, "evidence": None, "pbo": 0.51},
     "probability of backtest overfitting 0.51 is above 0.50 with no out-of-sample record"),
    ({"wfe": 0.49}, "walk-forward efficiency 0.49 is below 0.50"),
    ({"wfe": float("nan")}, "walk-forward efficiency nan is below 0.50"),
    ({"pbo": 0.97, "psr_oos": 0.6}, "confidence 0.014 is below 0.05"),
])
def test_each_rejection_rule(kwargs, reason):
    confidence, stage, reasons = rule(**kwargs)
    assert (confidence, stage) == (0.0, "REJECTED")
    assert len(reasons) == 1 and reasons[0].startswith(reason), reasons


def test_a_high_pbo_with_a_confirming_held_out_record_is_paper_not_rejected():
    # The pick is no better than the family's median, but the family's edge held out of
    # sample: PAPER, with the PBO lowering the confidence and named as what holds it back.
    confidence, stage, reasons = rule(dsr=0.99, pbo=0.6)
    assert stage == "PAPER"
    assert confidence == pytest.approx(0.99 * 0.8 * 0.4, abs=1e-6)
    assert reasons[0].startswith("probability of backtest overfitting 0.60 is above 0.50")


def test_a_failed_lookahead_check_rejects_whatever_the_numbers():
    violation = LookaheadViolation("SMA_PEEK", 123, 151, "2024-01-01T10:15:00Z", 1.0, float("nan"))
    violation_reason = ("lookahead check failed: SMA_PEEK peeks ahead: target at bar 123 "
                        "(2024-01-01T10:15:00Z) changes when the data after bar 150 is removed or changed")
    confidence, stage, reasons = rule(lookahead=violation)
    assert (confidence, stage) == (0.0, "REJECTED")
    assert reasons == [violation_reason]


def test_every_failed_rule_is_a_reason():
    _, stage, reasons = rule(dsr=0.1, pbo=0.9, is_metrics={"sharpe_ratio": -1.0, "num_trades": 2},
                             oos_metrics={"sharpe_ratio": -1.0}, evidence=0.2, wfe=0.1)
    assert stage == "REJECTED" and len(reasons) == 6


def test_the_boundaries_are_not_rejections():
    # DSR exactly 0.5, evidence exactly 0.95, WFE exactly 0.5 pass; min_trades exactly met.
    confidence, stage, _ = rule(dsr=0.5, pbo=0.5, evidence=0.95, wfe=0.5,
                                is_metrics={"sharpe_ratio": 2.0, "num_trades": 20})
    assert stage == "PAPER"
    # 0.5 * 1.0 * 0.8 * 0.5 * (20 / 60)
    assert confidence == pytest.approx(0.5 * 0.8 * 0.5 * 20 / 60, abs=1e-6)


def test_a_dsr_or_evidence_short_of_significance_stays_on_paper():
    confidence, stage, reasons = rule(dsr=0.94, pbo=0.0, oos_metrics={"sharpe_ratio": 2.5})
    assert confidence == 0.94 and stage == "PAPER"
    assert reasons == ["deflated Sharpe ratio 0.94 is below 0.95"]
    _, stage, reasons = rule(dsr=0.99, pbo=0.0, oos_metrics={"sharpe_ratio": 2.5}, evidence=0.98)
    assert stage == "PAPER" and reasons == ["evidence 0.980 is below 0.99"]


def test_a_low_confidence_stays_on_paper():
    # DSR significant, but only half the in-sample Sharpe survived out of sample:
    # 0.99 * 1.0 * 0.5 * 0.9 * 1 = 0.4455
    confidence, stage, reasons = rule(dsr=0.99, oos_metrics={"sharpe_ratio": 1.0})
    assert confidence == pytest.approx(0.4455)
    assert stage == "PAPER" and reasons == ["confidence 0.45 is below 0.60"]


def test_confidence_exactly_at_the_live_threshold_is_a_candidate():
    assert rule(dsr=1.0, pbo=0.4, oos_metrics={"sharpe_ratio": 2.0}) == (0.6, "LIVE_CANDIDATE", [])


def test_out_of_sample_better_than_in_sample_earns_no_extra_credit():
    assert rule(dsr=0.96, pbo=0.0, oos_metrics={"sharpe_ratio": 5.0})[0] == 0.96


def test_few_trades_scale_confidence_until_three_times_the_minimum():
    assert rule(dsr=1.0, pbo=0.0, oos_metrics={"sharpe_ratio": 2.0},
                is_metrics={"sharpe_ratio": 2.0, "num_trades": 30})[0] == 0.5
    assert rule(dsr=1.0, pbo=0.0, oos_metrics={"sharpe_ratio": 2.0},
                is_metrics={"sharpe_ratio": 2.0, "num_trades": 600})[0] == 1.0
    assert rule(dsr=1.0, pbo=0.0, oos_metrics={"sharpe_ratio": 2.0}, min_trades=0,
                is_metrics={"sharpe_ratio": 2.0, "num_trades": 0})[0] == 1.0


def test_an_unchecked_result_gets_half_credit_and_stays_on_paper():
    confidence, stage, reasons = rule(dsr=1.0, pbo=0.0, oos_metrics=None, evidence=None)
    assert (confidence, stage) == (0.5, "PAPER")
    assert "no out-of-sample check" in reasons
    confidence, stage, reasons = rule(dsr=1.0, pbo=None, oos_metrics={"sharpe_ratio": 2.0})
    assert (confidence, stage) == (0.5, "PAPER")
    assert "probability of backtest overfitting not computed" in reasons


def test_without_a_held_out_record_the_evidence_is_the_dsr():
    assert rule(dsr=0.96, pbo=0.0, oos_metrics=None, evidence=None)[1] == "PAPER"
    assert rule(dsr=0.949, pbo=0.0, oos_metrics=None, evidence=None)[1] == "REJECTED"


def test_the_statistics_objects_can_be_passed_as_they_are():
    rng = np.random.default_rng(0)
    returns = rng.normal(0.0, 0.01, size=(800, 20))
    returns[:, 0] += 0.003
    pbo = probability_of_backtest_overfitting(returns, n_splits=8)
    dsr = deflated_sharpe_ratio(returns[:, 0], 20, 0.001)
    assert rule(dsr=dsr, pbo=pbo) == rule(dsr=dsr.dsr, pbo=pbo.pbo)


def test_thresholds_can_be_tightened():
    strict = Thresholds(reject_dsr_below=0.9, live_min_confidence=0.8)
    assert rule(dsr=0.89, thresholds=strict)[1] == "REJECTED"
    assert rule(thresholds=strict)[1] == "PAPER"
    with pytest.raises(AttributeError):
        strict.live_min_dsr = 0.5  # frozen


def test_the_stage_and_the_confidence_never_contradict_each_other():
    # Over a grid of every input, REJECTED is confidence 0, PAPER at least the floor and
    # below what any live candidate has... and every live candidate at least 0.6.
    seen = {"REJECTED": [], "PAPER": [], "LIVE_CANDIDATE": []}
    for dsr in (0.0, 0.3, 0.5, 0.8, 0.96, 1.0):
        for pbo in (None, 0.0, 0.5, 0.9, 1.0):
            for oos in (None, {"sharpe_ratio": -1.0}, {"sharpe_ratio": 0.1}, {"sharpe_ratio": 9.0}):
                for psr in (0.4, 0.9, 1.0):
                    for evidence in (None, 0.5, 0.96, 0.999):
                        confidence, stage, _ = rule(dsr=dsr, pbo=pbo, oos_metrics=oos,
                                                    psr_oos=psr, evidence=evidence)
                        assert 0.0 <= confidence <= 1.0
                        assert stage in STAGES
                        seen[stage].append(confidence)
    assert set(seen["REJECTED"]) == {0.0}
    assert min(seen["PAPER"]) >= Thresholds().reject_confidence_below
    assert min(seen["LIVE_CANDIDATE"]) >= Thresholds().live_min_confidence
    assert all(len(v) for v in seen.values())


@pytest.mark.parametrize("dsr, pbo", [(1.2, 0.1), (-0.1, 0.1), (float("nan"), 0.1), (0.9, 1.5)])
def test_probabilities_outside_0_1_are_refused(dsr, pbo):
    with pytest.raises(InputError):
        rule(dsr=dsr, pbo=pbo)


def test_missing_or_non_finite_metrics_count_as_zero():
    _, stage, reasons = rule(is_metrics={}, oos_metrics={"sharpe_ratio": float("nan")})
    assert stage == "REJECTED"
    assert "in-sample Sharpe 0.00 is not positive" in reasons
    assert "out-of-sample Sharpe 0.00 is not positive" in reasons
