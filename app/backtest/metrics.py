"""Performance metrics of a backtest, annualised per timeframe; never NaN, never a crash.

Conventions (the same in the array functions here and in the compiled loop's running
statistics, which the tests hold to each other):

- Per-bar returns ``r[t] = equity[t] / equity[t-1] - 1`` with ``equity[-1]`` the initial
  capital, one per bar, flat bars included.
- ``sharpe_ratio = mean(r) / std(r, ddof=1) * sqrt(periods_per_year)``; 0 with fewer than
  two bars or zero variance.
- ``sortino_ratio = mean(r) / sqrt(mean(min(r, 0)^2)) * sqrt(periods_per_year)``
  (downside deviation against 0 over all bars); 0 when no bar lost.
- ``max_drawdown``: the largest fall from a running peak (initial capital included), as a
  positive fraction: 0.25 means equity fell 25 % below its best.
- ``cagr = (final / initial) ** (periods_per_year / bars) - 1``, computed in log space and
  capped at ``e**700`` so a short, lucky run cannot overflow; -1 when equity is gone.
- ``calmar_ratio = cagr / max_drawdown``; 0 without drawdown. A capped CAGR over a tiny
  drawdown would overflow to inf, so it stops at the largest finite float.
- ``profit_factor = gross profit / gross loss`` of closed trades, capped at
  ``PROFIT_FACTOR_CAP`` (also its value with profits and no losses); 0 without profits.
- ``win_rate``, ``avg_trade`` (mean trade pnl in quote units): 0 without trades.
- ``exposure``: share of bars that end with a position open.
"""
from __future__ import annotations

import math
import sys

import numpy as np

from app.backtest import _kernel as K

__all__ = [
    "METRIC_NAMES",
    "PROFIT_FACTOR_CAP",
    "sharpe_ratio",
    "sortino_ratio",
    "max_drawdown",
    "cagr",
    "profit_factor",
    "bar_returns",
    "compute_metrics",
    "metrics_from_stats",
    "metrics_from_stats_batch",
]

PROFIT_FACTOR_CAP = 100.0
_LOG_CAP = 700.0
_FLOAT_MAX = sys.float_info.max

METRIC_NAMES = (
    "net_profit",
    "total_return",
    "cagr",
    "sharpe_ratio",
    "sortino_ratio",
    "max_drawdown",
    "calmar_ratio",
    "win_rate",
    "profit_factor",
    "num_trades",
    "exposure",
    "avg_trade",
    "final_equity",
)


def bar_returns(equity: np.ndarray, initial_capital: float) -> np.ndarray:
    """Per-bar simple returns of an equity curve, the first against the initial capital.

    >>> bar_returns(np.array([110.0, 99.0]), 100.0).round(6).tolist()
    [0.1, -0.1]
    """
    prev = np.concatenate(([initial_capital], equity[:-1]))
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(prev > 0, equity / np.where(prev > 0, prev, 1.0) - 1.0, 0.0)
    return r


def sharpe_ratio(returns: np.ndarray, periods_per_year: float) -> float:
    """Annualised Sharpe ratio of per-bar returns (risk-free rate 0).

    >>> round(sharpe_ratio(np.array([0.01, -0.01, 0.02]), 365), 4)
    8.3381
    >>> sharpe_ratio(np.zeros(10), 365)
    0.0
    """
    r = np.asarray(returns, dtype=np.float64)
    if r.size < 2:
        return 0.0
    sd = float(np.std(r, ddof=1))
    if not sd > 0.0:
        return 0.0
    return float(np.mean(r)) / sd * math.sqrt(periods_per_year)


def sortino_ratio(returns: np.ndarray, periods_per_year: float) -> float:
    """Annualised Sortino ratio: mean over the downside deviation against 0.

    >>> round(sortino_ratio(np.array([0.01, -0.01, 0.02]), 365), 4)
    22.0605
    """
    r = np.asarray(returns, dtype=np.float64)
    if r.size == 0:
        return 0.0
    downside = math.sqrt(float(np.mean(np.minimum(r, 0.0) ** 2)))
    if not downside > 0.0:
        return 0.0
    return float(np.mean(r)) / downside * math.sqrt(periods_per_year)


def max_drawdown(equity: np.ndarray, initial_capital: float | None = None) -> float:
    """Largest fall from a running peak, as a positive fraction.

    >>> max_drawdown(np.array([100.0, 120.0, 90.0, 130.0]))
    0.25
    """
    e = np.asarray(equity, dtype=np.float64)
    if e.size == 0:
        return 0.0
    if initial_capital is not None:
        e = np.concatenate(([initial_capital], e))
    peak = np.maximum.accumulate(e)
    return float(np.max(1.0 - e / peak))


def cagr(final_equity: float, initial_capital: float, bars: int, periods_per_year: float) -> float:
    """Compound annual growth rate over ``bars`` bars.

    >>> round(cagr(12_100.0, 10_000.0, 730, 365), 6)
    0.1
    """
    if bars <= 0:
        return 0.0
    if final_equity <= 0.0:
        return -1.0
    exponent = math.log(final_equity / initial_capital) * periods_per_year / bars
    return math.expm1(min(exponent, _LOG_CAP))


def profit_factor(gross_profit: float, gross_loss: float) -> float:
    """Gross profit over gross loss, capped.

    >>> profit_factor(300.0, 100.0), profit_factor(50.0, 0.0), profit_factor(0.0, 0.0)
    (3.0, 100.0, 0.0)
    """
    if gross_profit <= 0.0:
        return 0.0
    if gross_loss <= 0.0:
        return PROFIT_FACTOR_CAP
    return min(gross_profit / gross_loss, PROFIT_FACTOR_CAP)


def _assemble(final, init, bars, ppy, sharpe, sortino, mdd, trades, wins, gp, gl, sum_pnl, exposed):
    # Plain Python numbers (not numpy scalars), so any JSON encoder takes the dict.
    final, init, sharpe, sortino, mdd = float(final), float(init), float(sharpe), float(sortino), float(mdd)
    wins, gp, gl, sum_pnl, exposed = float(wins), float(gp), float(gl), float(sum_pnl), float(exposed)
    growth = cagr(final, init, bars, ppy)
    return {
        "net_profit": final - init,
        "total_return": final / init - 1.0,
        "cagr": growth,
        "sharpe_ratio": sharpe,
        "sortino_ratio": sortino,
        "max_drawdown": mdd,
        "calmar_ratio": min(growth / mdd, _FLOAT_MAX) if mdd > 0.0 else 0.0,
        "win_rate": wins / trades if trades else 0.0,
        "profit_factor": profit_factor(gp, gl),
        "num_trades": int(trades),
        "exposure": exposed / bars if bars else 0.0,
        "avg_trade": sum_pnl / trades if trades else 0.0,
        "final_equity": final,
    }


def compute_metrics(equity: np.ndarray, trade_pnl: np.ndarray, exposed_bars: int,
                    initial_capital: float, periods_per_year: float) -> dict:
    """All metrics from an equity curve and the closed trades' pnl (the array route)."""
    equity = np.asarray(equity, dtype=np.float64)
    pnl = np.asarray(trade_pnl, dtype=np.float64)
    bars = int(equity.size)
    if bars == 0:
        return _assemble(initial_capital, initial_capital, 0, periods_per_year, 0.0, 0.0, 0.0,
                         0, 0, 0.0, 0.0, 0.0, 0)
    r = bar_returns(equity, initial_capital)
    return _assemble(
        float(equity[-1]), initial_capital, bars, periods_per_year,
        sharpe_ratio(r, periods_per_year), sortino_ratio(r, periods_per_year),
        max_drawdown(equity, initial_capital),
        pnl.size, int(np.sum(pnl > 0)), float(np.sum(pnl[pnl > 0])), float(-np.sum(pnl[pnl < 0])),
        float(np.sum(pnl)), exposed_bars,
    )


def metrics_from_stats(stats: np.ndarray, initial_capital: float, periods_per_year: float) -> dict:
    """All metrics from the compiled loop's running statistics (the fast route)."""
    bars = int(stats[K.S_BARS])
    if bars == 0:
        return compute_metrics(np.empty(0), np.empty(0), 0, initial_capital, periods_per_year)
    mean = stats[K.S_MEAN]
    sharpe = 0.0
    if bars >= 2:
        var = stats[K.S_M2] / (bars - 1)
        if var > 0.0:
            sharpe = mean / math.sqrt(var) * math.sqrt(periods_per_year)
    downside = math.sqrt(stats[K.S_DOWN_SQ] / bars)
    sortino = mean / downside * math.sqrt(periods_per_year) if downside > 0.0 else 0.0
    return _assemble(
        float(stats[K.S_FINAL_EQUITY]), initial_capital, bars, periods_per_year, sharpe, sortino,
        float(stats[K.S_MAX_DD]), int(stats[K.S_TRADES]), stats[K.S_WINS],
        stats[K.S_GROSS_PROFIT], stats[K.S_GROSS_LOSS], stats[K.S_SUM_PNL], stats[K.S_EXPOSED],
    )


# Below this many trials numpy's ~1 us a call over the batch costs more than Python a row.
_VECTOR_ROWS = 64


def metrics_from_stats_batch(stats: np.ndarray, init: np.ndarray, ppy: np.ndarray) -> list[dict]:
    """The metrics dict of each row of ``stats`` (a trial's running statistics), with its
    initial capital and periods per year, by ``metrics_from_stats``'s rules.

    A large batch takes them over all rows at once: each number is the same IEEE
    operation in the same order as there, so the same float (the tests hold the two
    routes equal); the CAGR goes row by row through ``cagr``, since numpy's log differs
    from the C library's in the last bit."""
    bars = stats[:, K.S_BARS]
    if len(stats) < _VECTOR_ROWS or not (bars > 0).all():
        # A row of Python floats reads as the array does (the same floats), and faster.
        return [metrics_from_stats(row, i, p)
                for row, i, p in zip(stats.tolist(), init.tolist(), ppy.tolist())]
    final, mean, mdd = stats[:, K.S_FINAL_EQUITY], stats[:, K.S_MEAN], stats[:, K.S_MAX_DD]
    trades, gp, gl = stats[:, K.S_TRADES], stats[:, K.S_GROSS_PROFIT], stats[:, K.S_GROSS_LOSS]
    root_year = np.sqrt(ppy)
    growth = np.array(list(map(cagr, final.tolist(), init.tolist(), bars.astype(np.int64).tolist(),
                               ppy.tolist())))
    # np.where computes both sides: the side a row does not take may divide by zero.
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        var = stats[:, K.S_M2] / (bars - 1.0)
        downside = np.sqrt(stats[:, K.S_DOWN_SQ] / bars)
        columns = (
            final - init,
            final / init - 1.0,
            growth,
            np.where((bars >= 2.0) & (var > 0.0), mean / np.sqrt(var) * root_year, 0.0),
            np.where(downside > 0.0, mean / downside * root_year, 0.0),
            mdd,
            np.where(mdd > 0.0, np.minimum(growth / mdd, sys.float_info.max), 0.0),
            np.where(trades > 0.0, stats[:, K.S_WINS] / trades, 0.0),
            np.where(gp <= 0.0, 0.0, np.where(gl <= 0.0, PROFIT_FACTOR_CAP,
                                              np.minimum(gp / gl, PROFIT_FACTOR_CAP))),
            trades.astype(np.int64),
            stats[:, K.S_EXPOSED] / bars,
            np.where(trades > 0.0, stats[:, K.S_SUM_PNL] / trades, 0.0),
            final,
        )
    # Plain Python numbers (not numpy scalars), so any JSON encoder takes the dicts.
    return list(map(_metrics_dict, *(c.tolist() for c in columns)))


def _metrics_dict(net_profit, total_return, growth, sharpe, sortino, mdd, calmar, win_rate,
                  pf, trades, exposure, avg_trade, final) -> dict:
    # A dict display, in METRIC_NAMES' order: twice as fast as dict(zip(...)) a trial.
    return {"net_profit": net_profit, "total_return": total_return, "cagr": growth,
            "sharpe_ratio": sharpe, "sortino_ratio": sortino, "max_drawdown": mdd,
            "calmar_ratio": calmar, "win_rate": win_rate, "profit_factor": pf,
            "num_trades": trades, "exposure": exposure, "avg_trade": avg_trade,
            "final_equity": final}
