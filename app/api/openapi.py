"""GET /api/v2/openapi.json: the OpenAPI 3 document of this API."""
from __future__ import annotations

from flask import Blueprint, jsonify

from app._version import __version__
from app.backtest.candles import TIMEFRAMES
from app.optimize.objectives import OBJECTIVES
from app.services.job_request import OPTIMIZERS

bp = Blueprint("openapi", __name__)

_ERROR = {"$ref": "#/components/schemas/Error"}


def _errors(*codes: int) -> dict:
    text = {400: "malformed request", 401: "missing or wrong bearer token", 404: "not found",
            409: "conflicts with the job's state", 413: "body over 1 MiB",
            422: "well-formed but cannot run as asked"}
    return {str(c): {"description": text[c], "content": {"application/json": {"schema": _ERROR}}}
            for c in codes}


def _ok(description: str, schema: dict | None = None) -> dict:
    body = {"description": description}
    if schema:
        body["content"] = {"application/json": {"schema": schema}}
    return body


def _page_params(*extra: str) -> list:
    params = [{"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1}},
              {"name": "per_page", "in": "query", "schema": {"type": "integer", "minimum": 1,
                                                              "maximum": 1000}}]
    return params + [{"name": e, "in": "query", "schema": {"type": "string"}} for e in extra]


def document() -> dict:
    job_id = [{"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}]
    obj = {"type": "object"}
    return {
        "openapi": "3.0.3",
        "info": {"title": "Trad", "version": __version__,
                 "description": "Find trading-strategy parameters that hold up."},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {
                    "type": "object", "required": ["code", "message"], "properties": {
                        "code": {"type": "string"}, "message": {"type": "string"},
                        "field": {"type": "string"}}}}},
                "TrainingRequest": {
                    "type": "object", "additionalProperties": False,
                    "required": ["strategy", "symbol", "timeframe"],
                    "properties": {
                        "strategy": {"type": "string", "example": "LIQUIDITY_SWEEP"},
                        "symbol": {"type": "string", "example": "BTC/USDT"},
                        "exchange": {"type": "string", "default": "binanceus"},
                        "timeframe": {"type": "string", "enum": list(TIMEFRAMES)},
                        "optimizer": {"type": "string", "enum": list(OPTIMIZERS), "default": "random"},
                        "n_iterations": {"type": "integer", "minimum": 1, "default": 100},
                        "lookback_days": {"type": "number", "default": 30},
                        "start": {"type": "string", "description": "ISO-8601 or epoch; instead of lookback_days"},
                        "end": {"type": "string"},
                        "objective": {"type": "string", "enum": list(OBJECTIVES), "default": "sharpe_ratio"},
                        "min_trades": {"type": "integer", "minimum": 0, "default": 10},
                        "fee": {"type": "number", "default": 0.001},
                        "slippage_bps": {"type": "number", "default": 0},
                        "seed": {"type": "integer"},
                        "priority": {"type": "integer", "minimum": 0, "maximum": 9, "default": 5},
                        "timeout_s": {"type": "number"},
                        "params": {"type": "object", "description": "parameters fixed to values"},
                        "search_space": {"type": "object", "description": "narrowed bounds: {name: [low, high]} or {name: {low, high, step}}"},
                        "batch_size": {"type": "integer", "description": "trials per round (bayesian, cmaes, genetic)"},
                        "sampler_parts": {"type": "integer", "minimum": 1, "maximum": 64,
                                          "description": "bayesian: workers that share each round's asks "
                                                         "(default TRAD_SAMPLER_PARTS)"},
                        "run_validation": {"type": "boolean", "default": False},
                        "validation": {"type": "object", "example": {"method": "holdout", "test_fraction": 0.3}},
                        "bars_per_year": {"type": "number", "exclusiveMinimum": 0, "maximum": 600000,
                                          "description": "annualise with this many bars a year "
                                                         "(default: the series' own, measured from "
                                                         "its timestamps)"},
                    }},
            },
        },
        "security": [{"bearer": []}],
        "paths": {
            "/api/v2/training/start": {"post": {
                "summary": "Submit a training job; answers at once with its id",
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/TrainingRequest"}}}},
                "responses": {"202": _ok("queued", obj), **_errors(400, 401, 413, 422)}}},
            "/api/v2/training/jobs": {"get": {
                "summary": "Jobs, newest first", "parameters": _page_params("status"),
                "responses": {"200": _ok("a page of jobs", obj), **_errors(400, 401)}}},
            "/api/v2/training/{job_id}": {"get": {
                "summary": "A job's status, progress, best so far and result",
                "parameters": job_id, "responses": {"200": _ok("the job", obj), **_errors(401, 404)}}},
            "/api/v2/training/{job_id}/trials": {"get": {
                "summary": "A job's trials", "parameters": job_id + _page_params("order"),
                "responses": {"200": _ok("a page of trials", obj), **_errors(400, 401, 404)}}},
            "/api/v2/training/{job_id}/progress": {"get": {
                "summary": "A job's progress events after an id",
                "parameters": job_id + [{"name": "after", "in": "query", "schema": {"type": "integer"}}],
                "responses": {"200": _ok("progress rows", obj), **_errors(400, 401, 404)}}},
            "/api/v2/training/{job_id}/cancel": {"post": {
                "summary": "Cancel a queued or running job", "parameters": job_id,
                "responses": {"200": _ok("cancelled", obj), **_errors(401, 404, 409)}}},
            "/api/v2/configurations": {"get": {
                "summary": "Trained configurations",
                "parameters": _page_params("strategy", "pair", "timeframe", "stage"),
                "responses": {"200": _ok("a page of configurations", obj), **_errors(400, 401)}}},
            "/api/v2/configurations/{name}": {"get": {
                "summary": "One configuration",
                "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {"200": _ok("the configuration", obj), **_errors(401, 404)}}},
            "/api/v2/strategies": {"get": {"summary": "Strategies and their parameter spaces",
                                           "responses": {"200": _ok("strategies", obj), **_errors(401)}}},
            "/api/v2/market-data": {"get": {"summary": "Stored candle series",
                                            "parameters": _page_params("exchange", "symbol", "timeframe")[2:],
                                            "responses": {"200": _ok("series", obj), **_errors(401)}}},
            "/api/v2/queue": {"get": {"summary": "Queue depths and workers online",
                                      "responses": {"200": _ok("queues", obj), **_errors(401)}}},
            "/healthz": {"get": {"summary": "Liveness", "security": [],
                                 "responses": {"200": _ok("alive")}}},
            "/readyz": {"get": {"summary": "Database and broker reachable", "security": [],
                                "responses": {"200": _ok("ready"), "503": _ok("not ready")}}},
        },
    }


@bp.get("/openapi.json")
def openapi():
    return jsonify(document())
