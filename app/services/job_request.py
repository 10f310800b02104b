"""A training request, parsed and checked before anything is queued.

The old system's body keeps working unchanged::

    {"strategy": "LIQUIDITY_SWEEP", "symbol": "BTC/USDT", "exchange": "binanceus",
     "timeframe": "5m", "optimizer": "random", "lookback_days": 30, "n_iterations": 10,
     "run_validation": false}

Every mistake raises ``InputError`` naming the field: 400 for a malformed body, 422
(``Unprocessable``) for a well-formed one Trad cannot run (unknown strategy, too many
trials, a grid larger than asked).
"""
from __future__ import annotations

import math
import secrets
from dataclasses import asdict, dataclass, field, replace

from app.backtest.candles import TIMEFRAMES
from app.errors import InputError, did_you_mean
from app.optimize.objectives import OBJECTIVES
from app.optimize.rounds import PARTED_OPTIMIZERS, SEQUENTIAL_OPTIMIZERS
from app.optimize.space import SearchSpace, build_space
from app.strategies.registry import get_strategy

__all__ = ["Unprocessable", "TrainingRequest", "parse_request", "OPTIMIZERS"]

OPTIMIZERS = ("grid", "random", *SEQUENTIAL_OPTIMIZERS)
DEFAULT_TIMEOUT_S = 6 * 3600.0
DEFAULT_BATCH = {"bayesian": 32, "cmaes": 16, "genetic": 32}


class Unprocessable(InputError):
    """Well-formed, but Trad cannot run it as asked (HTTP 422)."""

    code = "unprocessable"
    status = 422


@dataclass(frozen=True)
class TrainingRequest:
    strategy: str
    symbol: str
    exchange: str
    timeframe: str
    optimizer: str = "random"
    n_iterations: int = 100
    lookback_days: float | None = 30.0
    start: int | None = None
    end: int | None = None
    objective: str = "sharpe_ratio"
    min_trades: int = 10
    fee: float = 0.001
    slippage_bps: float = 0.0
    seed: int = 0
    priority: int = 5
    timeout_s: float = DEFAULT_TIMEOUT_S
    params: dict = field(default_factory=dict)
    search_space: dict = field(default_factory=dict)
    batch_size: int | None = None
    run_validation: bool = False
    validation: dict | None = None
    # Workers that share each round's asks (bayesian only; see app.optimize.rounds). Set
    # at submit (TRAD_SAMPLER_PARTS by default) and kept, so a job is its request's function.
    sampler_parts: int | None = None
    # Annualise with this many bars a year instead of the series' own (measured from its
    # timestamps, or stored with it); see app.validation.calendars.
    bars_per_year: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    def space(self) -> SearchSpace:
        return build_space(get_strategy(self.strategy), self.params, self.search_space)

    @property
    def rounds_batch(self) -> int:
        return self.batch_size or DEFAULT_BATCH.get(self.optimizer, self.n_iterations)

    @property
    def parts(self) -> int:
        """Parts each round is asked in; 1 asks it whole, in the round's callback."""
        return self.sampler_parts or 1


_FIELDS = {f for f in TrainingRequest.__dataclass_fields__}


def _get(body: dict, key: str, kind, default=None, *, required=False):
    if key not in body or body[key] is None:
        if required:
            raise InputError(f"{key} is required", field=key)
        return default
    value = body[key]
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                isinstance(value, float) and not value.is_integer()):
            raise InputError(f"{key} must be an integer, got {value!r}", field=key)
        return int(value)
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise InputError(f"{key} must be a number, got {value!r}", field=key)
        return float(value)
    if kind is bool:
        if not isinstance(value, bool):
            raise InputError(f"{key} must be true or false, got {value!r}", field=key)
        return value
    if kind is str:
        if not isinstance(value, str) or not value.strip():
            raise InputError(f"{key} must be a non-empty string", field=key)
        return value.strip()
    if kind is dict:
        if not isinstance(value, dict):
            raise InputError(f"{key} must be a JSON object", field=key)
        return value
    raise TypeError(kind)


MAX_SAMPLER_PARTS = 64


def _sampler_parts(body: dict, optimizer: str, batch: int, default: int) -> int | None:
    given = _get(body, "sampler_parts", int, None)
    if optimizer not in PARTED_OPTIMIZERS:
        if given not in (None, 1):
            raise InputError(f"sampler_parts applies to {', '.join(PARTED_OPTIMIZERS)} only, "
                             f"not {optimizer}", field="sampler_parts", hint="leave it out")
        return None
    if given is None:
        return max(1, min(default, batch))
    if not 1 <= given <= MAX_SAMPLER_PARTS:
        raise InputError(f"sampler_parts must be between 1 and {MAX_SAMPLER_PARTS}",
                         field="sampler_parts")
    if given > batch:
        raise InputError(f"sampler_parts={given} is more than the {batch} trials of a round",
                         field="sampler_parts", hint="raise batch_size or lower sampler_parts")
    return given


def parse_request(body, *, max_trials: int = 1_000_000, sampler_parts: int = 1) -> TrainingRequest:
    """Check every field of a posted body; returns a complete, runnable request.
    ``sampler_parts``: the server's default for a bayesian job that does not say."""
    from app.data.timeutil import parse_time
    from app.services.market_data import check_exchange_name, check_symbol

    if not isinstance(body, dict):
        raise InputError("the body must be a JSON object", field=None)
    for key in body:
        if key not in _FIELDS:
            raise InputError(f"unknown field {key!r}", field=key, hint=did_you_mean(key, _FIELDS))
    strategy_name = _get(body, "strategy", str, required=True)
    try:
        strategy = get_strategy(strategy_name)
    except InputError as exc:
        raise Unprocessable(exc.message, field="strategy", hint=exc.hint) from None
    exchange = check_exchange_name(_get(body, "exchange", str, "binanceus"))
    symbol = check_symbol(_get(body, "symbol", str, required=True))
    timeframe = _get(body, "timeframe", str, required=True)
    if timeframe not in TIMEFRAMES:
        raise InputError(f"unknown timeframe {timeframe!r}", field="timeframe",
                         hint=did_you_mean(timeframe, TIMEFRAMES))
    optimizer = _get(body, "optimizer", str, "random").lower()
    if optimizer not in OPTIMIZERS:
        raise InputError(f"unknown optimizer {optimizer!r}", field="optimizer",
                         hint=did_you_mean(optimizer, OPTIMIZERS))
    objective = _get(body, "objective", str, "sharpe_ratio")
    if objective not in OBJECTIVES:
        raise InputError(f"unknown objective {objective!r}", field="objective",
                         hint=did_you_mean(objective, OBJECTIVES))
    n = _get(body, "n_iterations", int, 100)
    if n < 1:
        raise InputError("n_iterations must be at least 1", field="n_iterations")
    if n > max_trials:
        raise Unprocessable(f"n_iterations={n} is above this server's cap of {max_trials}",
                            field="n_iterations", hint="ask for fewer trials or raise TRAD_MAX_TRIALS")
    start = parse_time(body["start"], "start") if body.get("start") is not None else None
    end = parse_time(body["end"], "end") if body.get("end") is not None else None
    lookback = _get(body, "lookback_days", float, None if start is not None else 30.0)
    if start is not None and "lookback_days" in body and body["lookback_days"] is not None:
        raise InputError("give start/end or lookback_days, not both", field="lookback_days")
    if lookback is not None and lookback <= 0:
        raise InputError("lookback_days must be positive", field="lookback_days")
    if start is not None and end is not None and end <= start:
        raise InputError("end must be after start", field="end")
    min_trades = _get(body, "min_trades", int, 10)
    if min_trades < 0:
        raise InputError("min_trades must be 0 or more", field="min_trades")
    fee = _get(body, "fee", float, 0.001)
    if not 0 <= fee < 0.1:
        raise InputError(f"fee={fee} is a fraction of notional in [0, 0.1)", field="fee",
                         hint="0.001 is 0.1 %")
    slippage = _get(body, "slippage_bps", float, 0.0)
    if not 0 <= slippage <= 1000:
        raise InputError("slippage_bps must be in [0, 1000]", field="slippage_bps")
    seed = _get(body, "seed", int, None)
    if seed is None:
        seed = secrets.randbelow(2**31)
    if not 0 <= seed < 2**63:
        raise InputError("seed must be a non-negative integer", field="seed")
    priority = _get(body, "priority", int, 5)
    if not 0 <= priority <= 9:
        raise InputError("priority must be between 0 and 9 (9 runs first)", field="priority")
    timeout = _get(body, "timeout_s", float, DEFAULT_TIMEOUT_S)
    if timeout <= 0:
        raise InputError("timeout_s must be positive", field="timeout_s")
    batch = _get(body, "batch_size", int, None)
    if batch is not None and not 1 <= batch <= 10_000:
        raise InputError("batch_size must be between 1 and 10000", field="batch_size")
    validation = _get(body, "validation", dict, None)
    bars_per_year = _get(body, "bars_per_year", float, None)
    if bars_per_year is not None and not 0 < bars_per_year <= 600_000:
        raise InputError(f"bars_per_year={bars_per_year:g} is not a number of bars a year",
                         field="bars_per_year",
                         hint="252 for daily stock bars, 6240 for hourly FX, 8760 for hourly "
                              "crypto; leave it out to measure it from the candles")
    request = TrainingRequest(
        strategy=strategy.name, symbol=symbol, exchange=exchange, timeframe=timeframe,
        optimizer=optimizer, n_iterations=n, lookback_days=lookback, start=start, end=end,
        objective=objective, min_trades=min_trades, fee=fee, slippage_bps=slippage, seed=seed,
        priority=priority, timeout_s=timeout, params=_get(body, "params", dict, {}),
        search_space=_get(body, "search_space", dict, {}), batch_size=batch,
        run_validation=_get(body, "run_validation", bool, False), validation=validation,
        bars_per_year=bars_per_year,
    )
    if optimizer in PARTED_OPTIMIZERS or "sampler_parts" in body:
        request = replace(request, sampler_parts=_sampler_parts(
            body, optimizer, request.rounds_batch, sampler_parts))
    from app.validation.split import parse_validation

    parse_validation(request.validation, request.run_validation)
    space = request.space()
    if optimizer == "grid":
        size = len(space.grid())
        if size == 0:
            raise Unprocessable("the grid has no feasible point", field="search_space")
        if size > n:
            raise Unprocessable(
                f"the grid has {size} feasible points, more than n_iterations={n}",
                field="n_iterations",
                hint=f"set n_iterations to {size}, narrow search_space (add a step or tighter "
                     "bounds), fix some params, or use optimizer random or bayesian")
    return request
