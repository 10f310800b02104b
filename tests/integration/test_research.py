"""What the research pages read, on both databases: the charts a finish keeps, candles
merged by the database, the best value so far found by a window query, each checked against
the same thing computed here in numpy from the stored rows."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from sqlalchemy import select

from app import create_app
from app.backtest.metrics import max_drawdown
from app.db.market_data import load_candles
from app.db.models import TrainingChart, Trial
from app.db.session import session_scope
from app.services import charts, research
from tests.steps import run_job

BODY = {"strategy": "SMA_CROSS", "symbol": "BTC/USDT", "exchange": "binanceus",
        "timeframe": "5m", "optimizer": "random", "lookback_days": 5, "n_iterations": 60,
        "min_trades": 1, "seed": 7}


@pytest.fixture
def finished(five_minute_settings):
    job = run_job(five_minute_settings, {**BODY, "run_validation": True})
    assert job["status"] == "succeeded", job["error"]
    return five_minute_settings, job


def test_the_chart_a_finish_keeps_is_the_winners_equity_with_its_extremes(finished):
    settings, job = finished
    body = research.job_chart(settings, job["job_id"], points=4000)
    assert body["segments"] == ["in_sample", "out_of_sample"]
    assert len(body["t"]) == len(body["equity"]) == len(body["drawdown"]) == len(body["segment"])
    assert body["t"] == sorted(set(body["t"]))
    result = job["result"]
    # The in-sample segment ends where the holdout starts; the marks say where.
    split = body["marks"][0]["t"]
    assert all((s == 0) == (t < split) for t, s in zip(body["t"], body["segment"]))
    # Reduced, the deepest drawdown is kept exactly: the out-of-sample part chained on
    # the in-sample end, so the whole line's drawdown is at least each part's.
    deepest = -min(body["drawdown"])
    assert deepest >= result["in_sample"]["max_drawdown"] - 1e-9
    small = research.job_chart(settings, job["job_id"], points=64)
    assert len(small["t"]) <= 64 and min(small["drawdown"]) == min(body["drawdown"])
    assert max(small["equity"]) == max(body["equity"])
    trades = research.job_trades(settings, job["job_id"], per_page=1000)
    by_segment = {s: sum(t["segment"] == s for t in trades["trades"])
                  for s in ("in_sample", "out_of_sample")}
    assert by_segment == {"in_sample": result["in_sample"]["num_trades"],
                          "out_of_sample": result["out_of_sample"]["num_trades"]}


def test_candles_merged_by_the_database_are_the_candles_merged_here(finished):
    settings, job = finished
    with session_scope(settings.database_url) as s:
        c = load_candles(s, "binanceus", "BTC/USDT", "5m", None, None)
    start = np.searchsorted(c.ts, np.datetime64(job["data_start"].rstrip("Z"), "ms").astype(np.int64))
    ts, o, h, lo, cl, v = (a[start:] for a in (c.ts, c.open, c.high, c.low, c.close, c.volume))
    merged = research.job_candles(settings, job["job_id"], points=100)
    k = merged["bars_per_point"]
    assert merged["bars"] == len(ts) and len(merged["t"]) <= 100 and k > 1
    # No gaps here: buckets by time are buckets of k bars.
    want = charts.bucket_candles(ts, o, h, lo, cl, v, -(-len(ts) // k))
    assert want["bars_per_point"] == k
    for key in ("t", "open", "high", "low", "close"):
        assert merged[key] == pytest.approx(want[key]), key
    assert merged["volume"] == pytest.approx(want["volume"], rel=1e-9)
    whole = research.job_candles(settings, job["job_id"], points=20000)
    assert whole["bars_per_point"] == 1 and whole["close"] == pytest.approx(cl.tolist())
    # What the finish kept, and what the database merges when nothing was kept (a job
    # still running), are the same bars.
    with session_scope(settings.database_url) as s:
        s.delete(s.get(TrainingChart, job["job_id"]))
    by_database = research.job_candles(settings, job["job_id"], points=100)
    assert by_database["bars_per_point"] == k
    for key in ("t", "open", "high", "low", "close", "volume"):
        assert by_database[key] == pytest.approx(merged[key]), key


def test_the_best_so_far_is_every_improvement_of_the_trials_in_order(finished):
    settings, job = finished
    plot = research.job_trials_plot(settings, job["job_id"], points=16)
    with session_scope(settings.database_url) as s:
        rows = s.execute(select(Trial.number, Trial.value).where(Trial.job_id == job["job_id"])
                         .order_by(Trial.number)).all()
    best, want = -np.inf, ([], [])
    for number, value in rows:
        if value is not None and value > best:
            best = value
            want[0].append(number)
            want[1].append(value)
    want[0].append(rows[-1][0])
    want[1].append(best)
    assert plot["best_so_far"]["number"] == want[0]
    assert plot["best_so_far"]["value"] == pytest.approx(want[1])
    assert plot["trials"] == len(rows) == 60
    # The sample keeps the best trial, whatever the thinning.
    assert job["result"]["best_trial"] in plot["sample"]["number"]
    assert len(plot["sample"]["number"]) <= 16 + 2


def test_importance_ranks_the_parameter_the_objective_depends_on(finished):
    settings, job = finished
    body = research.job_importance(settings, job["job_id"])
    assert body["used"] == 60
    values = list(body["importance"].values())
    assert values == sorted(values, reverse=True) and sum(values) == pytest.approx(1.0)


def test_the_routes_answer_with_clear_errors(finished):
    settings, job = finished
    open_settings = dataclasses.replace(settings, api_open=True, events_stream_s=0.2)
    client = create_app({"settings": open_settings}).test_client()
    ok = client.get(f"/api/v2/training/{job['job_id']}/chart?points=100")
    assert ok.status_code == 200 and len(ok.get_json()["t"]) <= 100
    bad = client.get(f"/api/v2/training/{job['job_id']}/chart?points=3")
    assert bad.status_code == 400 and "points is 16 to" in bad.get_json()["error"]["message"]
    missing = client.get(f"/api/v2/training/{'0' * 32}/trades")
    assert missing.status_code == 404
    name = job["result"]["configuration"]
    same = client.get(f"/api/v2/configurations/{name}/chart?points=100").get_json()
    assert same["t"] == ok.get_json()["t"]
    events = client.get(f"/api/v2/events?job={job['job_id']}", buffered=True)
    assert events.mimetype == "text/event-stream"
    text = events.get_data(as_text=True)
    assert "event: job\n" in text and "event: progress\n" in text and text.endswith(
        "event: end\ndata: {}\n\n")
    assert client.get(f"/api/v2/events?job={'0' * 32}").status_code == 404


def test_max_drawdown_of_the_kept_chart_matches_the_engine_on_one_segment(finished):
    settings, job = finished
    run = run_job(settings, {**BODY, "seed": 8})
    body = research.job_chart(settings, run["job_id"], points=4000)
    assert body["segments"] == ["in_sample"]
    assert -min(body["drawdown"]) == pytest.approx(run["result"]["in_sample"]["max_drawdown"])
    assert max_drawdown(np.asarray(body["equity"])) == pytest.approx(
        run["result"]["in_sample"]["max_drawdown"])


def test_a_walk_forwards_chart_chains_its_folds_test_windows_each_marked(five_minute_settings):
    settings = five_minute_settings
    job = run_job(settings, {**BODY, "n_iterations": 12,
                             "validation": {"method": "walk_forward", "folds": 3}})
    assert job["status"] == "succeeded", job["error"]
    body = research.job_chart(settings, job["job_id"], points=4000)
    folds = job["result"]["walk_forward"]["folds"]
    assert body["segments"] == [f"fold {f['fold']}" for f in folds]
    assert [m["label"] for m in body["marks"]] == body["segments"]
    # One unbroken line: each fold's window starts after the last ended, and the stitched
    # record's bars are all there.
    assert body["t"] == sorted(set(body["t"]))
    assert body["bars"] == job["result"]["walk_forward"].get("stitched_bars", body["bars"])
    firsts = [body["t"][body["segment"].index(i)] for i in range(len(folds))]
    assert firsts == [m["t"] for m in body["marks"]]
    trades = research.job_trades(settings, job["job_id"], per_page=1000)
    assert sum(f["out_of_sample"]["num_trades"] for f in folds) == trades["total"]
    assert {t["segment"] for t in trades["trades"]} <= set(body["segments"])
