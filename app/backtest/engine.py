"""The backtest engine: target positions -> fills at the next open -> costs -> equity.

The rules, in the order the compiled loop applies them to bar ``t``:

1. **Fill at the next open, never earlier.** ``target[t-1]``, which a strategy computed
   from data up to bar ``t-1``'s close, is traded at bar ``t``'s open. ``target[n-1]`` is
   never traded. No bar's high, low or close is known when its trade is sized, so there
   is no lookahead by construction.
2. **Sizing.** A target is a signed fraction of equity: +1 all in long, -1 all in short,
   0.5 half, 0 flat; NaN counts as flat. The engine trades only when the target changes
   (a constant target is not rebalanced every bar, which would pay fees every bar). At the
   fill, with equity ``E`` marked at the open and ``p`` the fill price after slippage,
   the position becomes ``target * E / (p * (1 + fee))`` units, so a buy from cash with
   target 1 spends exactly the equity, fees included.
3. **Costs.** Every fill pays ``fee`` times its notional. Slippage moves the fill price
   against the trader by ``slippage_bps`` basis points: buys at ``p * (1 + s)``, sells at
   ``p * (1 - s)``.
4. **Stops** (optional), set when a trade opens, from its fill price: a fraction of the
   entry price (``stop_loss=0.02`` is 2 % below a long's entry) or a multiple of the ATR
   known at the signal bar's close. They are checked from the entry bar on against the
   bar's low and high. A gap through the level fills at the open, the worse price for a
   stop and the better for a take-profit. **A bar that touches both the stop and the
   take-profit takes the stop**: the bar does not tell which came first, and we assume
   the worse. After a stop the engine stays flat until the target changes.
5. **Mark** to the close. A position still open at the last bar is closed at its close
   (fee and slippage paid) and counted as a trade. An account whose equity falls to zero
   or below at a close is closed out there and trades no more.

A trade runs from the fill that opens a position to the fill that brings it back to
flat or across zero (a flip closes one trade and opens another). Its ``pnl`` is the net
cash it moved, fees included; its prices are the volume-weighted fills in and out.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import numpy as np

from app.backtest import _kernel as K
from app.backtest.candles import Candles, periods_per_year
from app.backtest.indicators import atr as _atr
from app.backtest.metrics import (
    compute_metrics,
    metrics_from_stats,
    metrics_from_stats_batch,
)
from app.errors import InputError

__all__ = ["BacktestConfig", "Trade", "BacktestResult", "backtest", "backtest_window", "evaluate",
           "evaluate_batch", "equity_returns", "as_target"]

_NO_ATR = np.empty(0)
_NO_ATRS = np.empty((0, 0))
_EXIT_REASONS = {
    K.EXIT_SIGNAL: "signal",
    K.EXIT_STOP: "stop_loss",
    K.EXIT_TAKE_PROFIT: "take_profit",
    K.EXIT_END: "end",
    K.EXIT_LIQUIDATION: "liquidation",
}


def _optional_positive(name: str, value) -> float:
    if value is None:
        return 0.0
    value = float(value)
    if not (math.isfinite(value) and value > 0.0):
        raise InputError(f"{name} must be a positive number, got {value}", field=name)
    return value


@dataclass(frozen=True)
class BacktestConfig:
    """How trades are executed and scored. Checked once when built, so every trial that
    shares a config pays nothing for the checks."""

    fee: float = 0.001
    slippage_bps: float = 0.0
    initial_capital: float = 10_000.0
    stop_loss: float | None = None
    take_profit: float | None = None
    stop_loss_atr: float | None = None
    take_profit_atr: float | None = None
    atr_period: int = 14
    periods_per_year: float = 365.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.fee) and 0.0 <= self.fee < 1.0):
            raise InputError(f"fee must be a fraction in [0, 1), got {self.fee}", field="fee",
                             hint="0.001 is 0.1 % of notional per fill")
        if not (math.isfinite(self.slippage_bps) and 0.0 <= self.slippage_bps < 10_000.0):
            raise InputError(f"slippage_bps must be in [0, 10000), got {self.slippage_bps}",
                             field="slippage_bps")
        if not (math.isfinite(self.initial_capital) and self.initial_capital > 0.0):
            raise InputError("initial_capital must be positive", field="initial_capital")
        if not (math.isfinite(self.periods_per_year) and self.periods_per_year > 0.0):
            raise InputError("periods_per_year must be positive", field="periods_per_year")
        if int(self.atr_period) != self.atr_period or self.atr_period < 1:
            raise InputError("atr_period must be a positive integer", field="atr_period")
        for name in ("stop_loss", "take_profit", "stop_loss_atr", "take_profit_atr"):
            _optional_positive(name, getattr(self, name))
        if self.stop_loss is not None and self.stop_loss >= 1.0:
            raise InputError("stop_loss is a fraction of the entry price below 1",
                             field="stop_loss", hint="0.02 stops out 2 % from the entry")
        if self.stop_loss is not None and self.stop_loss_atr is not None:
            raise InputError("give stop_loss or stop_loss_atr, not both", field="stop_loss_atr")
        if self.take_profit is not None and self.take_profit_atr is not None:
            raise InputError("give take_profit or take_profit_atr, not both",
                             field="take_profit_atr")

    @classmethod
    def for_timeframe(cls, timeframe: str, **kwargs) -> BacktestConfig:
        """A config annualised for ``timeframe`` (24/7 markets) unless told otherwise."""
        kwargs.setdefault("periods_per_year", periods_per_year(timeframe))
        return cls(**kwargs)

    def replace(self, **changes) -> BacktestConfig:
        return replace(self, **changes)

    @property
    def uses_atr(self) -> bool:
        return self.stop_loss_atr is not None or self.take_profit_atr is not None


@dataclass(frozen=True)
class Trade:
    """One round trip. Times are bar open times in epoch ms; ``side`` is +1 or -1."""

    entry_time: int
    exit_time: int
    side: int
    entry_price: float
    exit_price: float
    pnl: float
    fees: float
    size: float
    exit_reason: str

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, eq=False)
class BacktestResult:
    """Everything one backtest produced: per-bar arrays, the trades and the metrics."""

    equity: np.ndarray
    returns: np.ndarray
    position: np.ndarray
    trades: tuple[Trade, ...]
    metrics: dict

    def to_dict(self) -> dict:
        return {"metrics": dict(self.metrics), "trades": [t.to_dict() for t in self.trades]}


def as_target(candles: Candles, target) -> np.ndarray:
    """``target`` as the engine reads it: float64, contiguous, one value per bar (the same
    array when it already is); ``InputError`` when its shape is not the candles'."""
    target = np.ascontiguousarray(target, dtype=np.float64)
    if target.shape != candles.close.shape:
        raise InputError(f"target has shape {target.shape}, candles have {len(candles)} bars")
    return target


def _prepare(candles: Candles, target, config: BacktestConfig, atr):
    target = as_target(candles, target)
    if config.uses_atr:
        atr = _atr(candles.high, candles.low, candles.close, int(config.atr_period)) if atr is None else atr
    else:
        atr = _NO_ATR
    return target, atr


def _settings(config: BacktestConfig) -> tuple:
    """The kernel's numbers for ``config``, in the order of its ``C_*`` columns."""
    return (config.fee, config.slippage_bps * 1e-4, config.initial_capital,
            config.stop_loss or 0.0, config.take_profit or 0.0,
            config.stop_loss_atr or 0.0, config.take_profit_atr or 0.0)


def _run(candles, target, config, atr, record, equity, units, trades):
    stats = np.empty(K.N_STATS)
    K.simulate(candles.open, candles.high, candles.low, candles.close, target, *_settings(config),
               atr, record, equity, units, trades, stats)
    return stats


def _check_finite(target: np.ndarray) -> None:
    # The full routes check; evaluate, the per-trial hot path, does not.
    if np.isinf(target).any():
        raise InputError("target positions must be finite (NaN means flat)", field="target")


_NO_RECORD = (np.empty(0), np.empty(0), np.empty((1, K.N_TRADE_COLS)))


def evaluate(candles: Candles, target, config: BacktestConfig = BacktestConfig(), atr=None) -> dict:
    """Metrics only: the fast route a trial takes (no equity curve, no trade list).

    >>> import numpy as np
    >>> from app.backtest.candles import Candles
    >>> px = np.array([100.0, 101.0, 103.0, 102.0])
    >>> c = Candles(np.arange(4) * 86_400_000, px, px, px, px, np.ones(4))
    >>> m = evaluate(c, [1, 1, 1, 1], BacktestConfig(fee=0.0))
    >>> m["num_trades"], round(m["total_return"], 6)
    (1, 0.009901)
    """
    target, atr = _prepare(candles, target, config, atr)
    stats = _run(candles, target, config, atr, False, *_NO_RECORD)
    return metrics_from_stats(stats, config.initial_capital, config.periods_per_year)


def evaluate_batch(candles: Candles, targets, configs=BacktestConfig(), atrs=None) -> list[dict]:
    """``evaluate`` of many trials over the same candles in one compiled call: the same
    metrics dicts, the same floats, as ``[evaluate(candles, t, c, a) for ...]``.

    ``targets`` is a 2-D array (a row per trial) or a sequence of targets; ``configs``
    one config for every trial or one per trial; ``atrs`` None or one per trial (each
    None or an ATR array, as ``evaluate``'s ``atr``). A sequence is copied into one block
    (trials x bars), except a single trial, which ``evaluate`` runs on its own array: pass
    blocks the size you can afford (``app.strategies.runner.score_batch`` cuts them).

    >>> import numpy as np
    >>> from app.backtest.candles import Candles
    >>> px = np.array([100.0, 101.0, 103.0, 102.0])
    >>> c = Candles(np.arange(4) * 86_400_000, px, px, px, px, np.ones(4))
    >>> cfg = BacktestConfig(fee=0.0)
    >>> ms = evaluate_batch(c, [[1, 1, 1, 1], [0, 0, 0, 0]], cfg)
    >>> [m["num_trades"] for m in ms], ms[0] == evaluate(c, [1, 1, 1, 1], cfg)
    ([1, 0], True)
    """
    block = _block(candles, targets)
    k = block.shape[0]
    shared = isinstance(configs, BacktestConfig)
    per_trial = [configs] * k if shared else list(configs)
    atrs = None if atrs is None else list(atrs)
    if len(per_trial) != k or (atrs is not None and len(atrs) != k):
        raise InputError(f"{k} targets need as many configs and ATRs, got {len(per_trial)} "
                         f"and {k if atrs is None else len(atrs)}")
    if k == 0:
        return []
    if k == 1:  # evaluate itself, spared the batch's set-up (a long series runs so)
        return [evaluate(candles, block[0], per_trial[0], None if atrs is None else atrs[0])]
    settings = np.empty((k, K.N_SETTINGS))
    if shared:  # the common case, spared a pass over the trials
        settings[:] = _settings(configs)
        ppy = np.full(k, float(configs.periods_per_year))
    else:
        known: dict = {}  # trials share a few config objects (overrides per parameter set)
        settings[:] = [known.get(id(c)) or known.setdefault(id(c), _settings(c))
                       for c in per_trial]
        ppy = np.array([c.periods_per_year for c in per_trial], dtype=np.float64)
    if atrs is None and shared and not configs.uses_atr:
        table, atr_row = _NO_ATRS, np.full(k, -1, dtype=np.int64)
    else:
        table, atr_row = _atr_rows(candles, per_trial, [None] * k if atrs is None else atrs)
    stats = np.empty((k, K.N_STATS))
    K.simulate_batch(candles.open, candles.high, candles.low, candles.close, block, settings,
                     table, atr_row, stats)
    return metrics_from_stats_batch(stats, settings[:, K.C_INIT_CASH], ppy)


def _block(candles: Candles, targets) -> np.ndarray:
    """The targets as one C-contiguous float64 (trials x bars) array; ``as_target``'s
    error for a trial of the wrong shape."""
    n = len(candles)
    if isinstance(targets, np.ndarray) and targets.ndim == 2:
        block = np.ascontiguousarray(targets, dtype=np.float64)
        if block.shape[1] != n:
            raise InputError(f"targets have {block.shape[1]} bars, candles have {n}")
        return block
    rows = [as_target(candles, t) for t in targets]
    if len(rows) == 1:
        return rows[0][None]  # a view: one long series is not copied
    return np.array(rows) if rows else np.empty((0, n))


def _atr_rows(candles: Candles, configs: list, atrs: list):
    """The distinct ATR arrays of a batch as a matrix, and each trial's row in it (-1:
    none), chosen as ``_prepare`` chooses a trial's."""
    n = len(candles)
    computed, index, distinct = {}, {}, []
    atr_row = np.full(len(configs), -1, dtype=np.int64)
    for j, (c, a) in enumerate(zip(configs, atrs)):
        if not c.uses_atr:
            continue
        if a is None:
            a = computed.get(c.atr_period)
            if a is None:
                a = computed[c.atr_period] = _atr(candles.high, candles.low, candles.close,
                                                  int(c.atr_period))
        a = np.ascontiguousarray(a, dtype=np.float64)
        if a.shape != (n,):
            continue  # the loop reads an ATR of another length as none (no ATR stops)
        atr_row[j] = index.get(id(a), -1)
        if atr_row[j] < 0:
            atr_row[j] = index[id(a)] = len(distinct)
            distinct.append(a)
    if len(distinct) == 1:
        return distinct[0][None], atr_row  # a view, as for one target
    return (np.stack(distinct) if distinct else np.empty((0, n))), atr_row


def equity_returns(candles: Candles, target, config: BacktestConfig = BacktestConfig(),
                   atr=None) -> np.ndarray:
    """Per-bar returns of the equity curve only (what the overfitting statistics need);
    the same numbers as ``backtest(...).returns`` without the trades and metrics."""
    from app.backtest.metrics import bar_returns

    target, atr = _prepare(candles, target, config, atr)
    _check_finite(target)
    n = len(candles)
    equity = np.empty(n)
    _run(candles, target, config, atr, True, equity, np.empty(n), np.empty((n + 1, K.N_TRADE_COLS)))
    return bar_returns(equity, config.initial_capital)


def backtest(candles: Candles, target, config: BacktestConfig = BacktestConfig(), atr=None) -> BacktestResult:
    """The full backtest: equity curve, returns, position, trades and metrics.

    ``target[t]`` is the signed fraction of equity to hold from bar ``t+1``'s open (see
    the module docstring for every rule). ``atr`` may pass a precomputed ATR for
    ATR-multiple stops; otherwise it is computed with ``config.atr_period``.
    """
    target, atr = _prepare(candles, target, config, atr)
    _check_finite(target)
    n = len(candles)
    equity = np.empty(n)
    units = np.empty(n)
    rows = np.empty((n + 1, K.N_TRADE_COLS))
    stats = _run(candles, target, config, atr, True, equity, units, rows)
    k = int(stats[K.S_TRADES])
    ts = candles.ts
    trades = tuple(
        Trade(
            entry_time=int(ts[int(r[K.T_ENTRY_IDX])]),
            exit_time=int(ts[int(r[K.T_EXIT_IDX])]),
            side=int(r[K.T_SIDE]),
            entry_price=float(r[K.T_ENTRY_PRICE]),
            exit_price=float(r[K.T_EXIT_PRICE]),
            pnl=float(r[K.T_PNL]),
            fees=float(r[K.T_FEES]),
            size=float(r[K.T_UNITS]),
            exit_reason=_EXIT_REASONS[float(r[K.T_EXIT_REASON])],
        )
        for r in rows[:k]
    )
    from app.backtest.metrics import bar_returns

    returns = bar_returns(equity, config.initial_capital)
    metrics = compute_metrics(equity, rows[:k, K.T_PNL], int(stats[K.S_EXPOSED]),
                              config.initial_capital, config.periods_per_year)
    return BacktestResult(equity=equity, returns=returns, position=units, trades=trades,
                          metrics=metrics)


def backtest_window(candles: Candles, target, start: int, config: BacktestConfig = BacktestConfig(),
                    atr=None) -> BacktestResult:
    """The backtest of bars ``[start, n)`` of ``candles``, with ``target`` (and ``atr``)
    computed over every bar, so that indicators are warm when the window opens.

    The account starts flat with the initial capital at bar ``start``'s open, where it
    fills ``target[start - 1]`` (decided at the close before the window, as it would be
    live); equity, returns, positions, trades and metrics cover the window's bars only.
    A holdout or a walk-forward test window is this: a slow moving average of 107 bars
    trades from the window's first bar instead of sitting flat for 106.

    >>> import numpy as np
    >>> from app.backtest.candles import Candles
    >>> px = np.array([100.0, 101.0, 103.0, 102.0, 104.0])
    >>> c = Candles(np.arange(5) * 86_400_000, px, px, px, px, np.ones(5))
    >>> r = backtest_window(c, [0, 1, 1, 1, 1], 2, BacktestConfig(fee=0.0))
    >>> len(r.equity), r.trades[0].entry_price, round(r.metrics["total_return"], 6)
    (3, 103.0, 0.009709)
    """
    start = int(start)
    if not 0 <= start < len(candles):
        raise InputError(f"window start {start} is outside the {len(candles)} bars", field="start")
    target = as_target(candles, target)
    if start == 0:
        return backtest(candles, target, config, atr)
    if config.uses_atr and atr is None:
        atr = _atr(candles.high, candles.low, candles.close, int(config.atr_period))
    whole = backtest(candles.slice(start - 1), target[start - 1:], config,
                     atr=None if atr is None else np.asarray(atr)[start - 1:])
    # Bar start - 1 only decided the first fill: flat, at the initial capital. Drop it.
    equity, position = whole.equity[1:], whole.position[1:]
    pnl = np.array([t.pnl for t in whole.trades], dtype=np.float64)
    metrics = compute_metrics(equity, pnl, int(np.count_nonzero(position)),
                              config.initial_capital, config.periods_per_year)
    return BacktestResult(equity=equity, returns=whole.returns[1:], position=position,
                          trades=whole.trades, metrics=metrics)
