"""How far to trust a trained configuration: a confidence in [0, 1] and a lifecycle stage.

The inputs are the statistics of this package: the deflated Sharpe ratio ``DSR`` of the
chosen trial (a probability, ``sharpe_stats``), the probability of backtest overfitting
``PBO`` of the search (``pbo``), the in-sample and out-of-sample metrics of the chosen
configuration (``app.backtest.metrics``: ``sharpe_ratio``, ``num_trades``) and the
lookahead check (``lookahead``).

The formula::

    confidence = DSR
               * clip(OOS Sharpe / IS Sharpe, 0, 1)          # how much survived out of sample
               * (1 - PBO)                                   # how unlikely the choice is a fluke
               * min(1, trades / (3 * min_trades))           # enough trades to count

A statistic that was not computed (no holdout: ``oos_metrics`` is None; too few trials
for CSCV: ``pbo`` is None) contributes a factor of 0.5 instead: an unchecked result gets
at most half the credit, and cannot be a live candidate.

The stage, in this order:

- ``REJECTED`` when any of: the lookahead check failed; fewer than ``min_trades`` trades
  (in sample, where the optimizer chose); in-sample Sharpe <= 0; out-of-sample Sharpe
  <= 0; ``DSR < 0.5`` (more likely luck than not); ``PBO > 0.5`` (the in-sample winner
  more often than not lands in the bottom half out of sample). A rejected configuration
  gets confidence 0.
- ``LIVE_CANDIDATE`` when ``confidence >= 0.6`` and ``DSR >= 0.95``, with both the
  out-of-sample check and PBO computed. Going live is still a person's decision.
- ``PAPER`` otherwise.

The thresholds are the fields of ``Thresholds``. The reasons list says what rejected the
configuration, or, for ``PAPER``, what kept it from being a live candidate.

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
    reject_pbo_above: float = 0.5
    live_min_confidence: float = 0.6
    live_min_dsr: float = 0.95
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
                         lookahead=None) -> tuple[float, str, list[str]]:
    """``(confidence, stage, reasons)``; see the module docstring for the rules.

    ``dsr`` and ``pbo`` are probabilities, or the ``DeflatedSharpe`` and ``PBOResult``
    they come in. ``lookahead`` is the result of ``check_lookahead``: None when it passed
    (or was not run), else the violation, whose message becomes a reason.

    >>> confidence_and_stage(0.97, 0.1, {"sharpe_ratio": 2.0, "num_trades": 60},
    ...                      {"sharpe_ratio": 1.6, "num_trades": 20}, min_trades=20)
    (0.6984, 'LIVE_CANDIDATE', [])
    """
    t = thresholds
    dsr = _probability("dsr", getattr(dsr, "dsr", dsr))
    pbo = None if pbo is None else _probability("pbo", getattr(pbo, "pbo", pbo))
    is_sharpe = _metric(is_metrics, "sharpe_ratio")
    trades = int(_metric(is_metrics, "num_trades"))
    oos_sharpe = None if oos_metrics is None else _metric(oos_metrics, "sharpe_ratio")

    rejected: list[str] = []
    if lookahead is not None:
        rejected.append(f"lookahead check failed: {lookahead}")
    if trades < min_trades:
        rejected.append(f"{trades} trades, fewer than min_trades={min_trades}")
    if is_sharpe <= 0:
        rejected.append(f"in-sample Sharpe {is_sharpe:.2f} is not positive")
    if oos_sharpe is not None and oos_sharpe <= 0:
        rejected.append(f"out-of-sample Sharpe {oos_sharpe:.2f} is not positive")
    if dsr < t.reject_dsr_below:
        rejected.append(f"deflated Sharpe ratio {dsr:.2f} is below {t.reject_dsr_below:.2f}: "
                        "the Sharpe ratio is more likely luck among the trials than skill")
    if pbo is not None and pbo > t.reject_pbo_above:
        rejected.append(f"probability of backtest overfitting {pbo:.2f} is above "
                        f"{t.reject_pbo_above:.2f}")
    if rejected:
        return 0.0, "REJECTED", rejected

    if oos_sharpe is None:
        oos_part = t.unchecked_factor
    else:
        oos_part = _clip01(oos_sharpe / is_sharpe)
    pbo_part = t.unchecked_factor if pbo is None else 1.0 - pbo
    if min_trades > 0:
        trades_part = _clip01(trades / (t.full_credit_trades_multiple * min_trades))
    else:
        trades_part = 1.0
    confidence = round(dsr * oos_part * pbo_part * trades_part, 6)

    held_back: list[str] = []
    if oos_sharpe is None:
        held_back.append("no out-of-sample check")
    if pbo is None:
        held_back.append("probability of backtest overfitting not computed")
    if dsr < t.live_min_dsr:
        held_back.append(f"deflated Sharpe ratio {dsr:.2f} is below {t.live_min_dsr:.2f}")
    if confidence < t.live_min_confidence:
        held_back.append(f"confidence {confidence:.2f} is below {t.live_min_confidence:.2f}")
    return confidence, ("PAPER" if held_back else "LIVE_CANDIDATE"), held_back
