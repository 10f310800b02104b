"""The old system's request, over HTTP, through gunicorn and two workers, to Postgres."""
from __future__ import annotations

import json
import secrets
import time
import urllib.request

from sqlalchemy import select

from app.db import market_data as md
from app.db.models import TrainedConfiguration
from app.db.session import session_scope
from tests.conftest import random_candles
from tests.processes import Gunicorn, Worker

OLD_BODY = {"strategy": "LIQUIDITY_SWEEP", "symbol": "BTC/USDT", "exchange": "binanceus",
            "timeframe": "5m", "optimizer": "random", "lookback_days": 30, "n_iterations": 10,
            "run_validation": False}


SECRET = secrets.token_urlsafe(24)


def call(method, url, body=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json",
                                              "Authorization": f"Bearer {SECRET}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, json.loads(response.read())


def test_old_body_over_http_ends_in_a_configuration_row(e2e_db):
    step = 300_000
    with session_scope(e2e_db) as s:
        md.upsert_candles(s, "binanceus", "BTC/USDT", "5m",
                          random_candles(31 * 288, seed=21, start_ms=1_700_000_100_000 // step * step,
                                         step_ms=step, vol=0.003))
    web = Gunicorn(e2e_db, extra_env={"TRAD_API_TOKENS": f"e2e:{SECRET}"})
    workers = [Worker(e2e_db, concurrency=1), Worker(e2e_db, concurrency=1)]
    try:
        web.wait_ready()
        for w in workers:
            w.wait_ready()
        # Seven in ten random LIQUIDITY_SWEEP params make no trade on a random walk, so
        # an unseeded job fails now and then (all ten idle): seed 5 draws six that trade.
        status, body = call("POST", web.url + "/api/v2/training/start",
                            {**OLD_BODY, "min_trades": 1, "seed": 5})
        assert status == 202 and body["status"] == "queued"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            _, job = call("GET", web.url + body["status_url"])
            if job["status"] in ("succeeded", "failed", "cancelled"):
                break
            time.sleep(0.2)
        assert job["status"] == "succeeded", (job["error"], web.output())
        assert job["trials_done"] == 10
        with session_scope(e2e_db) as s:
            row = s.scalars(select(TrainedConfiguration).where(
                TrainedConfiguration.name == job["result"]["configuration"])).one()
        assert row.strategy_name == "LIQUIDITY_SWEEP" and row.pair == "BTC/USDT"
        assert row.params == job["result"]["best_params"]
        assert row.job_id == body["job_id"]
        _, listed = call("GET", web.url + "/api/v2/configurations?strategy=LIQUIDITY_SWEEP")
        assert [c["name"] for c in listed["configurations"]] == [row.name]
        _, queue = call("GET", web.url + "/api/v2/queue")
        assert len(queue["workers"]) == 2
    finally:
        web.stop()
        for w in workers:
            w.stop()
