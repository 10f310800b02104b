"""GET /api/v2/openapi.json: the OpenAPI 3.1 document of this API.

The bodies and the main answers are the pydantic models of ``app.schemas`` (the very
models that check the requests), so the document cannot drift from what the server
takes; tests/integration/test_openapi.py fails on a route of the app the document lacks.
"""
from __future__ import annotations

from flask import Blueprint, jsonify

from app._version import __version__
from app.backtest.candles import TIMEFRAMES
from app.schemas import Error, JobAccepted, StageChange, TrainingRequest

bp = Blueprint("openapi", __name__)

_TEXT = {400: "malformed request", 401: "missing or wrong bearer token", 404: "not found",
         409: "conflicts with the job's or configuration's state", 413: "body over 1 MiB",
         415: "the body is not JSON (Content-Type: application/json)",
         422: "well-formed but cannot run as asked",
         503: "the database or broker is unavailable, or the schema not migrated (retry; "
              "see Retry-After)"}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _errors(*codes: int) -> dict:
    return {str(c): {"description": _TEXT[c], "content": {"application/json": {"schema": _ref("Error")}}}
            for c in codes}


def _ok(description: str, schema: dict | None = None, media: str = "application/json") -> dict:
    body = {"description": description}
    if schema is not None:
        body["content"] = {media: {"schema": schema}}
    return body


_TEXT_SCHEMA = {"type": "string", "pattern": "^[^\\u0000]*$", "maxLength": 256}


def _query(name: str, schema: dict | None = None, description: str = "") -> dict:
    return {"name": name, "in": "query", "schema": schema or _TEXT_SCHEMA,
            **({"description": description} if description else {})}


def _path(name: str) -> dict:
    schema = ({"type": "string", "pattern": "^[0-9a-f]{32}$"} if name == "job_id"
              else {**_TEXT_SCHEMA, "minLength": 1})
    return {"name": name, "in": "path", "required": True, "schema": schema}


# One server-sent event of /api/v2/events (its data is JSON text).
_EVENT = {"type": "object", "required": ["event", "data"], "properties": {
    "event": {"type": "string", "enum": ["jobs", "configurations", "job", "progress", "end"]},
    "data": {"type": "string", "contentMediaType": "application/json"}}}
_LABEL = {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"}
_SYMBOL = {"type": "string", "pattern": r"^[A-Za-z0-9^][A-Za-z0-9_.:/=\-]{0,63}$"}
_DATE = {"anyOf": [{"type": "string", "format": "date"}, {"type": "string", "format": "date-time"},
                   {"type": "string", "pattern": r"^[0-9]{10,13}$"}]}


def _page(*extra: str) -> list:
    return [_query("page", {"type": "integer", "minimum": 1, "maximum": 10**9}),
            _query("per_page", {"type": "integer", "minimum": 1, "maximum": 1000}),
            *(_query(e) for e in extra)]


def _points(default: int, most: int) -> dict:
    return _query("points", {"type": "integer", "minimum": 16, "maximum": most,
                             "default": default}, "at most this many points")


def _body(model: str) -> dict:
    return {"required": True, "content": {"application/json": {"schema": _ref(model)}}}


def _schemas() -> dict:
    out = {}
    for model in (TrainingRequest, StageChange, JobAccepted, Error):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        out.update(schema.pop("$defs", {}))
        out[model.__name__] = schema
    obj = {"type": "object", "additionalProperties": True}
    out |= {"Job": {**obj, "description": "a job: status, progress, best so far, result"},
            "Page": {**obj, "description": "a page of rows, with page, per_page and total"},
            "Configuration": {**obj, "description": "a trained configuration, in and out of "
                              "sample side by side, its trust statistics and stage history"},
            "Chart": {**obj, "description": "t (bar open times, epoch ms), equity, drawdown "
                      "(fraction below the peak) and segment (index into segments) of equal "
                      "length; marks where the holdout or each fold starts; bars before "
                      "reduction"}}
    return out


def document() -> dict:
    obj = {"type": "object"}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Trad", "version": __version__,
                 "description": "Find trading-strategy parameters that hold up."},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
                       "schemas": _schemas()},
        "security": [{"bearer": []}],
        "paths": {
            "/api/v2/training/start": {"post": {
                "summary": "Submit a training job; answers at once with its id",
                "requestBody": _body("TrainingRequest"),
                "responses": {"202": _ok("queued", _ref("JobAccepted")),
                              **_errors(400, 401, 413, 415, 422)}}},
            "/api/v2/training/jobs": {"get": {
                "summary": "Jobs, newest first",
                "parameters": _page() + [_query("status", {"type": "string", "enum": [
                    "queued", "running", "succeeded", "failed", "cancelled"]})],
                "responses": {"200": _ok("a page of jobs", _ref("Page")), **_errors(400, 401)}}},
            "/api/v2/training/{job_id}": {"get": {
                "summary": "A job's status, progress, best so far and result",
                "parameters": [_path("job_id")],
                "responses": {"200": _ok("the job", _ref("Job")), **_errors(401, 404)}}},
            "/api/v2/training/{job_id}/trials": {"get": {
                "summary": "A job's trials",
                "parameters": [_path("job_id"), *_page(),
                               _query("order", {"type": "string", "enum": ["number", "value"]})],
                "responses": {"200": _ok("a page of trials", _ref("Page")), **_errors(400, 401, 404)}}},
            "/api/v2/training/{job_id}/progress": {"get": {
                "summary": "A job's progress events after an id",
                "parameters": [_path("job_id"), _query("after", {"type": "integer", "minimum": 0,
                                                                 "maximum": 10**18 - 1})],
                "responses": {"200": _ok("progress rows", obj), **_errors(400, 401, 404)}}},
            "/api/v2/training/{job_id}/cancel": {"post": {
                "summary": "Cancel a queued or running job", "parameters": [_path("job_id")],
                "responses": {"200": _ok("cancelled", _ref("Job")), **_errors(401, 404, 409)}}},
            "/api/v2/training/{job_id}/chart": {"get": {
                "summary": "The winner's equity and drawdown, in and out of sample (or the "
                           "walk-forward's folds), cut down to at most `points` points",
                "parameters": [_path("job_id"), _points(1500, 4000)],
                "responses": {"200": _ok("the chart", _ref("Chart")), **_errors(400, 401, 404)}}},
            "/api/v2/training/{job_id}/trades": {"get": {
                "summary": "The winner's trades (segment: in_sample, out_of_sample or a fold)",
                "parameters": [_path("job_id"), *_page()],
                "responses": {"200": _ok("a page of trades", _ref("Page")),
                              **_errors(400, 401, 404)}}},
            "/api/v2/training/{job_id}/candles": {"get": {
                "summary": "The job's candles, merged into at most `points` bars",
                "parameters": [_path("job_id"), _points(2000, 20000)],
                "responses": {"200": _ok("candles", obj), **_errors(400, 401, 404)}}},
            "/api/v2/training/{job_id}/trials/plot": {"get": {
                "summary": "Best value so far at each change, and a sample of at most "
                           "`points` trials for scatter, slice and heatmap plots",
                "parameters": [_path("job_id"), _points(2000, 5000)],
                "responses": {"200": _ok("the plot's data", obj), **_errors(400, 401, 404)}}},
            "/api/v2/training/{job_id}/importance": {"get": {
                "summary": "Each parameter's importance to the objective (optuna's PED-ANOVA "
                           "over a sample of the trials)",
                "parameters": [_path("job_id")],
                "responses": {"200": _ok("importances, largest first", obj),
                              **_errors(401, 404)}}},
            "/api/v2/events": {"get": {
                "summary": "Server-sent events: jobs and configurations as they change (or "
                           "one job and its progress rows with `job`); ends after 5 minutes, "
                           "reconnect",
                "parameters": [_query("job", {"type": "string", "pattern": "^[0-9a-f]{32}$"})],
                "responses": {"200": _ok("an event stream: each event's data a JSON object",
                                         _EVENT, "text/event-stream"),
                              **_errors(400, 401, 404)}}},
            "/api/v2/configurations/{name}/chart": {"get": {
                "summary": "The chart of the job that trained this configuration",
                "parameters": [_path("name"), _points(1500, 4000)],
                "responses": {"200": _ok("the chart", _ref("Chart")), **_errors(400, 401, 404)}}},
            "/api/v2/configurations/{name}/trades": {"get": {
                "summary": "The trades of the job that trained this configuration",
                "parameters": [_path("name"), *_page()],
                "responses": {"200": _ok("a page of trades", _ref("Page")),
                              **_errors(400, 401, 404)}}},
            "/api/v2/configurations": {"get": {
                "summary": "Trained configurations, in and out of sample side by side",
                "parameters": _page("strategy", "pair", "timeframe") + [_query("stage", {
                    "type": "string", "enum": ["REJECTED", "PAPER", "LIVE_CANDIDATE", "LIVE",
                                               "RETIRED"]})],
                "responses": {"200": _ok("a page of configurations", _ref("Page")),
                              **_errors(400, 401)}}},
            "/api/v2/configurations/{name}": {"get": {
                "summary": "One configuration with its stage history",
                "parameters": [_path("name")],
                "responses": {"200": _ok("the configuration", _ref("Configuration")),
                              **_errors(401, 404)}}},
            "/api/v2/configurations/{name}/stage": {"post": {
                "summary": "A person moves a configuration to a stage, with a reason",
                "parameters": [_path("name")], "requestBody": _body("StageChange"),
                "responses": {"200": _ok("the configuration, moved", _ref("Configuration")),
                              **_errors(400, 401, 404, 409, 413, 415)}}},
            "/api/v2/strategies": {"get": {
                "summary": "Strategies and their parameter spaces",
                "responses": {"200": _ok("strategies", obj), **_errors(401)}}},
            "/api/v2/strategies/{name}": {"get": {
                "summary": "One strategy and its parameter space", "parameters": [_path("name")],
                "responses": {"200": _ok("the strategy", obj), **_errors(401, 404)}}},
            "/api/v2/market-data": {"get": {
                "summary": "Stored candle series: range, rows, calendar, bars a year, gaps",
                "parameters": [_query("exchange"), _query("symbol"), _query("timeframe")],
                "responses": {"200": _ok("series", obj), **_errors(401)}}},
            "/api/v2/market-data/gaps": {"get": {
                "summary": "Holes in one series, by its calendar",
                "parameters": [{**_query("exchange", _LABEL), "required": True},
                               {**_query("symbol", _SYMBOL), "required": True},
                               {**_query("timeframe", {"type": "string", "enum": list(TIMEFRAMES)}),
                                "required": True},
                               _query("start", _DATE, "ISO date or epoch"),
                               _query("end", _DATE, "ISO date or epoch")],
                "responses": {"200": _ok("gaps", obj), **_errors(400, 401, 404, 422)}}},
            "/api/v2/queue": {"get": {"summary": "Queue depths and workers online",
                                      "responses": {"200": _ok("queues", obj), **_errors(401)}}},
            "/api/v2/openapi.json": {"get": {"summary": "This document", "security": [],
                                             "responses": {"200": _ok("the document", obj)}}},
            "/healthz": {"get": {"summary": "Liveness", "security": [],
                                 "responses": {"200": _ok("alive", obj)}}},
            "/readyz": {"get": {"summary": "Database and broker reachable", "security": [],
                                "responses": {"200": _ok("ready", obj), "503": _ok("not ready", obj)}}},
            "/metrics": {"get": {"summary": "Prometheus metrics (text exposition format); "
                                            "scrape with a bearer token",
                                 "responses": {"200": _ok("metrics", {"type": "string"},
                                                          "text/plain"), **_errors(401)}}},
            "/": {"get": {"summary": "The dashboard (HTML)", "security": [],
                          "responses": {"200": _ok("the page", {"type": "string"}, "text/html")}}},
            "/jobs/{job_id}": {"get": {
                "summary": "A job's page (HTML; its data comes from /api/v2 with the token)",
                "security": [], "parameters": [_path("job_id")],
                "responses": {"200": _ok("the page", {"type": "string"}, "text/html"),
                              **_errors(404)}}},
            "/configurations/{name}": {"get": {
                "summary": "A configuration's page (HTML)", "security": [],
                "parameters": [_path("name")],
                "responses": {"200": _ok("the page", {"type": "string"}, "text/html"),
                              **_errors(404)}}},
        },
    }


def _with_bad_request(doc: dict) -> dict:
    """Any operation answers 400 to a malformed request (a NUL character in its path or
    query, a parameter that is not what it says), and one that reads the database or the
    broker a 503 while it is out of reach."""
    for path, ops in doc["paths"].items():
        for op in ops.values():
            op["responses"].setdefault("400", _errors(400)["400"])
            if path not in ("/healthz", "/api/v2/openapi.json", "/", "/jobs/{job_id}",
                            "/configurations/{name}"):
                op["responses"].setdefault("503", _errors(503)["503"])
    return doc


@bp.get("/openapi.json")
def openapi():
    return jsonify(_with_bad_request(document()))
