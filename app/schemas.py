"""THE training request (pydantic v2): one model that checks a posted HTTP body, the
``trad optimize`` flags and a request read back from the database alike, and from which
the OpenAPI document's schema and the CLI's flags are generated.

The old system's body keeps working unchanged::

    {"strategy": "LIQUIDITY_SWEEP", "symbol": "BTC/USDT", "exchange": "binanceus",
     "timeframe": "5m", "optimizer": "random", "lookback_days": 30, "n_iterations": 10,
     "run_validation": false}

Every mistake is an ``InputError`` naming the field, with a "did you mean" hint where one
helps: 400 for a malformed body, 422 (``Unprocessable``) for a well-formed one Trad
cannot run (unknown strategy, more trials than this server takes, a grid larger than
asked). JSON types are taken as JSON means them: ``true`` is not a number, ``"5"`` is not
an integer, 5.0 is.

``parse_request`` adds what depends on the server (its cap on trials, its default
``sampler_parts``) and draws a seed when none is given; ``stored_request`` reads back a
request that was checked when it was submitted.

>>> r = parse_request({"strategy": "sma_cross", "symbol": "btc/usdt", "timeframe": "1h",
...                    "seed": 3})
>>> r.strategy, r.symbol, r.exchange, r.optimizer, r.lookback_days
('SMA_CROSS', 'BTC/USDT', 'binanceus', 'random', 30.0)
"""
from __future__ import annotations

import json
import math
import re
import secrets
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from app.backtest.candles import TIMEFRAMES
from app.errors import InputError, did_you_mean, no_nul
from app.optimize.objectives import OBJECTIVES
from app.optimize.rounds import PARTED_OPTIMIZERS, SEQUENTIAL_OPTIMIZERS

__all__ = ["OPTIMIZERS", "TrainingRequest", "Unprocessable", "parse_request", "stored_request"]

OPTIMIZERS = ("grid", "random", *SEQUENTIAL_OPTIMIZERS)
DEFAULT_TIMEOUT_S = 6 * 3600.0
DEFAULT_BATCH = {"bayesian": 32, "cmaes": 16, "genetic": 32}
MAX_SAMPLER_PARTS = 64
MAX_TIMEOUT_S = 30 * 86_400.0


class Unprocessable(InputError):
    """Well-formed, but Trad cannot run it as asked (HTTP 422)."""

    code = "unprocessable"
    status = 422


# -- JSON values as JSON means them -----------------------------------------------------


def _integer(value, info):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (
            isinstance(value, float) and not value.is_integer()):
        raise InputError(f"{info.field_name} must be an integer, got {value!r}", field=info.field_name)
    return int(value)


def _number(value, info):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"{info.field_name} must be a number, got {value!r}", field=info.field_name)
    return float(value)


def _text(value, info):
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{info.field_name} must be a non-empty string", field=info.field_name)
    if "\x00" in value:
        raise InputError(f"{info.field_name} holds a NUL character", field=info.field_name)
    return value.strip()


def _flag(value, info):
    if not isinstance(value, bool):
        raise InputError(f"{info.field_name} must be true or false, got {value!r}",
                         field=info.field_name)
    return value


def _object(value, info):
    if not isinstance(value, dict):
        raise InputError(f"{info.field_name} must be a JSON object", field=info.field_name)
    return value


# Candle times Trad takes: from 1970 to 2200 (epoch ms).
_TIME_RANGE = (0, 7_258_118_400_000)
_SPACES: dict = {}   # TrainingRequest.space's, by strategy, fixed and narrowed parameters


def _time(value, info):
    from app.data.timeutil import iso, parse_time

    if isinstance(value, float) and not math.isfinite(value):
        raise InputError(f"{info.field_name} must be a date, got {value!r}", field=info.field_name)
    if isinstance(value, (int, float, str)) and not isinstance(value, bool):
        # A date written as one (ISO-8601) that Trad cannot use (year 0, the year 3000) is a
        # 422; text that is no date at all, or epoch ms outside the documented range, a 400.
        dated = isinstance(value, str) and re.match(r"^\s*\d{4}-\d{2}-\d{2}", value) is not None
        try:
            ms = parse_time(value, info.field_name)
        except InputError as exc:
            if dated:
                raise Unprocessable(exc.message, field=info.field_name, hint=exc.hint) from None
            raise
        if not _TIME_RANGE[0] <= ms < _TIME_RANGE[1]:
            raise (Unprocessable if dated else InputError)(
                f"{info.field_name} must fall between {iso(_TIME_RANGE[0])} and "
                f"{iso(_TIME_RANGE[1])}", field=info.field_name)
        return ms
    raise InputError(f"{info.field_name} must be a date (ISO-8601) or epoch ms, got {value!r}",
                     field=info.field_name)


Integer = Annotated[int, BeforeValidator(_integer)]
Number = Annotated[float, BeforeValidator(_number)]
Text = Annotated[str, BeforeValidator(_text)]
Flag = Annotated[bool, BeforeValidator(_flag)]
Object = Annotated[dict, BeforeValidator(_object)]
def _time_schema(schema: dict) -> None:
    """A time as the API takes it: epoch ms in range, or an ISO-8601 date or date-time."""
    schema.clear()
    schema.update({"anyOf": [
        {"type": "integer", "minimum": _TIME_RANGE[0], "maximum": _TIME_RANGE[1] - 1},
        {"type": "string", "format": "date"}, {"type": "string", "format": "date-time"}],
        "examples": ["2024-01-01"]})


Time = Annotated[int, BeforeValidator(_time), Field(json_schema_extra=_time_schema)]


def _validation_schema(schema: dict) -> None:
    """``validation`` as ``parse_validation`` takes it: one of the plans, or null."""
    from app.validation.split import VALIDATION_SCHEMAS

    schema["anyOf"] = [*VALIDATION_SCHEMAS, {"type": "null"}]


def _check(ok: bool, message: str, field: str, hint: str | None = None, kind=InputError) -> None:
    if not ok:
        raise kind(message, field=field, hint=hint)


class TrainingRequest(BaseModel):
    """A training job as asked: what to train, on which market, how to search, how to judge."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="TrainingRequest")

    strategy: Text = Field(description="strategy name, e.g. LIQUIDITY_SWEEP (GET /api/v2/strategies)",
                           examples=["LIQUIDITY_SWEEP"],
                           json_schema_extra={"pattern": r"^[A-Za-z][A-Za-z0-9_]{0,63}$"})
    symbol: Text = Field(description="as the market names it: BTC/USDT, GOOG, EURUSD",
                         examples=["BTC/USDT"],
                         json_schema_extra={"pattern": r"^[A-Za-z0-9^][A-Za-z0-9_.:/=\-]{0,63}$"})
    exchange: Text = Field("binanceus", description="the label the candles are stored under",
                           json_schema_extra={"pattern": r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"})
    timeframe: Text = Field(description="bar length", json_schema_extra={"enum": list(TIMEFRAMES)})
    optimizer: Text = Field("random", json_schema_extra={"enum": list(OPTIMIZERS)},
                            description="grid, random, bayesian (TPE), cmaes or genetic (NSGA-II)")
    n_iterations: Integer = Field(100, description="number of trials",
                                  json_schema_extra={"minimum": 1})
    lookback_days: Number | None = Field(None, description="days of data before the newest "
                                         "stored candle (30 without start)",
                                         json_schema_extra={"exclusiveMinimum": 0, "maximum": 36_525})
    start: Time | None = Field(None, description="first candle (ISO date or epoch ms), instead "
                               "of lookback_days")
    end: Time | None = Field(None, description="end of the data, exclusive (ISO date or epoch ms)")
    objective: Text = Field("sharpe_ratio", json_schema_extra={"enum": list(OBJECTIVES)},
                            description="what the search maximises")
    min_trades: Integer = Field(10, description="fewest trades a valid trial makes",
                                json_schema_extra={"minimum": 0})
    fee: Number = Field(0.001, description="fee per fill, a fraction of notional (0.001 is 0.1 %)",
                        json_schema_extra={"minimum": 0, "exclusiveMaximum": 0.1})
    slippage_bps: Number = Field(0.0, description="slippage per fill in basis points",
                                 json_schema_extra={"minimum": 0, "maximum": 1000})
    seed: Integer | None = Field(None, description="the same seed gives the same result (drawn "
                                 "when left out)",
                                 json_schema_extra={"minimum": 0, "maximum": 2**63 - 1})
    priority: Integer = Field(5, description="0-9, 9 runs first",
                              json_schema_extra={"minimum": 0, "maximum": 9})
    timeout_s: Number = Field(DEFAULT_TIMEOUT_S, description="fail the job if not done by then",
                              json_schema_extra={"exclusiveMinimum": 0, "maximum": MAX_TIMEOUT_S})
    params: Object = Field(default_factory=dict, description="parameters fixed to values")
    search_space: Object = Field(default_factory=dict, description="narrowed bounds: "
                                 '{"fast": [5, 50]} or {"slow": {"low": 20, "high": 200, "step": 10}}')
    batch_size: Integer | None = Field(None, description="trials per round for bayesian, cmaes, "
                                       "genetic", json_schema_extra={"minimum": 1, "maximum": 10_000})
    run_validation: Flag = Field(False, description="hold out the latest 30 % (holdout)")
    validation: Object | None = Field(None, description='{"method": "holdout", "test_fraction": '
                                      '0.3} or {"method": "walk_forward", "folds": 5}',
                                      examples=[{"method": "holdout", "test_fraction": 0.3}],
                                      json_schema_extra=_validation_schema)
    sampler_parts: Integer | None = Field(None, description="bayesian: workers that share each "
                                          "round's asks (default TRAD_SAMPLER_PARTS)",
                                          json_schema_extra={"minimum": 1,
                                                             "maximum": MAX_SAMPLER_PARTS})
    bars_per_year: Number | None = Field(None, description="annualise with this many bars a year "
                                         "(default: the series' own, measured from its timestamps)",
                                         json_schema_extra={"exclusiveMinimum": 0, "maximum": 600_000})

    # -- the checks that need more than one field ------------------------------------------

    @model_validator(mode="after")
    def _checked(self, info) -> TrainingRequest:
        from app.data.labels import check_exchange_name, check_symbol
        from app.strategies.registry import get_strategy

        context = info.context or {}
        values: dict[str, Any] = {}
        for name in ("params", "search_space", "validation"):
            # JSON may hold NUL characters; no parameter name or value Trad stores does.
            no_nul(getattr(self, name), name, Unprocessable)
        try:
            values["strategy"] = get_strategy(self.strategy).name
        except InputError as exc:
            raise Unprocessable(exc.message, field="strategy", hint=exc.hint) from None
        values["exchange"] = check_exchange_name(self.exchange)
        values["symbol"] = check_symbol(self.symbol)
        _check(self.timeframe in TIMEFRAMES, f"unknown timeframe {self.timeframe!r}", "timeframe",
               did_you_mean(self.timeframe, TIMEFRAMES))
        optimizer = values["optimizer"] = self.optimizer.lower()
        _check(optimizer in OPTIMIZERS, f"unknown optimizer {self.optimizer!r}", "optimizer",
               did_you_mean(self.optimizer.lower(), OPTIMIZERS))
        _check(self.objective in OBJECTIVES, f"unknown objective {self.objective!r}", "objective",
               did_you_mean(self.objective, OBJECTIVES))
        _check(self.n_iterations >= 1, "n_iterations must be at least 1", "n_iterations")
        cap = context.get("max_trials")
        _check(cap is None or self.n_iterations <= cap,
               f"n_iterations={self.n_iterations} is above this server's cap of {cap}",
               "n_iterations", "ask for fewer trials or raise TRAD_MAX_TRIALS", Unprocessable)
        if self.start is not None:
            _check(self.lookback_days is None, "give start/end or lookback_days, not both",
                   "lookback_days", kind=Unprocessable)
        elif self.lookback_days is None:
            values["lookback_days"] = 30.0
        _check(self.lookback_days is None or 0 < self.lookback_days <= 36_525,
               "lookback_days must be positive and at most 36525 (a hundred years)", "lookback_days")
        _check(self.start is None or self.end is None or self.end > self.start,
               "end must be after start", "end", kind=Unprocessable)
        _check(self.min_trades >= 0, "min_trades must be 0 or more", "min_trades")
        _check(0 <= self.fee < 0.1, f"fee={self.fee} is a fraction of notional in [0, 0.1)", "fee",
               "0.001 is 0.1 %")
        _check(0 <= self.slippage_bps <= 1000, "slippage_bps must be in [0, 1000]", "slippage_bps")
        _check(self.seed is None or 0 <= self.seed < 2**63, "seed must be a non-negative integer",
               "seed")
        _check(0 <= self.priority <= 9, "priority must be between 0 and 9 (9 runs first)",
               "priority")
        _check(0 < self.timeout_s <= MAX_TIMEOUT_S, f"timeout_s must be positive and at most "
               f"{MAX_TIMEOUT_S:,.0f} (30 days)", "timeout_s")
        _check(self.batch_size is None or 1 <= self.batch_size <= 10_000,
               "batch_size must be between 1 and 10000", "batch_size")
        _check(self.bars_per_year is None or 0 < self.bars_per_year <= 600_000,
               f"bars_per_year={self.bars_per_year} is not a number of bars a year", "bars_per_year",
               "252 for daily stock bars, 6240 for hourly FX, 8760 for hourly crypto; leave it "
               "out to measure it from the candles")
        request = self.model_copy(update=values)
        parts = request._sampler_parts(context.get("sampler_parts"))
        if parts != request.sampler_parts:
            request = request.model_copy(update={"sampler_parts": parts})
        if not context.get("stored"):
            request._check_plan()
        return request

    def _sampler_parts(self, default: int | None) -> int | None:
        given = self.sampler_parts
        if self.optimizer not in PARTED_OPTIMIZERS:
            _check(given in (None, 1), f"sampler_parts applies to {', '.join(PARTED_OPTIMIZERS)} "
                   f"only, not {self.optimizer}", "sampler_parts", "leave it out", Unprocessable)
            return None
        batch = self.rounds_batch
        if given is None:
            return None if default is None else max(1, min(default, batch))
        _check(1 <= given <= MAX_SAMPLER_PARTS,
               f"sampler_parts must be between 1 and {MAX_SAMPLER_PARTS}", "sampler_parts")
        _check(given <= batch, f"sampler_parts={given} is more than the {batch} trials of a round",
               "sampler_parts", "raise batch_size or lower sampler_parts", Unprocessable)
        return given

    def _check_plan(self) -> None:
        """The validation plan parses, the search space builds, a grid fits n_iterations:
        what the schema cannot say of ``params`` and ``search_space`` (their contents depend
        on the strategy) is a 422; a plan the document's own schema refuses is a 400."""
        self.plan  # noqa: B018 - parses, or raises naming the field
        try:
            space = self.space()
        except Unprocessable:
            raise
        except InputError as exc:
            raise Unprocessable(exc.message, field=exc.field, hint=exc.hint) from None
        if self.optimizer != "grid":
            try:   # a space whose constraints leave nothing (fast fixed above slow)
                space.sample(1, 0)
            except InputError as exc:
                raise Unprocessable(exc.message, field=exc.field, hint=exc.hint) from None
        if self.optimizer == "grid":
            try:
                size = space.feasible_grid_size()
            except InputError as exc:
                raise Unprocessable(exc.message, field=exc.field, hint=exc.hint) from None
            _check(size > 0, "the grid has no feasible point", "search_space", kind=Unprocessable)
            fits = (f"set n_iterations to {size}, " if size <= 1_000_000 else "") + (
                "narrow search_space (add a step or tighter bounds), fix some params, or use "
                "optimizer random or bayesian")
            _check(size <= self.n_iterations,
                   f"the grid has {size:,} feasible points, more than n_iterations="
                   f"{self.n_iterations}", "n_iterations", fits, Unprocessable)

    # -- what the job's steps read ---------------------------------------------------------

    def to_dict(self) -> dict:
        return self.model_dump(mode="json")

    def space(self):
        """The job's search space: built once a process for the same strategy (class),
        fixed parameters and narrowed bounds (a job's every round asks for it; a SearchSpace is
        frozen), so its parameters stay the same objects round after round."""
        from app.optimize.space import build_space
        from app.strategies.registry import strategy_class

        cls = strategy_class(self.strategy)   # strategies are stateless: one space a class
        try:
            key = (id(cls), json.dumps(self.params, sort_keys=True) if self.params else "",
                   json.dumps(self.search_space, sort_keys=True) if self.search_space else "")
        except (TypeError, ValueError):   # not JSON: build it each time
            return build_space(cls(), self.params, self.search_space)
        hit = _SPACES.get(key)
        if hit is None or hit[0] is not cls:
            if len(_SPACES) >= 64:
                _SPACES.clear()
            hit = _SPACES[key] = (cls, build_space(cls(), self.params, self.search_space))
        return hit[1]

    @property
    def plan(self):
        """How the job validates its winner (``app.validation.split.ValidationPlan``)."""
        from app.validation.split import parse_validation

        return parse_validation(self.validation, self.run_validation)

    @property
    def rounds_batch(self) -> int:
        return self.batch_size or DEFAULT_BATCH.get(self.optimizer, self.n_iterations)

    @property
    def parts(self) -> int:
        """Parts each round is asked in; 1 asks it whole, in the round's callback."""
        return self.sampler_parts or 1


def _input_error(exc: ValidationError) -> InputError:
    """The first problem pydantic found, as the InputError a person reads."""
    err = exc.errors()[0]
    field = ".".join(str(part) for part in err["loc"]) or None
    cause = (err.get("ctx") or {}).get("error")
    if isinstance(cause, InputError):
        return cause
    if err["type"] == "extra_forbidden":
        return InputError(f"unknown field {field!r}", field=field,
                          hint=did_you_mean(str(field), TrainingRequest.model_fields))
    if err["type"] == "missing":
        return InputError(f"{field} is required", field=field)
    if err["type"] == "model_type":
        return InputError("the body must be a JSON object")
    return InputError(f"{field}: {err['msg']}", field=field)


def parse_request(body, *, max_trials: int | None = 1_000_000,
                  sampler_parts: int | None = 1) -> TrainingRequest:
    """Check every field of a posted body; returns a complete, runnable request (its seed
    drawn when not given). ``sampler_parts``: the server's default for a bayesian job that
    does not say; ``max_trials``: its cap on ``n_iterations``."""
    if not isinstance(body, dict):
        raise InputError("the body must be a JSON object")
    try:
        request = TrainingRequest.model_validate(
            body, context={"max_trials": max_trials, "sampler_parts": sampler_parts})
    except ValidationError as exc:
        raise _input_error(exc) from None
    if request.seed is None:
        request = request.model_copy(update={"seed": secrets.randbelow(2**31)})
    return request


def stored_request(data: dict) -> TrainingRequest:
    """A request read back from a job's row: checked again by the same model, without the
    server's present policy (its cap, its default parts) it was admitted under."""
    try:
        return TrainingRequest.model_validate(data, context={"stored": True})
    except ValidationError as exc:
        raise _input_error(exc) from None


def openapi_schema() -> dict:
    """The request's JSON Schema, for the OpenAPI document (3.1, JSON Schema 2020-12)."""
    return TrainingRequest.model_json_schema(mode="validation")



# -- the other bodies and the answers the OpenAPI document describes -------------------------


# What str.strip() removes, spelled out so the document's pattern and the check agree
_WS = "\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"
# A reason: at least three characters once surrounding whitespace is stripped, no NUL
REASON_PATTERN = f"^[{_WS}]*[^{_WS}\\u0000][^\\u0000]+[^{_WS}\\u0000][{_WS}]*$"


class StageChange(BaseModel):
    """A person moves a configuration to a lifecycle stage, saying why."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="StageChange")

    stage: Text = Field(description="REJECTED, PAPER, LIVE_CANDIDATE, LIVE or RETIRED",
                        json_schema_extra={"enum": ["REJECTED", "PAPER", "LIVE_CANDIDATE", "LIVE",
                                                    "RETIRED"]})
    reason: Text = Field(description="why this stage, a few words at least (kept in the audit trail)",
                         json_schema_extra={"minLength": 3, "maxLength": 2000,
                                            "pattern": REASON_PATTERN})
    force: Flag = Field(False, description="needed to move a REJECTED configuration anywhere "
                        "but RETIRED")

    @model_validator(mode="after")
    def _known_stage(self) -> StageChange:
        from app.validation.lifecycle import STAGES

        stage = self.stage.upper()
        _check(stage in STAGES, f"unknown stage {self.stage!r}", "stage",
               did_you_mean(stage, STAGES))
        _check(re.fullmatch(REASON_PATTERN, self.reason) is not None, "a reason is required (a few words: why this stage)",
               "reason")
        return self.model_copy(update={"stage": stage, "reason": self.reason.strip()})


def parse_stage_change(body) -> StageChange:
    if not isinstance(body, dict):
        raise InputError("the body must be a JSON object")
    try:
        return StageChange.model_validate(body)
    except ValidationError as exc:
        err = exc.errors()[0]
        if err["type"] == "extra_forbidden":
            field = ".".join(str(p) for p in err["loc"])
            raise InputError(f"unknown field {field!r}", field=field,
                             hint="fields: stage, reason, force") from None
        raise _input_error(exc) from None


class JobAccepted(BaseModel):
    """The answer to a submitted job: its id and where to follow it."""

    job_id: str
    status: str = Field(description="queued")
    status_url: str = Field(description="GET it for the job's progress and result")


class ErrorBody(BaseModel):
    code: str = Field(description="invalid_input, unprocessable, not_found, conflict, ...")
    message: str = Field(description="what is wrong, and how to fix it")
    field: str | None = Field(None, description="the field at fault, if one")


class Error(BaseModel):
    """Every 4xx and 5xx answer."""

    error: ErrorBody
