"""Pure validation: splits, walk-forward, overfitting statistics, lookahead, confidence, stages."""
from app.validation.confidence import Thresholds, confidence_and_stage
from app.validation.lifecycle import MACHINE_STAGES, PERSON_STAGES, STAGES
from app.validation.lookahead import LookaheadViolation, check_lookahead, default_cuts
from app.validation.pbo import PBOResult, probability_of_backtest_overfitting
from app.validation.sharpe_stats import (
    DeflatedSharpe,
    deflated_sharpe_ratio,
    expected_max_sharpe,
    probabilistic_sharpe_ratio,
    sharpe_moments,
)
from app.validation.split import ValidationPlan, holdout_split, parse_validation
from app.validation.walk_forward import (
    Fold,
    plan_folds,
    stitch,
    stitch_equity,
    walk_forward_efficiency,
)

__all__ = [
    "STAGES",
    "DeflatedSharpe",
    "Fold",
    "LookaheadViolation",
    "PBOResult",
    "Thresholds",
    "ValidationPlan",
    "MACHINE_STAGES",
    "PERSON_STAGES",
    "check_lookahead",
    "confidence_and_stage",
    "default_cuts",
    "deflated_sharpe_ratio",
    "expected_max_sharpe",
    "holdout_split",
    "parse_validation",
    "plan_folds",
    "probabilistic_sharpe_ratio",
    "probability_of_backtest_overfitting",
    "sharpe_moments",
    "stitch",
    "stitch_equity",
    "walk_forward_efficiency",
]
