"""The OpenAPI document describes every route the app serves, with its answers, and its
request schema is the model that checks the requests."""
from __future__ import annotations

import re

import pytest

from app import create_app
from app.schemas import TrainingRequest


@pytest.fixture
def app(tmp_path):
    return create_app({"environ": {"DATABASE_URL": f"sqlite:///{tmp_path}/t.sqlite3",
                                   "TRAD_HOME": str(tmp_path), "TRAD_API_OPEN": "1"}})


def test_every_route_of_the_app_is_in_the_document_with_its_methods(app):
    document = app.test_client().get("/api/v2/openapi.json").get_json()
    paths = document["paths"]
    served = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint.endswith("static"):  # the pages' vendored files, not the API
            continue
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            served.add((path, method.lower()))
            assert path in paths, f"{path} is served and not in the OpenAPI document"
            assert method.lower() in paths[path], f"{method} {path} is served and not documented"
            assert paths[path][method.lower()]["responses"], f"{method} {path} has no answers"
    documented = {(p, m) for p, ops in paths.items() for m in ops}
    assert documented == served, documented ^ served


def test_the_request_schema_is_the_models_own(app):
    document = app.test_client().get("/api/v2/openapi.json").get_json()
    schema = document["components"]["schemas"]["TrainingRequest"]
    assert set(schema["properties"]) == set(TrainingRequest.model_fields)
    assert schema["additionalProperties"] is False
    assert sorted(schema["required"]) == ["strategy", "symbol", "timeframe"]
    accepted = document["paths"]["/api/v2/training/start"]["post"]["responses"]["202"]
    assert accepted["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/JobAccepted"}
    assert document["components"]["schemas"]["JobAccepted"]["required"] == ["job_id", "status",
                                                                            "status_url"]


def test_the_routes_the_document_leaves_open_are_the_ones_the_app_leaves_open(app):
    from app.api import PUBLIC_PATHS, PUBLIC_PREFIXES

    document = app.test_client().get("/api/v2/openapi.json").get_json()
    open_in_document = {path for path, ops in document["paths"].items()
                        if all(op.get("security") == [] for op in ops.values())}
    prefixed = {p for p in document["paths"] if p.startswith(PUBLIC_PREFIXES)}
    assert open_in_document == set(PUBLIC_PATHS) | prefixed
    # The pages' prefixes open nothing of the API: only HTML, whose data calls need the token.
    assert prefixed == {"/jobs/{job_id}", "/configurations/{name}"}
