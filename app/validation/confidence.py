"""How far to trust a trained configuration: a confidence in [0, 1] and a lifecycle stage.

The inputs are the statistics of this package (``app.validation.trust`` assembles them):

- ``DSR``, the deflated Sharpe ratio of the chosen trial in sample: the probability that
  its Sharpe ratio beats the best the search would show by luck, given the search's
  effective number of independent trials (``sharpe_stats``, ``effective_trials``);
- ``PSR_oos``, the probabilistic Sharpe ratio of the held-out record against 0 (nothing
  was chosen on it, so nothing is deflated);
- ``evidence``, both records together: ``Phi`` of the deflated in-sample z-score and the
  out-of-sample z-score, weighted by the square roots of their bars (Stouffer/Liptak;
  ``combined_evidence``); without a held-out record it is the DSR alone;
- ``PBO``, the probability of backtest overfitting of the search (``pbo``), over a
  representative sample of its trials;
- ``WFE``, the walk-forward efficiency (``walk_forward``), for walk-forward jobs;
- the in-sample and out-of-sample metrics (``sharpe_ratio``, ``num_trades``) and the
  lookahead check.

The formula::

    confidence = DSR
               * PSR_oos * clip(OOS Sharpe / IS Sharpe, 0, 1)   # significant and surviving out of sample
               * (1 - PBO)                                      # how unlikely the choice is a fluke
               * min(1, trades / (3 * min_trades))              # enough trades to count

A check that was not made (no held-out record; too few trials for CSCV) contributes a
factor of 0.5 instead: an unchecked result gets at most half the credit, and cannot be a
live candidate.

The stage, in this order:

- ``REJECTED`` when any of: the lookahead check failed; fewer than ``min_trades`` trades
  (in sample, where the optimizer chose); in-sample Sharpe <= 0; out-of-sample Sharpe
  <= 0; ``DSR < 0.5`` (the winner is more likely the search's luck than not);
  ``evidence < 0.95`` (in and out of sample together, the Sharpe ratio is not shown above
  0 at 95 %; without a held-out record that asks ``DSR >= 0.95``); ``PBO > 0.5`` when
  there is no held-out record to check the choice (with one, a high PBO says the
  optimizer's pick is no better than the family's median: the held-out record decides,
  and PBO lowers the confidence); ``WFE < 0.5`` (Pardo's threshold); or a confidence
  below 0.05, so that no configuration is ``PAPER`` with a confidence that reads as 0.
  A rejected configuration gets confidence 0.
- ``LIVE_CANDIDATE`` when ``confidence >= 0.6``, ``DSR >= 0.95`` and ``evidence >= 0.99``,
  with the held-out record and PBO both computed and ``PBO <= 0.5``. Going live is
  still a person's decision.
- ``PAPER`` otherwise.

So ``REJECTED`` (confidence 0) < ``PAPER`` (0.05 to 1) and every ``LIVE_CANDIDATE`` has
at least 0.6: the confidence and the stage never contradict each other. The thresholds
are the fields of ``Thresholds`` (``TRAD_THRESHOLD_<FIELD>`` in the environment). The
reasons list says what rejected the configuration, or, for ``PAPER``, what kept it from
being a live candidate.

>>> confidence_and_stage(0.1, 0.6, {"sharpe_ratio": -5.48, "num_trades": 14},
...                      {"sharpe_ratio": -1.2, "num_trades": 5}, min_trades=10)[:2]
(0.0, 'REJECTED')
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from app.errors import InputError

__all__ = ["Thresholds", "confidence_and_stage"]


@dataclass(frozen=True)
class Thresholds:
    """Where the stage rules cut; the defaults are the module docstring's numbers."""

    reject_dsr_below: float = 0.5
    reject_evidence_below: float = 0.95
    reject_pbo_above: float = 0.5
    reject_wfe_below: float = 0.5
    reject_confidence_below: float = 0.05
    live_min_confidence: float = 0.6
    live_min_dsr: float = 0.95
    live_min_evidence: float = 0.99
    full_credit_trades_multiple: float = 3.0
    unchecked_factor: float = 0.5


def _probability(name: str, value) -> float:
    value = float(value)
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise InputError(f"{name} must be a probability in [0, 1], got {value}", field=name)
    return value


def _metric(metrics: dict, key: str) -> float:
    value = float(metrics.get(key, 0.0) or 0.0)
    return value if math.isfinite(value) else 0.0


def _clip01(x: float) -> float:
    return max(0.0, min(1.0, x))


def confidence_and_stage(dsr: float, pbo: float | None, is_metrics: dict, oos_metrics: dict | None,
                         min_trades: int, thresholds: Thresholds = Thresholds(),
                         lookahead=None, *, psr_oos: float | None = None,
                         evidence: float | None = None,
                         wfe: float | None = None) -> tuple[float, str, list[str]]:
    """``(confidence, stage, reasons)``; see the module docstring for the rules.

    ``dsr``, ``pbo`` and ``psr_oos`` are probabilities, or the ``DeflatedSharpe``,
    ``PBOResult`` and ``OutOfSample`` they come in. ``evidence`` defaults to the DSR
    (with a held-out record pass the combined value; ``app.validation.trust`` does).
    ``psr_oos`` defaults to 0.5 (no information) when ``oos_metrics`` come without it. ``lookahead`` is the result
    of ``check_lookahead``: None when it passed (or was not run), else the violation,
    whose message becomes a reason. ``wfe`` is the walk-forward efficiency.

    >>> confidence_and_stage(0.97, 0.1, {"sharpe_ratio": 2.0, "num_trades": 60},
    ...                      {"sharpe_ratio": 1.6, "num_trades": 20}, min_trades=20,
    ...                      psr_oos=0.98, evidence=0.995)
    (0.684432, 'LIVE_CANDIDATE', [])
    """
    t = thresholds
    dsr = _probability("dsr", getattr(dsr, "dsr", dsr))
    pbo = None if pbo is None else _probability("pbo", getattr(pbo, "pbo", pbo))
    is_sharpe = _metric(is_metrics, "sharpe_ratio")
    trades = int(_metric(is_metrics, "num_trades"))
    oos_sharpe = None if oos_metrics is None else _metric(oos_metrics, "sharpe_ratio")
    if oos_metrics is not None:
        psr_oos = 0.5 if psr_oos is None else _probability("psr_oos", getattr(psr_oos, "psr", psr_oos))
    else:
        psr_oos = None
    evidence = dsr if evidence is None else _probability("evidence", evidence)

    rejected: list[str] = []
    if lookahead is not None:
        rejected.append(f"lookahead check failed: {lookahead}")
    if trades < min_trades:
        rejected.append(f"the winner made {trades} trades, fewer than min_trades={min_trades}")
    if is_sharpe <= 0:
        rejected.append(f"in-sample Sharpe {is_sharpe:.2f} is not positive")
    if oos_sharpe is not None and oos_sharpe <= 0:
        rejected.append(f"out-of-sample Sharpe {oos_sharpe:.2f} is not positive")
    if dsr < t.reject_dsr_below:
        rejected.append(f"deflated Sharpe ratio {dsr:.2f} is below {t.reject_dsr_below:.2f}: "
                        "the Sharpe ratio is more likely luck among the trials than skill")
    if evidence < t.reject_evidence_below:
        rejected.append(
            (f"evidence {evidence:.2f} is below {t.reject_evidence_below:.2f}: in and out of "
             "sample together the Sharpe ratio is not shown above 0")
            if oos_sharpe is not None else
            (f"deflated Sharpe ratio {dsr:.2f} is below {t.reject_evidence_below:.2f} with no "
             "out-of-sample record to confirm it"))
    if pbo is not None and pbo > t.reject_pbo_above and oos_sharpe is None:
        rejected.append(f"probability of backtest overfitting {pbo:.2f} is above "
                        f"{t.reject_pbo_above:.2f} with no out-of-sample record to confirm the choice")
    if wfe is not None and not wfe >= t.reject_wfe_below:
        rejected.append(f"walk-forward efficiency {wfe:.2f} is below {t.reject_wfe_below:.2f}: "
                        "the test windows earned less than half of what training promised")

    if oos_sharpe is None:
        oos_part = t.unchecked_factor
    else:
        oos_part = psr_oos * (_clip01(oos_sharpe / is_sharpe) if is_sharpe > 0 else 0.0)
    pbo_part = t.unchecked_factor if pbo is None else 1.0 - pbo
    if min_trades > 0:
        trades_part = _clip01(trades / (t.full_credit_trades_multiple * min_trades))
    else:
        trades_part = 1.0
    confidence = round(dsr * oos_part * pbo_part * trades_part, 6)
    if not rejected and confidence < t.reject_confidence_below:
        rejected.append(f"confidence {confidence:.3f} is below {t.reject_confidence_below:.2f}")
    if rejected:
        return 0.0, "REJECTED", rejected

    held_back: list[str] = []
    if oos_sharpe is None:
        held_back.append("no out-of-sample check")
    if pbo is None:
        held_back.append("probability of backtest overfitting not computed")
    elif pbo > t.reject_pbo_above:
        held_back.append(f"probability of backtest overfitting {pbo:.2f} is above "
                         f"{t.reject_pbo_above:.2f}: the pick is no better than the family's median")
    if dsr < t.live_min_dsr:
        held_back.append(f"deflated Sharpe ratio {dsr:.2f} is below {t.live_min_dsr:.2f}")
    if evidence < t.live_min_evidence:
        held_back.append(f"evidence {evidence:.3f} is below {t.live_min_evidence:.2f}")
    if confidence < t.live_min_confidence:
        held_back.append(f"confidence {confidence:.2f} is below {t.live_min_confidence:.2f}")
    return confidence, ("PAPER" if held_back else "LIVE_CANDIDATE"), held_back
