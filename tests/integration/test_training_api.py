"""The training API's answers to good and bad requests (no worker: jobs stay queued)."""
from __future__ import annotations

import json
import secrets

import pytest

from app import create_app
from app.config import load_settings
from app.db import market_data as md
from app.db.migrate import upgrade
from app.db.session import dispose_engines, session_scope
from tests.conftest import random_candles

OLD_BODY = {"strategy": "SMA_CROSS", "symbol": "BTC/USDT", "exchange": "binanceus",
            "timeframe": "5m", "optimizer": "random", "lookback_days": 30, "n_iterations": 10,
            "run_validation": False}


ALICE, BOB = (secrets.token_urlsafe(24) for _ in range(2))


def _client(tmp_path, **env):
    """A test client on its own SQLite file holding 500 5m candles; what it queues is kept."""
    url = f"sqlite:///{tmp_path / 'api.sqlite3'}"
    upgrade(url)
    with session_scope(url) as s:
        md.upsert_candles(s, "binanceus", "BTC/USDT", "5m",
                          random_candles(500, start_ms=1_700_000_100_000 // 300_000 * 300_000,
                                         step_ms=300_000))
    queued = []
    settings = load_settings({"DATABASE_URL": url, "TRAD_HOME": str(tmp_path),
                              "TRAD_API_TOKENS": f"alice:{ALICE},bob:{BOB}", **env})
    app = create_app({"settings": settings, "TESTING": True,
                      "ENQUEUE": lambda job_id, priority: queued.append((job_id, priority))})
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {ALICE}"  # alice, unless a test says
    client.queued = queued
    return client


@pytest.fixture
def api(tmp_path):
    yield _client(tmp_path, TRAD_MAX_TRIALS="5000")
    dispose_engines()


def test_old_body_is_accepted_and_answered_at_once(api):
    response = api.post("/api/v2/training/start", json=OLD_BODY)
    assert response.status_code == 202
    body = response.get_json()
    assert body["status"] == "queued" and body["status_url"] == f"/api/v2/training/{body['job_id']}"
    assert api.queued == [(body["job_id"], 5)]
    job = api.get(body["status_url"]).get_json()
    assert job["trials_total"] == 10 and job["trials_done"] == 0 and job["percentage"] == 0
    listing = api.get("/api/v2/training/jobs?status=queued").get_json()
    assert [j["job_id"] for j in listing["jobs"]] == [body["job_id"]]
    progress = api.get(body["status_url"] + "/progress").get_json()["progress"]
    assert progress[0]["stage"] == "queued" and progress[0]["percentage"] == 0


def test_cancel_then_cancel_again_conflicts(api):
    job_id = api.post("/api/v2/training/start", json=OLD_BODY).get_json()["job_id"]
    first = api.post(f"/api/v2/training/{job_id}/cancel")
    assert first.status_code == 200 and first.get_json()["status"] == "cancelled"
    again = api.post(f"/api/v2/training/{job_id}/cancel")
    assert again.status_code == 409 and again.get_json()["error"]["field"] == "job_id"


def _with(**changes):
    body = dict(OLD_BODY)
    for key, value in changes.items():
        if value is ...:
            body.pop(key)
        else:
            body[key] = value
    return body


BAD = [
    ("malformed json", b"{not json", 400, None),
    ("not an object", b"[1, 2]", 400, None),
    ("empty body", b"", 400, None),
    ("missing strategy", _with(strategy=...), 400, "strategy"),
    ("unknown strategy lists known ones", _with(strategy="SMA_CORSS"), 422, "strategy"),
    ("unknown field gets a hint", _with(n_iteration=5), 400, "n_iteration"),
    ("wrong type", _with(n_iterations="ten"), 400, "n_iterations"),
    ("zero trials", _with(n_iterations=0), 400, "n_iterations"),
    ("over the cap", _with(n_iterations=10_000), 422, "n_iterations"),
    ("unknown optimizer", _with(optimizer="bayes"), 400, "optimizer"),
    ("unknown timeframe", _with(timeframe="7m"), 400, "timeframe"),
    ("exchange with no data", _with(exchange="binanse"), 422, "exchange"),
    ("bad symbol", _with(symbol="BTC USDT!"), 400, "symbol"),
    ("bad exchange label", _with(exchange="bin anse"), 400, "exchange"),
    ("bars per year not a number of bars", _with(bars_per_year=0), 400, "bars_per_year"),
    ("symbol with no data", _with(symbol="ETH/USDT"), 422, "symbol"),
    ("unknown objective", _with(objective="sharpe"), 400, "objective"),
    ("priority out of range", _with(priority=11), 400, "priority"),
    ("negative fee", _with(fee=-0.1), 400, "fee"),
    ("fixed param out of bounds", _with(params={"fast": 1}), 422, "params.fast"),
    ("unknown param", _with(params={"fats": 5}), 422, "params.fats"),
    ("bad narrowing", _with(search_space={"fast": [50, 10]}), 422, "search_space.fast"),
    ("grid larger than asked", _with(optimizer="grid"), 422, "n_iterations"),
    ("bad validation", _with(validation={"method": "holdout", "test_fraction": 2}), 400,
     "validation.test_fraction"),
    ("run_validation not a bool", _with(run_validation="yes"), 400, "run_validation"),
    ("walk-forward with one fold", _with(validation={"method": "walk_forward", "folds": 1}), 400,
     "validation.folds"),
    ("unknown walk-forward field", _with(validation={"method": "walk_forward", "fold": 3}), 400,
     "validation.fold"),
    ("unknown validation method", _with(validation={"method": "kfold"}), 400, "validation.method"),
    ("sampler parts on random", _with(sampler_parts=2), 422, "sampler_parts"),
    ("sampler parts on cmaes", _with(optimizer="cmaes", sampler_parts=2), 422, "sampler_parts"),
    ("zero sampler parts", _with(optimizer="bayesian", sampler_parts=0), 400, "sampler_parts"),
    ("more sampler parts than a round", _with(optimizer="bayesian", batch_size=4, sampler_parts=5),
     422, "sampler_parts"),
]


@pytest.mark.parametrize("name,body,status,field", BAD, ids=[b[0] for b in BAD])
def test_bad_requests_get_a_clear_json_error(api, name, body, status, field):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = api.post("/api/v2/training/start", data=data, content_type="application/json")
    assert response.status_code == status, response.get_json()
    error = response.get_json()["error"]
    assert error["message"] and "Traceback" not in error["message"]
    assert error.get("field") == field
    assert api.queued == []


@pytest.mark.parametrize("extra,parts", [
    ({}, 1),                                   # the server's default (TRAD_SAMPLER_PARTS)
    ({"batch_size": 1}, 1),                    # never more parts than trials in a round
    ({"sampler_parts": 1}, 1),
    ({"sampler_parts": 8, "batch_size": 8}, 8),
])
def test_a_bayesian_job_keeps_its_sampler_parts_in_its_request(api, extra, parts):
    body = api.post("/api/v2/training/start", json=_with(optimizer="bayesian", **extra)).get_json()
    job = api.get(body["status_url"]).get_json()
    assert job["request"]["sampler_parts"] == parts


def test_grid_error_explains_the_size(api):
    error = api.post("/api/v2/training/start", json=_with(optimizer="grid")).get_json()["error"]
    assert "feasible points" in error["message"] and "narrow search_space" in error["message"]


def test_unknown_strategy_lists_the_known_ones(api):
    error = api.post("/api/v2/training/start", json=_with(strategy="NOPE_XYZ")).get_json()["error"]
    assert "SMA_CROSS" in error["message"]


def test_body_over_a_mebibyte_is_413(api):
    big = json.dumps({**OLD_BODY, "params": {"x": "a" * (1 << 20)}}).encode()
    response = api.post("/api/v2/training/start", data=big, content_type="application/json")
    assert response.status_code == 413 and "error" in response.get_json()


def test_unknown_job_is_404(api):
    for path in ("/api/v2/training/nope", "/api/v2/training/nope/trials",
                 "/api/v2/training/nope/progress"):
        response = api.get(path)
        assert response.status_code == 404 and response.get_json()["error"]["field"] == "job_id"
    assert api.post("/api/v2/training/nope/cancel").status_code == 404
    assert api.get("/api/v2/configurations/nope").status_code == 404


def test_strategies_and_openapi(api):
    names = [s["name"] for s in api.get("/api/v2/strategies").get_json()["strategies"]]
    assert "SMA_CROSS" in names
    doc = api.get("/api/v2/openapi.json").get_json()
    assert doc["openapi"].startswith("3.") and "/api/v2/training/start" in doc["paths"]
    assert api.get("/healthz").get_json() == {"status": "ok"}
    assert api.get("/readyz").status_code == 200


def test_tokens_are_required_when_configured(api):
    del api.environ_base["HTTP_AUTHORIZATION"]
    assert api.get("/api/v2/strategies").status_code == 401
    wrong = api.get("/api/v2/strategies", headers={"Authorization": "Bearer wrong"})
    assert wrong.status_code == 401 and wrong.headers["WWW-Authenticate"].startswith("Bearer")
    assert api.get("/api/v2/strategies", headers={"Authorization": f"Bearer {BOB}"}).status_code == 200
    assert api.get("/api/v2/strategies", headers={"Authorization": f"bearer {ALICE}"}).status_code == 200
    # a token is not a name: bob's name is no token
    assert api.get("/api/v2/strategies", headers={"Authorization": "Bearer bob"}).status_code == 401
    assert api.get("/metrics").status_code == 401
    for public in ("/healthz", "/api/v2/openapi.json", "/"):
        assert api.get(public).status_code == 200, public


@pytest.mark.parametrize("env,says", [
    ({}, "no TRAD_API_TOKENS"),
    ({"TRAD_API_TOKENS": "justasecretwithoutaname"}, "entry 1 has no name"),
    ({"TRAD_API_TOKENS": "alice:short"}, "fewer than 16"),
    ({"TRAD_API_TOKENS": "alice:0123456789abcdef,alice:fedcba9876543210"}, "names 'alice' twice"),
    ({"TRAD_API_TOKENS": "alice:0123456789abcdef", "TRAD_API_OPEN": "1"}, "choose one"),
])
def test_the_api_will_not_start_open_by_omission_or_on_a_bad_token(tmp_path, env, says):
    from app.config import SettingsError

    with pytest.raises(SettingsError, match=says):
        create_app({"settings": load_settings({"DATABASE_URL": f"sqlite:///{tmp_path}/x.sqlite3",
                                               **env}), "TESTING": True})


def test_an_open_api_is_asked_for_and_acts_as_open_api(tmp_path):
    upgrade(f"sqlite:///{tmp_path}/x.sqlite3")
    client = create_app({"settings": load_settings({
        "DATABASE_URL": f"sqlite:///{tmp_path}/x.sqlite3", "TRAD_API_OPEN": "1"}),
        "TESTING": True}).test_client()
    assert client.get("/api/v2/strategies").status_code == 200
    assert client.get("/metrics").status_code == 200
    dispose_engines()


def test_an_unmigrated_or_unreachable_database_is_a_503_to_retry_not_a_500(tmp_path):
    from tests.processes import free_port

    bare = create_app({"settings": load_settings({
        "DATABASE_URL": f"sqlite:///{tmp_path}/bare.sqlite3", "TRAD_API_OPEN": "1"}),
        "TESTING": True}).test_client()
    for path in ("/api/v2/training/jobs", "/api/v2/configurations", "/metrics"):
        answer = bare.get(path)
        assert answer.status_code == 503, (path, answer.get_data(as_text=True))
        assert answer.get_json()["error"]["code"] == "schema_missing"
        assert "trad db upgrade" in answer.get_json()["error"]["message"]
    gone = create_app({"settings": load_settings({
        "DATABASE_URL": f"postgresql://trad@127.0.0.1:{free_port()}/trad",
        "TRAD_API_OPEN": "1"}), "TESTING": True}).test_client()
    answer = gone.get("/api/v2/training/jobs")
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "5"
    assert answer.get_json()["error"]["code"] == "database_unavailable"
    dispose_engines()


def test_prometheus_metrics_count_jobs_by_status(api):
    api.post("/api/v2/training/start", json=OLD_BODY)
    text = api.get("/metrics").get_data(as_text=True)
    assert 'trad_jobs{status="queued"} 1.0' in text
    assert "trad_trials_done 0.0" in text


def _stored_configuration(api, stage="PAPER", params=None):
    from app.db import training as repo

    settings = api.application.extensions["trad.settings"]
    now = repo.utcnow()
    values = {"name": f"SMA_CROSS_V1_{stage}", "strategy_name": "SMA_CROSS", "strategy_version": 1,
              "exchange": "binanceus", "pair": "BTC/USDT", "timeframe": "5m",
              "params": params or {"fast": 10, "slow": 30, "allow_short": False},
              "params_key": stage, "objective": "sharpe_ratio",
              "in_sample_metrics": {"sharpe_ratio": 1.0}, "out_of_sample_metrics": None,
              "validation": {"reasons": ["in-sample Sharpe -5.48 is not positive"]}
              if stage == "REJECTED" else {}, "net_profit": 1.0, "sharpe_ratio": 1.0,
              "sample_size": 20, "confidence": 0.3, "lifecycle_stage": stage, "job_id": None,
              "data_fingerprint": None, "created_at": now, "updated_at": now}
    with session_scope(settings.database_url) as s:
        repo.upsert_configuration(s, values)
    return values


def test_a_person_moves_a_configuration_to_live_with_a_reason(api):
    config = _stored_configuration(api)
    url = f"/api/v2/configurations/{config['name']}/stage"
    assert api.post(url, json={"stage": "LIVE"}).get_json()["error"]["field"] == "reason"
    assert api.post(url, json={"stage": "LIV", "reason": "go"}).get_json()["error"]["field"] == "stage"
    # the actor is the token's name, whatever the client says of itself
    moved = api.post(url, json={"stage": "live", "reason": "three weeks of paper match the backtest"},
                     headers={"Authorization": f"Bearer {BOB}", "X-Trad-Actor": "mallory"})
    assert moved.status_code == 200
    body = moved.get_json()
    assert body["lifecycle_stage"] == "LIVE"
    assert body["stage_history"] == [{"from": "PAPER", "to": "LIVE", "forced": False, "actor": "bob",
                                      "reason": "three weeks of paper match the backtest",
                                      "ts": body["stage_history"][0]["ts"]}]
    assert api.post(url, json={"stage": "LIVE", "reason": "again"}).status_code == 409


def test_a_rejected_configuration_needs_force(api):
    config = _stored_configuration(api, stage="REJECTED")
    url = f"/api/v2/configurations/{config['name']}/stage"
    refused = api.post(url, json={"stage": "PAPER", "reason": "I believe in it"})
    assert refused.status_code == 409 and "force" in refused.get_json()["error"]["message"]
    forced = api.post(url, json={"stage": "PAPER", "reason": "I believe in it", "force": True})
    assert forced.status_code == 200 and forced.get_json()["stage_history"][0]["forced"] is True


def test_retraining_keeps_a_stage_a_person_chose(api):
    config = _stored_configuration(api)
    assert api.post(f"/api/v2/configurations/{config['name']}/stage", json={"stage": "LIVE", "reason": "paper run matched"}).status_code == 200
    _stored_configuration(api)  # the same key again, as a later job would upsert it
    assert api.get(f"/api/v2/configurations/{config['name']}").get_json()["lifecycle_stage"] == "LIVE"


def test_the_dashboard_page_follows_the_json_api(api):
    page = api.get("/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert "/static/dashboard.js" in html and "/static/trad.js" in html
    with api.get("/static/dashboard.js") as script:   # a file response: closed here
        assert script.status_code == 200 and "javascript" in script.mimetype
        assert '"/api/v2/events"' in script.get_data(as_text=True)


def test_a_body_not_sent_as_json_is_refused_with_415_and_queues_nothing(api):
    import json as _json

    response = api.post("/api/v2/training/start", data=_json.dumps(OLD_BODY), content_type="text/plain")
    assert response.status_code == 415
    error = response.get_json()["error"]
    assert error["code"] == "unsupported_media_type" and "Content-Type: application/json" in error["message"]
    assert api.queued == []


# What a fuzzer found answered 500 once: each kind, now a clear 4xx that queues nothing. A 400
# breaks the OpenAPI document's schema; a 422 is well-formed but not runnable (a parameter
# name no strategy has).
NASTY = [
    ("GET", "/api/v2/training/jobs?page=288230376151711744", None, 400, "page"),
    ("GET", "/api/v2/configurations?page=99999999999999999999", None, 400, "page"),
    ("GET", "/api/v2/training/jobs?status=%00", None, 400, "status"),
    ("GET", "/api/v2/training/ab%00c", None, 400, "path"),
    ("GET", "/api/v2/configurations/ab%00c", None, 400, "path"),
    ("GET", "/api/v2/market-data/gaps?exchange=a%00&symbol=B&timeframe=5m", None, 400, "exchange"),
    ("GET", "/api/v2/training/x/progress?after=99999999999999999999999", None, 400, "after"),
    ("POST", "/api/v2/training/start", {"symbol": "BTC\u0000USDT"}, 400, "symbol"),
    ("POST", "/api/v2/training/start", {"timeout_s": 1e300}, 400, "timeout_s"),
    ("POST", "/api/v2/training/start", {"lookback_days": 1e300}, 400, "lookback_days"),
    ("POST", "/api/v2/training/start", {"lookback_days": None, "start": "NaN"}, 400, "start"),
    ("POST", "/api/v2/training/start", {"lookback_days": None, "start": "Infinity"}, 400, "start"),
    ("POST", "/api/v2/training/start", {"lookback_days": None, "start": 1e300}, 400, "start"),
    ("POST", "/api/v2/training/start", {"params": {"fast\u0000": 3}}, 422, "params"),
    ("POST", "/api/v2/training/start", {"seed": 2**70}, 400, "seed"),
    ("POST", "/api/v2/configurations/x/stage", {"stage": "PAPER", "reason": "ok\u0000ok"}, 400,
     "reason"),
]


@pytest.mark.parametrize("method,path,changes,status,field", NASTY,
                         ids=[f"{m} {p[:40]} {json.dumps(c)[:30] if c else ''}" for m, p, c, *_ in NASTY])
def test_what_once_answered_500_is_a_clear_4xx(api, method, path, changes, status, field):
    body = None
    if changes is not None:
        body = changes if path.endswith("/stage") else {**OLD_BODY, **changes}
    response = api.open(path, method=method, json=body)
    assert response.status_code == status, response.get_json()
    assert response.get_json()["error"]["field"] == field
    assert api.queued == []


def test_a_grid_of_a_trillion_points_is_refused_without_listing_it(api):
    response = api.post("/api/v2/training/start", json={**OLD_BODY, "strategy": "LIQUIDITY_SWEEP",
                                                         "optimizer": "grid", "n_iterations": 5})
    assert response.status_code == 422
    message = response.get_json()["error"]["message"]
    assert message.startswith("the grid has 1,182,899,200,000 feasible points, more than "
                              "n_iterations=5") and "set n_iterations" not in message


def test_a_job_over_the_servers_cost_cap_is_refused_naming_it(tmp_path):
    client = _client(tmp_path, TRAD_MAX_COST="4000")
    ok = client.post("/api/v2/training/start", json={**OLD_BODY, "n_iterations": 8})      # 4,000
    assert ok.status_code == 202
    over = client.post("/api/v2/training/start", json={**OLD_BODY, "n_iterations": 9})    # 4,500
    assert over.status_code == 422
    error = over.get_json()["error"]
    assert "TRAD_MAX_COST" in error["message"] and "4,500 bar-steps" in error["message"]
    assert len(client.queued) == 1
    dispose_engines()
