"""The verdict on a search's winner: every trust statistic, from arrays, in one place.

The services load the arrays (the winner's per-bar returns in and out of sample, the
returns of a representative sample of the trials) and store the answer; everything a
stage is decided on is computed here, purely:

- the effective number of independent trials of the search (``effective_trials``) and
  the winner's deflated Sharpe ratio against it (``deflated_sharpe_of_search``);
- the probabilistic Sharpe ratio of the held-out record (``out_of_sample_sharpe``) and
  the evidence of both records together (``combined_evidence``);
- the PBO of the search over its representative sample (``pbo``);
- for a walk-forward, the same over all folds (``assess_walk_forward``) and the
  walk-forward efficiency of the stitched records;
- the confidence and the stage (``confidence_and_stage``).

Series longer than ``MAX_SAMPLE_BARS`` bars are summed into that many consecutive
groups for the sample's statistics (PBO ranks trials and the effective trials need their
correlations; both survive summing consecutive returns); the winner's own DSR and PSR
always use every bar.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np

from app.errors import InputError
from app.validation.confidence import Thresholds, confidence_and_stage
from app.validation.effective_trials import EffectiveTrials, effective_trials
from app.validation.pbo import DEFAULT_SPLITS, PBOResult, probability_of_backtest_overfitting
from app.validation.sharpe_stats import (
    Z_CAP,
    DeflatedSharpe,
    OutOfSample,
    combined_evidence,
    deflated_sharpe_of_search,
    out_of_sample_sharpe,
)
from app.validation.walk_forward import walk_forward_efficiency

__all__ = ["MAX_SAMPLE_BARS", "Verdict", "aggregate_returns", "assess_search",
           "assess_walk_forward"]

MAX_SAMPLE_BARS = 20_000
_PHI = NormalDist().cdf


def aggregate_returns(returns: np.ndarray, max_bars: int = MAX_SAMPLE_BARS) -> np.ndarray:
    """Per-bar returns summed into at most ``max_bars`` consecutive groups (the newest
    bars in full groups; the oldest group takes the remainder).

    >>> aggregate_returns(np.arange(10.0), 4).tolist()
    [0.0, 6.0, 15.0, 24.0]
    """
    r = np.asarray(returns, dtype=np.float64)
    n = r.shape[0]
    if n <= max_bars:
        return r
    size = -(-n // max_bars)
    starts = np.arange(n - size * (n // size), n, size)
    if starts[0] != 0:
        starts = np.concatenate(([0], starts))
    return np.add.reduceat(r, starts, axis=0)


@dataclass(frozen=True)
class Verdict:
    """What a trader reads: ``stage`` with its ``reasons`` and ``confidence``, and the
    statistics behind them (``report()`` is the JSON stored with the job and the
    configuration)."""

    confidence: float
    stage: str
    reasons: list[str]
    dsr: DeflatedSharpe
    effective: EffectiveTrials | None
    oos: OutOfSample | None
    evidence: float
    pbo: PBOResult | None
    pbo_trials: int
    n_trials: int
    lookahead: dict | None = None
    extra: dict = field(default_factory=dict)

    def report(self) -> dict:
        return {
            "n_trials": self.n_trials,
            "effective_trials": self.effective.effective if self.effective else float(self.n_trials),
            "effective": self.effective.to_dict() if self.effective else None,
            "deflated_sharpe": self.dsr.to_dict(),
            "out_of_sample": self.oos.to_dict() if self.oos else None,
            "psr_oos": self.oos.psr if self.oos else None,
            "evidence": self.evidence,
            "pbo": self.pbo.to_dict() if self.pbo is not None else None,
            "pbo_trials": self.pbo_trials if self.pbo is not None else 0,
            "lookahead": self.lookahead,
            **self.extra,
        }


def _pbo(sample: np.ndarray, splits: int) -> PBOResult | None:
    if sample.shape[1] < 2 or sample.shape[0] < splits * 4:
        return None
    return probability_of_backtest_overfitting(sample, n_splits=splits)


def _verdict(dsr, oos, pbo, is_metrics, oos_metrics, min_trades, thresholds, lookahead, wfe=None):
    if oos is not None:
        evidence = combined_evidence([(dsr.z, dsr.n_obs), (oos.z, oos.n_obs)])
    else:
        evidence = dsr.dsr
    confidence, stage, reasons = confidence_and_stage(
        dsr.dsr, pbo, is_metrics, oos_metrics, min_trades, thresholds,
        lookahead=None if lookahead is None else lookahead.get("message", lookahead),
        psr_oos=None if oos is None else oos.psr, evidence=evidence, wfe=wfe)
    return evidence, confidence, stage, reasons


def assess_search(*, best_returns, sample_returns, n_trials: int, is_metrics: dict,
                  oos_returns=None, oos_metrics: dict | None = None, min_trades: int,
                  thresholds: Thresholds = Thresholds(), lookahead: dict | None = None,
                  pbo_splits: int = DEFAULT_SPLITS, choosable=None) -> Verdict:
    """The verdict on the winner of one search.

    ``best_returns``: the winner's per-bar returns over the bars it was chosen on;
    ``sample_returns``: bars x trials returns of a representative sample of the search's
    trials over the same bars (``representative_trials``; summed with
    ``aggregate_returns`` when long), ordered by value, best first; ``n_trials``: the
    trials of the whole search; ``oos_returns`` and ``oos_metrics``: the winner on the
    held-out bars, or None; ``lookahead``: a failed check's ``to_dict()``, or None;
    ``choosable``: which sample columns the selection could have picked (trials that
    made ``min_trades``; default all). Every trial tried counts towards the effective
    trials; the PBO asks about the choice, so it runs over the choosable ones.
    """
    sample = np.asarray(sample_returns, dtype=np.float64)
    if sample.ndim != 2 or sample.shape[1] < 1:
        raise InputError("sample_returns must be a bars x trials matrix with at least one trial")
    effective = effective_trials(sample, n_trials=max(int(n_trials), sample.shape[1]))
    dsr = deflated_sharpe_of_search(best_returns, effective)
    oos = out_of_sample_sharpe(oos_returns) if oos_returns is not None else None
    choices = sample if choosable is None else sample[:, np.asarray(choosable, dtype=bool)]
    pbo = _pbo(choices, pbo_splits)
    evidence, confidence, stage, reasons = _verdict(dsr, oos, pbo, is_metrics, oos_metrics,
                                                    min_trades, thresholds, lookahead)
    return Verdict(confidence, stage, reasons, dsr, effective, oos, evidence, pbo,
                   int(choices.shape[1]), int(n_trials), lookahead)


def assess_walk_forward(*, fold_reports: Sequence[dict], is_returns, oos_returns,
                        is_metrics: dict, oos_metrics: dict, min_trades: int,
                        bars_per_year: float, thresholds: Thresholds = Thresholds(),
                        lookahead: dict | None = None) -> Verdict:
    """The verdict on a walk-forward: trust statistics over all its folds.

    ``fold_reports`` are the folds' own ``Verdict.report()``s (each fold a search over
    its training window). ``is_returns`` is the stitched in-sample record (each fold's
    winner over its own training window, end to end) and ``oos_returns`` the stitched
    test windows.

    - DSR: ``Phi`` of the mean of the folds' deflated z-scores (each fold's winner
      against its own search), over the folds' mean training length;
    - PBO: the share of all folds' CSCV combinations whose in-sample choice fell to or
      below the median out of sample (the folds' logits pooled);
    - PSR of the stitched out-of-sample record, and the evidence of both;
    - WFE from the stitched records' annualised mean returns (``walk_forward_efficiency``).
    """
    if not fold_reports:
        raise InputError("a walk-forward verdict needs at least one fold")
    dsrs = [r["deflated_sharpe"] for r in fold_reports]
    z = float(np.mean([d.get("z", -Z_CAP) for d in dsrs]))
    n_obs = int(round(np.mean([d["n_obs"] for d in dsrs])))
    dsr = DeflatedSharpe(dsr=_PHI(z), sr=float(np.mean([d["sr"] for d in dsrs])),
                         sr0=float(np.mean([d["sr0"] for d in dsrs])),
                         skew=float(np.mean([d["skew"] for d in dsrs])),
                         kurtosis=float(np.mean([d["kurtosis"] for d in dsrs])), n_obs=n_obs,
                         n_trials=float(sum(d["n_trials"] for d in dsrs)),
                         var_sr=float(np.mean([d["var_sr"] for d in dsrs])), z=z)
    pbos = [r["pbo"] for r in fold_reports if r.get("pbo")]
    pbo = None
    if len(pbos) == len(fold_reports):
        combos = sum(p["n_combinations"] for p in pbos)
        pooled = sum(p["pbo"] * p["n_combinations"] for p in pbos) / combos
        pbo = _PooledPBO(pooled, combos, [p["pbo"] for p in pbos])
    oos = out_of_sample_sharpe(oos_returns)
    wfe = walk_forward_efficiency(is_returns, oos_returns, bars_per_year)
    evidence, confidence, stage, reasons = _verdict(dsr, oos, pbo, is_metrics, oos_metrics,
                                                    min_trades, thresholds, lookahead, wfe=wfe)
    n_trials = int(sum(r["n_trials"] for r in fold_reports))
    runs = int(sum(r.get("runs", r["n_trials"]) for r in fold_reports))
    return Verdict(confidence, stage, reasons, dsr, None, oos, evidence, pbo,
                   int(sum(r.get("pbo_trials", 0) for r in fold_reports)), n_trials, lookahead,
                   extra={"wfe": wfe, "runs": runs,
                          "effective_trials": float(sum(r["effective_trials"] for r in fold_reports)),
                          "folds": [{"fold": i, "dsr": r["deflated_sharpe"]["dsr"],
                                     "effective_trials": r["effective_trials"],
                                     "pbo": (r.get("pbo") or {}).get("pbo"),
                                     "n_trials": r["n_trials"]}
                                    for i, r in enumerate(fold_reports)]})


@dataclass(frozen=True)
class _PooledPBO:
    """PBO pooled over folds (quacks like ``PBOResult`` for the verdict and the report)."""

    pbo: float
    n_combinations: int
    per_fold: list

    def to_dict(self) -> dict:
        return {"pbo": self.pbo, "n_combinations": self.n_combinations, "per_fold": self.per_fold}
